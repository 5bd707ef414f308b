"""Run and eval directories for the report tests, built like `pairlab train` / `evaluate` write them.

Pairs come from the simulator (realistic text, sources, ratings, true preference);
log-probs are drawn so the aligned policy prefers chosen on most pairs; per_pair and
metrics.json come from pairlab.evaluate.metrics, as `pairlab evaluate` makes them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pairlab import artifacts
from pairlab.dirs import EvalDir, RunDir
from pairlab.evaluate import metrics
from pairlab.simulate import simulate_pairs

BETA = 0.1
INJECTIONS = ["<script>alert(1)</script>", "</script><script>alert(2)</script>",
              "<img src=x onerror=alert(3)>"]
INJECTED = " ".join(INJECTIONS)


def pairs(n: int, seed: int = 0, length: str = "short") -> pd.DataFrame:
    train, _ = simulate_pairs(n=n, length=length, seed=seed, eval_fraction=0.0)
    return train.head(n).reset_index(drop=True)


def logps(pairs: pd.DataFrame, seed: int, trained: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = len(pairs)
    chosen_tokens = (pairs["chosen"].str.len() // 4 + 1).to_numpy()
    rejected_tokens = (pairs["rejected"].str.len() // 4 + 1).to_numpy()
    ref = pd.DataFrame({"pair_id": pairs["pair_id"],
                        "chosen_logps": -1.1 * chosen_tokens + rng.normal(0, 8, n),
                        "rejected_logps": -1.1 * rejected_tokens + rng.normal(0, 8, n),
                        "chosen_tokens": chosen_tokens, "rejected_tokens": rejected_tokens})
    if not trained:
        return ref.copy(), ref
    policy = ref.copy()
    policy["chosen_logps"] = ref["chosen_logps"] + rng.normal(3.0, 4.0, n)
    policy["rejected_logps"] = ref["rejected_logps"] + rng.normal(-3.0, 4.0, n)
    return policy, ref


def write_eval_dir(out: Path, n: int = 120, *, seed: int = 0, trained: bool = True,
                   run_dir: Path | None = None, inject: bool = False, length: str = "short",
                   generations: bool = True, table: pd.DataFrame | None = None) -> Path:
    """EVAL_DIR/{per_pair.parquet, metrics.json, generations.parquet, manifest.json}.

    ``table``: the pairs to "evaluate" (default: ``n`` simulated pairs).
    """
    table = pairs(n, seed, length) if table is None else table.reset_index(drop=True)
    n = len(table)
    if inject:  # model and data text that tries to become markup
        table.loc[0, "prompt_text"] = "Summarise this: " + INJECTED
        table.loc[0, "chosen"] = "Sure. " + INJECTED
        table.loc[1, "rejected"] = INJECTED
        table.loc[0, "source"] = "</script><b>src</b>"
    policy, ref = logps(table, seed, trained)
    per_pair = metrics.per_pair_table(table, policy, ref, BETA)
    for col in ("prompt_id", "prompt_text", "chosen", "rejected"):
        per_pair[col] = table[col].to_numpy()
    summary = metrics.summarize(per_pair, BETA, n_boot=200)
    summary["ref_free_accuracy_ci95"] = [summary["ref_free_accuracy"] - 0.03, summary["ref_free_accuracy"] + 0.03]
    summary["policy_is_reference"] = not trained
    summary.update(model="smollm2-135m-instruct", run=None if run_dir is None else str(run_dir),
                   eval={"pairs": "eval_pairs.parquet", "n_pairs": n},
                   timing={"reference_s": 12.5, "policy_s": 11.0, "total_s": 30.1})
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_parquet(out / "per_pair.parquet", per_pair)
    artifacts.write_json(out / "metrics.json", summary)
    if generations:
        rows = []
        for i, (pid, text) in enumerate(zip(table["prompt_id"][:6], table["prompt_text"][:6])):
            for model in (("base", "aligned") if trained else ("base",)):
                for mode, gen_seed in (("greedy", None), ("sample", 0)):
                    body = f"{model} {mode} answer {i}."
                    if inject and i == 0 and model == "aligned":
                        body += " " + INJECTED
                    rows.append({"prompt_id": pid, "prompt_text": text, "model": model, "mode": mode,
                                 "seed": gen_seed, "text": body, "n_tokens": 20 + 5 * (model == "aligned"),
                                 "finished": True, "implicit_reward": 0.4 if model == "aligned" else 0.0})
        gens = pd.DataFrame(rows)
        gens["seed"] = gens["seed"].astype("Int64")
        artifacts.write_parquet(out / "generations.parquet", gens)
    EvalDir.finish(out, config={"n_boot": 200, "seed": 0},  # manifest last, as `pairlab evaluate` writes it
                   inputs={"run": None if run_dir is None else str(run_dir)})
    return out


def write_run_dir(out: Path, n_pairs: int = 64, steps: int = 16, *, seed: int = 0) -> Path:
    """RUN_DIR/{manifest.json, train_log.jsonl, dynamics.parquet} as `pairlab train` writes them."""
    from pairlab.train.dynamics import DYNAMICS_COLUMNS, step_log

    rng = np.random.default_rng(seed)
    ids = [f"p{i:04d}" for i in range(n_pairs)]
    per_step = n_pairs // (steps // 2)  # two epochs
    rows = []
    for step in range(1, steps + 1):
        epoch = (step - 1) // (steps // 2)
        batch = ids[((step - 1) % (steps // 2)) * per_step:][:per_step]
        drift = 0.25 * step
        pc = rng.normal(-120 + drift, 5, len(batch))
        pr = rng.normal(-125 - drift, 5, len(batch))
        rc, rr = pc - drift + rng.normal(0, 1, len(batch)), pr + drift + rng.normal(0, 1, len(batch))
        cr, rjr = BETA * (pc - rc), BETA * (pr - rr)
        loss = np.logaddexp(0.0, -(cr - rjr))
        rows.append(pd.DataFrame({
            "pair_id": batch, "step": step, "micro_step": 0, "epoch": epoch, "process_index": 0,
            "policy_chosen_logps": pc, "policy_rejected_logps": pr, "ref_chosen_logps": rc,
            "ref_rejected_logps": rr, "chosen_reward": cr, "rejected_reward": rjr, "margin": cr - rjr,
            "loss": loss, "batch_loss": loss.mean(), "chosen_tokens": 60, "rejected_tokens": 55}))
    dynamics = pd.concat(rows, ignore_index=True)[list(DYNAMICS_COLUMNS)]
    history = [{"step": s, "learning_rate": 5e-5 * (1 - s / (steps + 1)), "grad_norm": 1.0 / s} for s in range(1, steps + 1)]
    log = step_log(dynamics, history)
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_parquet(out / "dynamics.parquet", dynamics)
    artifacts.write_jsonl(out / "train_log.jsonl", log)
    (out / "adapter").mkdir(exist_ok=True)
    RunDir.finish(
        out, seed=seed, started=None,
        config={"model": "smollm2-135m-instruct", "quantization": "4bit", "lora": {"r": 16, "alpha": 32},
                "dpo": {"beta": BETA}, "dpo_effective": {"beta": BETA, "learning_rate": 5e-5,
                                                        "loss_type": ["sigmoid"], "num_train_epochs": 2,
                                                        "max_steps": -1}},
        inputs={"pairs": "cur/pairs.parquet", "n_pairs": n_pairs},
        device="cpu", global_step=steps, memory={"peak_rss_mb": 1234.5},
        final_step=log.iloc[-1].to_dict())
    return out
