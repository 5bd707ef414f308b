"""`ablate()`: curate -> train -> evaluate for every arm and seed, then compare. Read top to bottom.

DIR/
  ablation.yaml          the resolved config (what ran)
  pool/                  pool.parquet (the shared pool) + eval.parquet (the shared eval split)
  base/eval/             the untrained base model on the eval split (reference-free baseline)
  arms/<arm>/curate/     `pairlab curate` output for the arm's filters (pairs, dropped, report)
  arms/<arm>/seed<S>/run/    `pairlab train` run (adapter, dynamics, checkpoints)
  arms/<arm>/seed<S>/eval/   `pairlab evaluate` output on the shared eval split
  arms/<arm>/seed<S>/log.txt the run's log
  audit/<arm>/            `pairlab audit` of <arm>'s first seed, when a drop_flagged arm names it
  comparison.json        the arms table + statistics; report.html renders it
  manifest.json

Fairness: every arm trains from the same base with the same budget (by default the same
number of optimizer steps, so a smaller subset is seen more often rather than trained
less) and is evaluated on the same pairs. All runs share one reference log-prob cache,
so the reference forward over the pool and the eval split happens once.

Resumability: every step runs under the resume rule it shares with `audit --validate`
(:mod:`pairlab.experiments`): a finished step of the same config is skipped; a run with a
checkpoint resumes from it; a step from another config (an arm's filters or training
settings changed in the YAML) is redone; a finished directory changed by hand is refused.
Re-running the same config on the same DIR therefore only does what is missing.
"""
from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import yaml

from .. import artifacts
from ..config import from_dict
from ..dirs import AblationDir, AuditDir, CurateDir, StageDirError, read_manifest
from ..experiments import ensure_curated, ensure_evaluated, ensure_trained, run_log
from .config import AblationConfig, Arm, train_config, train_settings

log = logging.getLogger("pairlab.ablate")


@dataclass
class Layout:
    """Where every artifact of an ablation lives (one place to change it)."""

    root: Path

    @property
    def pool(self) -> Path:
        return self.root / AblationDir.POOL_PAIRS

    @property
    def eval(self) -> Path:
        return self.root / AblationDir.EVAL_PAIRS

    @property
    def base_eval(self) -> Path:
        return self.root / AblationDir.BASE / "eval"

    def curate(self, arm: str) -> Path:
        return self.root / AblationDir.ARMS / arm / "curate"

    def seed_dir(self, arm: str, seed: int) -> Path:
        return self.root / AblationDir.ARMS / arm / f"seed{seed}"

    def run(self, arm: str, seed: int) -> Path:
        return self.seed_dir(arm, seed) / "run"

    def arm_eval(self, arm: str, seed: int) -> Path:
        return self.seed_dir(arm, seed) / "eval"

    def log(self, arm: str, seed: int) -> Path:
        return self.seed_dir(arm, seed) / "log.txt"

    def train_yaml(self, arm: str, seed: int) -> Path:
        return self.seed_dir(arm, seed) / "train.yaml"

    @property
    def eval_yaml(self) -> Path:
        return self.root / "eval.yaml"

    @property
    def base_eval_yaml(self) -> Path:
        return self.root / "eval-base.yaml"


# ---------------------------------------------------------------- 1. the pool and the eval split

def build_pool(cfg: AblationConfig, layout: Layout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shared pool and eval split, written once under DIR/pool and read back after."""
    from ..io import read_pairs, write_pairs

    if layout.pool.exists() and layout.eval.exists():
        return read_pairs(str(layout.pool), format="pairs"), read_pairs(str(layout.eval), format="pairs")
    pool_cfg = cfg.pool
    eval_pairs = None
    if pool_cfg.simulate is not None:
        from ..simulate import SimulateConfig, simulate_pairs

        sim = from_dict(SimulateConfig, pool_cfg.simulate, prefix="pool.simulate.")
        pool, eval_pairs = simulate_pairs(sim)
    else:
        pool = read_pairs(pool_cfg.input, format=pool_cfg.format, mapping=pool_cfg.map, split=pool_cfg.split)
        if pool_cfg.eval_from:
            eval_pairs = read_pairs(pool_cfg.eval_from, format=pool_cfg.eval_format, mapping=pool_cfg.eval_map,
                                    split=pool_cfg.eval_split)
    if pool_cfg.flip_rate > 0:
        from ..simulate import inject_noise

        pool = inject_noise(pool, pool_cfg.flip_rate, pool_cfg.flip_by, seed=cfg.seeds[0], noise=pool_cfg.noise)
    if eval_pairs is None:
        # Split once here, by prompt hash, so every arm sees the same eval pairs.
        from ..curate import CurateConfig, curate

        split = curate(pool, [], from_dict(CurateConfig, {**cfg.curate, "report": False}))
        pool, eval_pairs = split.train, split.eval
    if pool_cfg.max_eval_pairs and len(eval_pairs) > pool_cfg.max_eval_pairs:
        eval_pairs = eval_pairs.sample(n=pool_cfg.max_eval_pairs, random_state=cfg.seeds[0])
        eval_pairs = eval_pairs.sort_index().reset_index(drop=True)
    write_pairs(pool, layout.pool)
    write_pairs(eval_pairs, layout.eval)
    return pool, eval_pairs


# ---------------------------------------------------------------- 2. one arm

def curate_arm(cfg: AblationConfig, arm: Arm, pool: pd.DataFrame, eval_pairs: pd.DataFrame,
               layout: Layout, tokenizer=None) -> Path:
    """Curate the pool with the arm's filters (cheap: scores are cached per pool)."""
    from ..curate import CurateConfig

    out = layout.curate(arm.name)
    ensure_curated(pool, arm.filters, from_dict(CurateConfig, cfg.curate), out, eval_pairs=eval_pairs,
                   tokenizer=tokenizer, inputs={"ablation": str(layout.root), "arm": arm.name})
    return out


def flagged_spec(arm: Arm) -> dict[str, Any] | None:
    """The arm's ``drop_flagged`` parameters when it drops what an audit flags, else None."""
    for item in arm.filters:
        if isinstance(item, dict) and "drop_flagged" in item:
            return dict(item["drop_flagged"] or {})
    return None


def curate_flagged_arm(cfg: AblationConfig, arm: Arm, layout: Layout) -> Path:
    """Curate an arm with ``drop_flagged``: train (first seed) and audit its ``from_arm`` first.

    The audit attributes against the ablation's eval split (the only clean held-out set an
    ablation has), so the selection has seen the eval pairs' gradients: say so when reading
    that arm's figures.
    """
    out = layout.curate(arm.name)
    if CurateDir.is_complete(out):
        return out
    spec = flagged_spec(arm) or {}
    source_name = spec.get("from_arm", "all")
    source = next((a for a in cfg.arms if a.name == source_name), None)
    if source is None or flagged_spec(source) is not None:
        from ..config import ConfigError

        raise ConfigError(f"from_arm {source_name!r} is not an arm without drop_flagged",
                          field=f"arms.{arm.name}.drop_flagged.from_arm", hint=f"arms: {[a.name for a in cfg.arms]}")
    seed = cfg.seeds[0]
    train_arm(cfg, source, seed, layout)
    audit_dir = layout.root / "audit" / source_name
    eval_pairs = pd.read_parquet(layout.eval)
    if not AuditDir.is_complete(audit_dir):
        from ..audit import AuditConfig, audit

        with run_log(layout.log(source_name, seed)):
            log.info("arm %s: auditing %s seed %d for drop_flagged", arm.name, source_name, seed)
            audit(layout.run(source_name, seed), eval_pairs, audit_dir, config=AuditConfig(report=False),
                  eval_spec=str(layout.eval), overwrite=True)
    filters = [{"drop_flagged": {**spec, "attribution": str(audit_dir)}}
               if isinstance(item, dict) and "drop_flagged" in item else item for item in arm.filters]
    from dataclasses import replace

    return curate_arm(cfg, replace(arm, filters=filters), pd.read_parquet(layout.pool), eval_pairs, layout)


def train_arm(cfg: AblationConfig, arm: Arm, seed: int, layout: Layout, progress=None) -> dict[str, Any]:
    """Train one arm x seed under the shared resume rule (:func:`pairlab.experiments.ensure_trained`)."""
    if flagged_spec(arm) is not None and not CurateDir.is_complete(layout.curate(arm.name)):
        curate_flagged_arm(cfg, arm, layout)  # its pairs depend on another arm's audit
    kwargs = {"callbacks": [progress], "console_progress": False} if progress is not None else {}
    return ensure_trained(layout.curate(arm.name) / CurateDir.PAIRS, train_config(cfg, arm, seed),
                          layout.run(arm.name, seed), log_path=layout.log(arm.name, seed),
                          label=f"arm {arm.name} seed {seed}", **kwargs)


def eval_settings(cfg: AblationConfig, *, bare: bool, arm: Arm | None = None) -> dict[str, Any]:
    """EvalConfig fields for a run's evaluation, or for the bare base model's.

    The bare base model is scored with the arms' training settings (quantization, dtype,
    beta, max_length, truncation), so it shares their reference-cache key: one reference
    pass over the eval pairs serves every evaluation. ``arm``: whose training settings
    (default: the first arm's; the reference prefill asks per arm).
    """
    settings = dict(cfg.eval)
    if bare:
        from ..train.config import dpo_settings

        tcfg = train_config(cfg, arm or cfg.arms[0], cfg.seeds[0])
        dpo = dpo_settings(tcfg)
        for key, value in (("quantization", tcfg.quantization), ("dtype", tcfg.dtype),
                           ("beta", dpo.get("beta")), ("max_length", dpo.get("max_length")),
                           ("truncation_mode", dpo.get("truncation_mode"))):
            if value is not None:
                settings.setdefault(key, value)
    return settings


def evaluate_dir(cfg: AblationConfig, eval_pairs: pd.DataFrame, out: Path, *, eval_spec: str,
                 run: Path | None = None, model: str | None = None, log_path: Path | None = None) -> str:
    """Evaluate a run (or the bare ``model``) under the shared resume rule; the state."""
    from ..evaluate.config import EvalConfig

    ecfg = from_dict(EvalConfig, eval_settings(cfg, bare=model is not None)).validate()
    return ensure_evaluated(eval_pairs, out, ecfg, run=run, model=model, eval_spec=eval_spec,
                            log_path=log_path)["state"]


# ---------------------------------------------------------------- 3. the whole grid

def write_plan_files(cfg: AblationConfig, layout: Layout) -> None:
    """Per-run train.yaml and the shared eval.yaml: what `--plan` commands point at."""
    for arm in cfg.arms:
        for seed in cfg.seeds:
            artifacts.write_text(layout.train_yaml(arm.name, seed),
                                 yaml.safe_dump(train_settings(cfg, arm, seed), sort_keys=False))
    artifacts.write_text(layout.eval_yaml, yaml.safe_dump(eval_settings(cfg, bare=False), sort_keys=False))
    artifacts.write_text(layout.base_eval_yaml, yaml.safe_dump(eval_settings(cfg, bare=True), sort_keys=False))


def plan_commands(cfg: AblationConfig, layout: Layout, config_path: str | None) -> list[str]:
    """One `pairlab train` + `pairlab evaluate` command per arm and seed (for a scheduler)."""
    q = shlex.quote
    cmds = []
    model = train_config(cfg, cfg.arms[0], cfg.seeds[0]).model
    if cfg.evaluate_base:
        cmds.append(f"pairlab evaluate --model {q(model)} --eval {q(str(layout.eval))} --eval-format pairs "
                    f"--config {q(str(layout.base_eval_yaml))} --out {q(str(layout.base_eval))} --resume")
    for arm in cfg.arms:
        for seed in cfg.seeds:
            run = layout.run(arm.name, seed)
            cmds.append(f"pairlab train --pairs {q(str(layout.curate(arm.name) / CurateDir.PAIRS))} "
                        f"--config {q(str(layout.train_yaml(arm.name, seed)))} --out {q(str(run))} --resume"
                        f" && pairlab evaluate --run {q(str(run))} --eval {q(str(layout.eval))} --eval-format pairs "
                        f"--config {q(str(layout.eval_yaml))} --out {q(str(layout.arm_eval(arm.name, seed)))} "
                        "--resume")
    if config_path:
        cmds.append(f"pairlab ablate --config {q(config_path)} --out {q(str(layout.root))} --report-only")
    return cmds


def prepare(cfg: AblationConfig, out_dir: str | Path, *, overwrite: bool = False
            ) -> tuple[Layout, pd.DataFrame, pd.DataFrame]:
    """Pool, eval split, every arm's curated subset and the plan files (cheap, no training).

    Re-using DIR resumes it; ``overwrite`` deletes what an earlier ablation wrote there first.
    """
    from ..models import load_tokenizer

    layout = Layout(Path(out_dir))
    start_dir(layout.root, cfg, overwrite=overwrite)
    artifacts.write_text(layout.root / AblationDir.CONFIG, yaml.safe_dump(asdict(cfg), sort_keys=False))
    pool, eval_pairs = build_pool(cfg, layout)
    tokenizer_spec = cfg.curate.get("tokenizer", train_config(cfg, cfg.arms[0], cfg.seeds[0]).model)
    cfg.curate.setdefault("tokenizer", tokenizer_spec)
    tokenizer = None if tokenizer_spec == "none" else load_tokenizer(tokenizer_spec)
    for arm in cfg.arms:
        if flagged_spec(arm) is None:  # drop_flagged arms are curated once their source arm is audited
            curate_arm(cfg, arm, pool, eval_pairs, layout, tokenizer)
    write_plan_files(cfg, layout)
    return layout, pool, eval_pairs


def start_dir(root: Path, cfg: AblationConfig, *, overwrite: bool = False) -> None:
    """Make DIR ready: refuse another stage's directory or an input inside it; with
    ``overwrite`` remove the earlier ablation, else only its manifest (the rerun resumes)."""
    inputs = [cfg.pool.input, cfg.pool.eval_from] if cfg.pool.simulate is None else []
    state = AblationDir.prepare(root, inputs=inputs, overwrite=overwrite, resume=True)
    if overwrite and state != "new":
        AblationDir.clean(root, scratch=True)
    elif (root / artifacts.MANIFEST).exists():
        (root / artifacts.MANIFEST).unlink()  # incomplete again until this rerun ends
    AblationDir.mark_started(root)


def ablate(cfg: AblationConfig, out_dir: str | Path, *, report_only: bool = False,
           progress: bool = True, overwrite: bool = False,
           executed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run (or resume) the whole ablation and write comparison.json + report.html.

    ``executed``: the task records of an executor (Ray, Slurm) that already ran the
    prefill and the arms (see :mod:`pairlab.ablate.steps`); this call then skips them.
    """
    from .compare import compare_arms, write_comparison
    from .progress import OverallProgress

    started = time.time()
    cfg.validate()
    # --report-only redraws: the phase timings stay those of the run that did the work
    previous = _previous_timings(out_dir) if report_only else None
    if progress:  # one overall bar instead of the libraries' per-load bars and notices
        import transformers
        from datasets.utils.logging import disable_progress_bar

        from ..console import quiet_console

        transformers.utils.logging.disable_progress_bar()
        disable_progress_bar()
        quiet_console()  # library deprecation notices: off the console, into each run's log.txt
    # wall seconds of each phase, in order (comparison.json, manifest); a fresh cache converts
    # the embedded model on its first load, in whichever phase that is: counted apart
    phases: dict[str, float] = {"model_conversion": 0.0}
    with _phase(phases, "pool_and_curation"):
        layout, pool, eval_pairs = prepare(cfg, out_dir, overwrite=overwrite)
    events: list[dict[str, Any]] = list(executed or [])
    if not report_only and executed is None:
        from .steps import prefill_reference

        with _phase(phases, "reference_pass"):
            prefill_reference(cfg, layout, eval_pairs)  # one reference pass for every run, before any
    if not report_only:
        budget_steps = _expected_steps(cfg, layout)
        bar = OverallProgress(budget_steps, enabled=progress)
        try:
            if cfg.evaluate_base:
                model = train_config(cfg, cfg.arms[0], cfg.seeds[0]).model
                bar.describe("base model: evaluate")
                with _phase(phases, "evaluate/base"):
                    state = evaluate_dir(cfg, eval_pairs, layout.base_eval, eval_spec=str(layout.eval), model=model,
                                     log_path=layout.base_eval.parent / "log.txt")
                events.append({"arm": "base", "evaluate": state})
            for arm in cfg.arms if executed is None else []:  # else an executor ran them
                for seed in cfg.seeds:
                    bar.start_run(f"{arm.name}/seed{seed}", layout.run(arm.name, seed))
                    with _phase(phases, f"train/{arm.name}/seed{seed}"):
                        trained = train_arm(cfg, arm, seed, layout, progress=bar.callback())
                    bar.finish_run(int(cfg.budget.value) if cfg.budget.unit == "steps" else None)
                    bar.describe(f"{arm.name}/seed{seed}: evaluate")
                    with _phase(phases, f"evaluate/{arm.name}/seed{seed}"):
                        state = evaluate_dir(cfg, eval_pairs, layout.arm_eval(arm.name, seed),
                                             eval_spec=str(layout.eval), run=layout.run(arm.name, seed),
                                             log_path=layout.log(arm.name, seed))
                    events.append({"arm": arm.name, "seed": seed, "train": trained, "evaluate": state})
        finally:
            bar.close()
    reports_started = time.time()
    comparison = compare_arms(cfg, layout, pool)
    comparison["events"] = events
    from .steps import prefill_record

    comparison["reference_prefill"] = prefill_record(layout)
    report = write_comparison(comparison, layout)
    from .table import write_comparison_table

    write_comparison_table(comparison, layout.root)  # the same figures, one flat row per arm x seed
    if cfg.report_to:  # each arm x seed a tracker run in a group named after the ablation
        from ..tracking import log_ablation

        log_ablation(cfg, layout, comparison)
    phases["reports"] = round(time.time() - reports_started, 3)
    timings = phase_timings(phases, time.time() - started)
    if previous is not None:
        timings = {**previous, "redrawn_reports_s": phases["reports"]}
    comparison["phase_timings"] = timings
    artifacts.write_json(layout.root / AblationDir.COMPARISON, comparison)  # again, with the timings
    AblationDir.finish(layout.root, config=asdict(cfg), seed=cfg.seeds[0], started=started,  # last
                       inputs={"pool": {"rows": len(pool), "sha256": artifacts.file_sha256(layout.pool)},
                               "eval": {"rows": len(eval_pairs), "sha256": artifacts.file_sha256(layout.eval)}},
                       report=report.name if report else None, phase_timings=timings)
    comparison["report"] = None if report is None else str(report)
    return comparison


def _previous_timings(out_dir: str | Path) -> dict[str, Any] | None:
    """The phase timings in a finished ablation's manifest (None when there are none)."""
    try:
        return read_manifest(out_dir).get("phase_timings")
    except (StageDirError, OSError):
        return None


@contextlib.contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall seconds of the block to ``phases[name]``, less any model conversion inside
    it, which goes to ``phases["model_conversion"]``."""
    from .. import models

    t0, n0 = time.time(), len(models.CONVERSIONS)
    try:
        yield
    finally:
        converted = sum(c["seconds"] for c in models.CONVERSIONS[n0:] if c["built"])
        phases[name] = round(phases.get(name, 0.0) + time.time() - t0 - converted, 3)
        phases["model_conversion"] = round(phases.get("model_conversion", 0.0) + converted, 3)


def phase_timings(phases: dict[str, float], wall_s: float) -> dict[str, Any]:
    """Each phase's wall seconds and share of the ablation's wall time (``make bench`` reads it).

    Phases: ``model_conversion`` (the one-time model builds: the embedded model's GGUF
    conversion and the CPU NF4 checkpoint, 0 when cached), ``pool_and_curation``, ``reference_pass`` (the shared prefill),
    ``evaluate/base``, ``train/<arm>/seed<S>`` and ``evaluate/<arm>/seed<S>`` per run, and
    ``reports`` (comparison, report, table). A skipped (finished) step counts its check only.
    """
    wall = max(float(wall_s), 1e-9)
    other = max(wall - sum(phases.values()), 0.0)
    return {"wall_s": round(wall, 3),
            "seconds": {**phases, "other": round(other, 3)},
            "share": {k: round(v / wall, 4) for k, v in {**phases, "other": other}.items()}}


def _expected_steps(cfg: AblationConfig, layout: Layout) -> int | None:
    """Total optimizer steps over all runs (for the overall ETA); None when epochs-based."""
    if cfg.budget.unit != "steps":
        return None
    return int(cfg.budget.value) * len(cfg.arms) * len(cfg.seeds)


def print_plan(cfg: AblationConfig, out_dir: str | Path, config_path: str | None, stream=None,
               target_diff: float = 0.05) -> list[str]:
    """The power plan as '# ' comment lines (a shell skips them), then one command per line."""
    from .plan import plan_lines

    stream = stream or sys.stdout  # looked up at call time, so a redirected stdout is honoured
    cfg.validate()
    layout, pool, eval_pairs = prepare(cfg, out_dir)
    kept = [len(pd.read_parquet(layout.curate(a.name) / CurateDir.PAIRS, columns=["pair_id"]))
            if CurateDir.is_complete(layout.curate(a.name)) else len(pool) for a in cfg.arms]
    for line in plan_lines(cfg, target_diff=target_diff, eval_pairs=len(eval_pairs), root=layout.root,
                           kept=kept, prefix="# "):
        print(line, file=stream)
    cmds = plan_commands(cfg, layout, config_path)
    for c in cmds:
        print(c, file=stream)
    return cmds


def arm_true_noise(pairs: pd.DataFrame) -> float | None:
    """Share of an arm's training pairs whose label is wrong (when the truth is known)."""
    if "true_preference_correct" not in pairs or pairs["true_preference_correct"].isna().any() or not len(pairs):
        return None
    return float(1.0 - pairs["true_preference_correct"].astype(bool).mean())


__all__ = ["Layout", "ablate", "arm_true_noise", "build_pool", "plan_commands", "prepare", "print_plan",
           "run_log"]
