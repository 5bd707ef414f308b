"""`export()`: a finished run (or an ablation's winning arm) -> a directory the DPO ecosystem reads.

OUT/
  README.md           model card: base model, data, filters, pair counts, DPO settings, held-out metrics
  adapter/            the run's LoRA adapter and tokenizer (peft format)
  merged/             with merge=True: the adapter merged into the full-precision base (safetensors)
  data/               train.parquet (+ test.parquet, the held-out split) in TRL's format + dataset card
  dataset/            the same as a ``datasets.DatasetDict.save_to_disk`` directory
  trl_dpo.yaml        the equivalent `trl dpo` config (ModelConfig + ScriptArguments + DPOConfig keys)
  launch.sh           the `accelerate launch` line that trains it with TRL alone
  manifest.json

The directory is built in a temporary sibling and renamed into place, so it is complete
or absent. Export reads stage directories only (run, its curate dir, its evaluation), so
it sits above the stages, like ``ablate``.
"""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import artifacts
from ..dirs import AblationDir, CurateDir, EvalDir, RunDir, StageDirError
from .cards import dataset_card, model_card

TRL_YAML = "trl_dpo.yaml"
LAUNCH = "launch.sh"
#: pairlab's own DPO keys that are no DPOConfig field, or that only make sense inside pairlab.
_NOT_FOR_TRL = {"use_cpu"}


@dataclass
class ExportSource:
    """The run to export and what describes it: its curated data and (when found) its evaluation."""

    run: Path
    name: str
    curate: Path | None
    eval: Path | None


# ---------------------------------------------------------------- 1. what to export

def _seed_dirs(arm_dir: Path) -> list[Path]:
    return sorted((p for p in arm_dir.glob("seed*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:]))


def check_eval_of_run(manifest: dict[str, Any], eval_dir: str | os.PathLike, run: Path) -> None:
    """Refuse ``--eval`` unless its manifest says it evaluated this run as it is now: the sha256 of
    the run's manifest it recorded is the run's current one (whatever path the run was given by,
    relative or from another directory). An evaluation of the base model, of another run, or of
    this run before it was retrained is refused. (Without a recorded sha256, an older pairlab's
    evaluation: the run's path decides.)"""
    done = manifest.get("inputs") or {}
    evaluated = done.get("run")
    hint = f"pass an evaluation of this run (pairlab evaluate --run {run} ...)"
    if not evaluated:
        raise StageDirError(f"an evaluation of the model {done.get('model')!r}, not of the run {run}",
                            file=str(eval_dir), field="--eval", hint=hint)
    recorded = done.get("run_manifest_sha256")
    if recorded:
        if recorded != artifacts.file_sha256(run / artifacts.MANIFEST):
            raise StageDirError(f"an evaluation of another run ({evaluated}), or of {run} before it was last "
                                "written: the run manifest it recorded is not this run's", file=str(eval_dir),
                                field="--eval", hint=hint + ", or evaluate it again with --overwrite")
    elif Path(str(evaluated)).resolve() != run.resolve():
        raise StageDirError(f"an evaluation of another run ({evaluated}), not of {run}", file=str(eval_dir),
                            field="--eval", hint=hint)


def resolve_source(source: str | os.PathLike, *, arm: str | None = None, seed: int | None = None,
                   eval_dir: str | os.PathLike | None = None) -> ExportSource:
    """A run directory, an ablation arm (``ABL/arms/ARM``), or an ablation (its winner, or ``arm``)."""
    from ..train.config import hub_repo_name

    path = Path(source)
    if (path / AblationDir.COMPARISON).exists() or (path / AblationDir.CONFIG).exists():
        if arm is None:
            comparison = artifacts.read_json(path / AblationDir.COMPARISON) \
                if (path / AblationDir.COMPARISON).exists() else {}
            arm = (comparison.get("verdict") or {}).get("winner")
            if arm is None:
                raise StageDirError("the ablation has no winner to export", file=str(path),
                                    field="--arm", hint="name the arm to export with --arm NAME")
        path = path / AblationDir.ARMS / arm
        if not path.is_dir():
            raise StageDirError(f"no arm '{arm}' in the ablation", file=str(path), field="--arm")
    if path.parent.name == AblationDir.ARMS:  # an arm: pick its seed's run
        seeds = _seed_dirs(path)
        chosen = [p for p in seeds if seed is None or p.name == f"seed{seed}"]
        if not chosen:
            raise StageDirError(f"no {'seed' + str(seed) if seed is not None else 'seed'} run in the arm",
                                file=str(path), field="--seed", hint=f"seeds here: {[p.name for p in seeds]}")
        path = chosen[0] / "run"
    manifest = RunDir.verify(path)
    pairs = Path(str(manifest.get("inputs", {}).get("pairs", "")))
    curate = pairs.parent if pairs.name == CurateDir.PAIRS and CurateDir.is_complete(pairs.parent) else None
    if eval_dir is not None:
        check_eval_of_run(EvalDir.verify(eval_dir), eval_dir, path)
        found = Path(eval_dir)
    else:  # an ablation keeps a run's evaluation beside it (seedS/run, seedS/eval)
        found = path.parent / "eval" if EvalDir.is_complete(path.parent / "eval") else None
        if found is not None:
            try:
                check_eval_of_run(EvalDir.verify(found), found, path)
            except StageDirError:  # evaluated before the run was redone: not this run's evaluation
                found = None
    return ExportSource(run=path, name=hub_repo_name(path), curate=curate, eval=found)


# ---------------------------------------------------------------- 2. the parts

def trl_config(run: dict[str, Any], base_path: str, *, has_test: bool, hub_model_id: str) -> dict[str, Any]:
    """The `trl dpo` YAML equivalent to a run: ModelConfig, ScriptArguments and DPOConfig keys."""
    from ..train.config import dpo_field_names

    config = run["config"]
    lora = config["lora"]
    dtype = run.get("compute_dtype") or "float32"
    out: dict[str, Any] = {"model_name_or_path": base_path}
    for key in ("model_revision", "attn_implementation"):
        if config.get(key):
            out[key] = config[key]
    if config.get("trust_remote_code"):
        out["trust_remote_code"] = True
    out.update(dtype=dtype, use_peft=True, lora_r=lora["r"], lora_alpha=lora["alpha"],
               lora_dropout=lora["dropout"], lora_target_modules=lora["target_modules"],
               lora_task_type="CAUSAL_LM")
    if config.get("quantization") == "4bit":
        out.update(load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    out.update(dataset_name="data", dataset_train_split="train")
    if has_test:
        out["dataset_test_split"] = "test"
    names = dpo_field_names()
    dpo = {k: v for k, v in (config.get("dpo_effective") or config.get("dpo") or {}).items()
           if k in names and k not in _NOT_FOR_TRL}
    out.update(dpo)
    out.update(output_dir="trl-output", seed=config["seed"], logging_steps=config["logging_steps"],
               save_steps=config["save_steps"], save_total_limit=config.get("save_total_limit"),
               precompute_ref_log_probs=bool(config.get("ref_cache", True)),
               bf16=dtype == "bfloat16", fp16=dtype == "float16", run_name=hub_model_id,
               hub_model_id=hub_model_id)
    out.setdefault("report_to", "none")
    return out


def hub_base_model(spec: str) -> str:
    """The base model's hub id where there is one (the embedded model's origin), else the spec."""
    from ..models import EMBEDDED

    return "HuggingFaceTB/SmolLM2-135M-Instruct" if spec == EMBEDDED else spec


def launch_line(*, processes: int = 1) -> str:
    """The `accelerate launch` line that runs TRL's own DPO script on the exported YAML (from OUT)."""
    return f"accelerate launch --num_processes {processes} -m trl.scripts.dpo --config {TRL_YAML}"


def base_dtype(model_path: str, **options: Any) -> str:
    """The dtype the base checkpoint is stored in (its config), float32 when it says none."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_path, revision=options.get("model_revision"),
                                     trust_remote_code=bool(options.get("trust_remote_code")))
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    name = str(dtype).replace("torch.", "") if dtype is not None else "float32"
    return name if name in ("bfloat16", "float16", "float32") else "float32"


def merge_adapter(spec: str, adapter_dir: Path, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """peft ``merge_and_unload`` on the full-precision base in its own dtype; safetensors out."""
    from peft import PeftModel

    from ..models import load_model, load_tokenizer, resolve_model

    dtype = base_dtype(resolve_model(spec).path, **options)
    model = load_model(spec, quantization="none", dtype=dtype, device="cpu", **options)
    merged = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    load_tokenizer(spec, **options).save_pretrained(out)
    return {"dtype": dtype, "files": sorted(p.name for p in out.iterdir())}


# ---------------------------------------------------------------- 3. the export

def export(source: str | os.PathLike, out_dir: str | os.PathLike, *, arm: str | None = None,
           seed: int | None = None, eval_dir: str | os.PathLike | None = None, merge: bool = False,
           hub_model_id: str | None = None) -> Path:
    """Write OUT (see the module doc) for a run, an ablation arm, or an ablation's winner. Returns OUT."""
    import datasets
    import pandas as pd

    from ..io import to_trl_dataset
    from ..models import load_options, resolve_model

    started = time.time()
    src = resolve_source(source, arm=arm, seed=seed, eval_dir=eval_dir)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StageDirError("already exists", file=str(out), field="--out", hint="choose a new --out")
    run = artifacts.read_manifest(src.run)
    config = run["config"]
    options = load_options(config)
    name = hub_model_id or src.name
    base_path = resolve_model(config["model"]).path
    curate = artifacts.read_manifest(src.curate) if src.curate else None
    pairs_file = Path(str(run["inputs"].get("pairs")))
    if not pairs_file.is_file():
        raise StageDirError(f"the run's training pairs are not on disk ({pairs_file})", file=str(src.run),
                            field="inputs.pairs", hint="export a run trained from a file (`pairlab train --pairs`)")
    train = pd.read_parquet(pairs_file)
    test = pd.read_parquet(src.curate / CurateDir.EVAL) if src.curate else None
    metrics = artifacts.read_json(src.eval / EvalDir.METRICS) if src.eval else None
    benchmark = (metrics or {}).get("benchmark")  # a RewardBench-style evaluation's figures

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        splits = {"train": to_trl_dataset(train)}
        if test is not None and len(test):
            splits["test"] = to_trl_dataset(test)
        counts = {k: len(v) for k, v in splits.items()}
        (tmp / "data").mkdir()
        for split, ds in splits.items():
            ds.to_parquet(str(tmp / "data" / f"{split}.parquet"))
        datasets.DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        artifacts.write_text(tmp / "data" / "README.md", dataset_card(
            name=name, curate=curate, counts=counts, source=str(run["inputs"].get("pairs"))))
        shutil.copytree(src.run / RunDir.ADAPTER, tmp / "adapter")
        trl = trl_config(run, base_path, has_test="test" in splits, hub_model_id=name)
        artifacts.write_text(tmp / TRL_YAML, "# `trl dpo` equivalent of the pairlab run "
                             f"{src.run} (run it from this directory: see {LAUNCH})\n"
                             + yaml.safe_dump(trl, sort_keys=False))
        launch = launch_line()
        artifacts.write_text(tmp / LAUNCH, "#!/bin/sh\n# Train with TRL alone on the exported data and settings.\n"
                             f"cd \"$(dirname \"$0\")\" && {launch}\n")
        os.chmod(tmp / LAUNCH, 0o755)
        merged = merge_adapter(config["model"], tmp / "adapter", tmp / "merged", options) if merge else None
        artifacts.write_text(tmp / "README.md", model_card(
            name=name, base_model=hub_base_model(config["model"]), run=run, curate=curate, metrics=metrics,
            benchmark=benchmark, counts=counts, merged=merge,
            launch=f"cd {shlex.quote(str(out))} && {launch}"))
        artifacts.write_manifest(
            tmp, stage="export", config={"merge": merge, "hub_model_id": name}, started=started,
            seed=config.get("seed"),
            inputs={"run": str(src.run), "curate": None if src.curate is None else str(src.curate),
                    "eval": None if src.eval is None else str(src.eval)},
            outputs={"data": "data", "dataset": "dataset", "adapter": "adapter", "trl_config": TRL_YAML,
                     "launch": LAUNCH, "model_card": "README.md", "merged": "merged" if merge else None},
            counts=counts, merged=merged)
        if out.exists():  # an empty directory (checked above): replace it
            out.rmdir()
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["ExportSource", "export", "launch_line", "merge_adapter", "resolve_source", "trl_config"]
