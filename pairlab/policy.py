"""A trained run's policy, below the stages that score it: read the run, resolve its settings,
load the base with the adapter, and get (cached) log-probs.

`pairlab evaluate`, `pairlab audit` and `pairlab ablate`'s reference prefill all load a policy
the way training saw it; this module is that one way (floor 2 in the architecture: stages import
it, it imports no stage).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import artifacts
from .dirs import RunDir
from .distributed import local_device
from .schema import PairDataError

log = logging.getLogger(__name__)

ADAPTER_DIR = RunDir.ADAPTER  # inside a run directory (pairlab.train writes it)
#: Settings for a bare ``--model`` (no run to read them from): pairlab train's defaults.
BARE_MODEL_DEFAULTS: dict[str, Any] = {"quantization": "4bit", "dtype": "auto", "beta": 0.1,
                                       "max_length": 256, "truncation_mode": "keep_start"}


@dataclass(frozen=True)
class PolicySetup:
    """Concrete settings for loading and scoring one policy (a run's, or a bare model), after
    reading the run's manifest."""

    model: str
    quantization: str
    dtype: str
    device: str
    compute_dtype: str
    beta: float
    max_length: int | None
    truncation_mode: str
    ref_cache_dir: str | None
    run: str | None
    adapter_dir: str | None
    #: the run's model-loading options (pairlab.models.LOAD_OPTIONS: revision, attention, chat template)
    model_options: Any = None


@dataclass(frozen=True)
class SetupOverrides:
    """What a caller may set over the run's settings (None: the run's). ``EvalConfig`` has the
    same attributes; audit passes this with only its device."""

    device: str = "auto"
    quantization: str | None = None
    dtype: str | None = None
    beta: float | None = None
    max_length: int | None = None
    truncation_mode: str | None = None
    ref_cache_dir: str | None = None


# ---------------------------------------------------------------- settings

def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A training run's manifest, after verifying the directory holds a finished run
    (manifest present, stage train, every output's size and hash as written)."""
    run = Path(run_dir)
    manifest = RunDir.verify(run)
    if not (run / ADAPTER_DIR / "adapter_config.json").exists():
        raise PairDataError("run has no adapter (adapter/adapter_config.json)", file=str(run / ADAPTER_DIR))
    return manifest


def resolve_setup(config: Any, *, run: str | os.PathLike | None = None,
                  model: str | None = None) -> PolicySetup:
    """Fill every setting: the config's where set, else the run's, else the bare-model defaults.

    ``config``: any object with the override attributes (``EvalConfig``, :class:`SetupOverrides`);
    an attribute that is missing or None falls back to the run.
    """
    from .models import pick_compute_dtype, pick_device

    if (run is None) == (model is None):
        raise PairDataError("give exactly one of a run directory (--run) or a model spec (--model)")
    trained: dict[str, Any] = {}
    dpo: dict[str, Any] = {}
    if run is not None:
        trained = read_run(run)["config"]
        dpo = {**trained.get("dpo", {}), **trained.get("dpo_effective", {})}
        if dpo.get("ld_alpha") is not None:
            log.warning("run used LD-DPO (ld_alpha=%s); evaluate reports standard DPO rewards "
                        "(log-probs summed over all completion tokens)", dpo["ld_alpha"])

    def pick(name: str, source: dict[str, Any]) -> Any:
        value = getattr(config, name, None)
        if value is not None:
            return value
        return source.get(name, BARE_MODEL_DEFAULTS[name])

    device = local_device(pick_device(getattr(config, "device", None) or "auto"))  # under a launcher: one GPU per process
    dtype = pick("dtype", trained)
    return PolicySetup(
        model=model if model is not None else trained["model"],
        quantization=pick("quantization", trained), dtype=dtype, device=device,
        compute_dtype=str(pick_compute_dtype(device, dtype)).replace("torch.", ""),
        beta=float(pick("beta", dpo)),
        max_length=None if pick("max_length", dpo) is None else int(pick("max_length", dpo)),
        truncation_mode=pick("truncation_mode", dpo),
        ref_cache_dir=getattr(config, "ref_cache_dir", None) or trained.get("ref_cache_dir"),
        run=None if run is None else str(run),
        adapter_dir=None if run is None else str(Path(run) / ADAPTER_DIR),
        model_options=_model_options(trained))


def _model_options(trained: dict[str, Any]) -> dict[str, Any] | None:
    from .models import load_options

    return load_options(trained) or None


# ---------------------------------------------------------------- model and reference

def load_policy(setup: PolicySetup):
    """(model, tokenizer): the base as training loaded it, with the run's adapter when there is one."""
    from .models import load_model, load_tokenizer

    options = setup.model_options or {}
    tokenizer = load_tokenizer(setup.model, **options)
    model = load_model(setup.model, quantization=setup.quantization, dtype=setup.dtype, device=setup.device,
                       **options)
    if setup.adapter_dir is not None:
        from peft import PeftModel

        # autocast_adapter_dtype=False keeps the adapter in the dtype it was trained and saved in
        # (bf16 under QLoRA), so the policy here is the policy training ended with.
        model = PeftModel.from_pretrained(model, setup.adapter_dir, is_trainable=False,
                                          autocast_adapter_dtype=False)
        model.eval()
    return model, tokenizer


def reference_cache(setup: PolicySetup, tokenizer, *, policy: bool = False):
    """The shared reference cache under exactly the key `pairlab train` uses for this model.

    With ``policy`` (a run with an adapter): the same cache root under a key that adds the
    adapter's content hash, where the trained policy's log-probs are stored as computed.
    """
    from .logprobs import RefLogpCache, ref_cache_key_fields
    from .models import model_fingerprint, pick_compute_dtype

    adapter_sha = None
    if policy:
        adapter = Path(setup.adapter_dir)
        adapter_sha = artifacts.text_sha256("".join(
            artifacts.file_sha256(f) for f in sorted(adapter.glob("adapter_*")) if f.is_file()))
    return RefLogpCache(ref_cache_key_fields(
        model_fingerprint=model_fingerprint(setup.model, setup.quantization, setup.dtype),
        compute_dtype=pick_compute_dtype(setup.device, setup.dtype), tokenizer=tokenizer,
        max_length=setup.max_length, truncation_mode=setup.truncation_mode, ld_alpha=None,
        adapter_sha256=adapter_sha, layout=logps_layout_of(setup)), root=setup.ref_cache_dir)


def logps_layout_of(setup: PolicySetup) -> str:
    """The log-prob layout of every pass for this setup, the one its cache key names
    (:func:`pairlab.logprobs.stored_layout`: the same rule `pairlab train` keys its cache by)."""
    from .logprobs import model_config, stored_layout

    return stored_layout(model_config(setup.model, setup.model_options), setup.truncation_mode,
                         device=setup.device, quantization=setup.quantization)


def reference_logps(model, tokenizer, pairs: pd.DataFrame, setup: PolicySetup, cache, *,
                    batch_size: int, adapter: bool = False, tokenized=None, progress: bool | str = False,
                    chunk_pairs: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Log-probs of every pair, the reference's (adapter disabled) unless ``adapter``: cached
    ones read, missing ones computed and stored chunk by chunk as they finish."""
    from .logprobs import LOGP_CHUNK_PAIRS, cached_sequence_logps

    return cached_sequence_logps(model, tokenizer, pairs, cache, tokenized=tokenized,
                                 layout=cache.layout if cache is not None else logps_layout_of(setup),
                                 max_length=setup.max_length, truncation_mode=setup.truncation_mode,
                                 batch_size=batch_size, adapter=adapter, progress=progress,
                                 chunk_pairs=chunk_pairs or LOGP_CHUNK_PAIRS)


