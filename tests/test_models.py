import json
from pathlib import Path

import pytest
import torch

from pairlab import models
from pairlab.models import ModelError


def test_unknown_spec_names_field_and_hint():
    with pytest.raises(ModelError) as err:
        models.resolve_model("no-such-model")
    assert err.value.field == "model"
    assert "tiny-random-llama" in str(err.value)


def test_local_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        models.resolve_model(str(tmp_path))


def test_hub_id_resolves_without_network():
    assert models.resolve_model("Qwen/Qwen2-0.5B-Instruct").kind == "hub"


def test_cpu_compute_dtype_follows_cpu_features():
    expected = torch.bfloat16 if models.cpu_has_native_bf16() else torch.float32
    assert models.pick_compute_dtype("cpu") == expected
    assert models.pick_compute_dtype("cpu", "float32") == torch.float32
    assert models.precision_flags(torch.float32) == {"bf16": False, "fp16": False}
    assert models.precision_flags(torch.bfloat16) == {"bf16": True, "fp16": False}
    with pytest.raises(ModelError):
        models.pick_compute_dtype("cpu", "int3")


def test_cpu_bf16_detection_can_be_overridden(monkeypatch):
    monkeypatch.setenv("PAIRLAB_CPU_BF16", "0")  # a bf16 CPU chooses as an AVX2-only one
    assert not models.cpu_has_native_bf16() and models.pick_compute_dtype("cpu") == torch.float32
    monkeypatch.setenv("PAIRLAB_CPU_BF16", "1")
    assert models.cpu_has_native_bf16() and models.pick_compute_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv("PAIRLAB_CPU_BF16", "")  # unset or anything else: the CPU's own flags
    assert models.cpu_has_native_bf16() == ("avx512_bf16" in open("/proc/cpuinfo").read()
                                            or "amx_bf16" in open("/proc/cpuinfo").read())


def test_tiny_random_llama_has_smollm2_tokenizer_and_loads_4bit():
    import bitsandbytes as bnb

    resolved = models.resolve_model(models.TINY)
    files = {p.name for p in Path(resolved.path).iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    tok = models.load_tokenizer(models.TINY)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = models.load_model(models.TINY, quantization="4bit")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    ids = tok("hello world", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == model.config.vocab_size
    assert torch.isfinite(logits).all()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's mappings (Linux)")
def test_cpu_4bit_model_lets_go_of_the_full_precision_checkpoint():
    """The unquantized tensors (tied embedding / LM head, norms) are copied out of the mmap'd
    safetensors file, so the full-precision checkpoint does not stay in the 4-bit model's
    resident memory (532 MB for SmolLM2-135M); values and the tie are unchanged."""
    import gc

    from safetensors.torch import load_file

    weights = str(Path(models.resolve_model(models.TINY).path) / "model.safetensors")

    def mappings() -> int:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            return sum(weights in line for line in maps)

    gc.collect()
    before = mappings()  # another test's full-precision model may hold its own mapping
    model = models.load_model(models.TINY, quantization="4bit", device="cpu")
    gc.collect()
    assert mappings() == before
    assert model.lm_head.weight is model.model.embed_tokens.weight
    state = load_file(weights)
    # in the compute dtype: bf16 on a CPU with native bf16 ("auto"), else float32 as stored
    dtype = model.model.embed_tokens.weight.dtype
    assert dtype == models.pick_compute_dtype("cpu", "auto")
    assert torch.equal(model.model.embed_tokens.weight, state["model.embed_tokens.weight"].to(dtype))
    assert torch.equal(model.model.norm.weight, state["model.norm.weight"].to(dtype))


def test_tiny_full_precision_is_deterministic():
    a = models.load_model(models.TINY, quantization="none", dtype="float32")
    b = models.load_model(models.TINY, quantization="none", dtype="float32")
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), na


@pytest.mark.slow
def test_embedded_smollm2_4bit_answers_a_chat_prompt_coherently(smollm2_tokenizer):
    import bitsandbytes as bnb

    resolved = models.resolve_model(models.EMBEDDED)
    config = json.loads((Path(resolved.path) / "config.json").read_text())
    assert "quantization_config" not in config  # GGUF's would block the 4-bit load
    model = models.load_model(models.EMBEDDED, quantization="4bit")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    enc = smollm2_tokenizer.apply_chat_template(msgs, add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    answer = smollm2_tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_fast_gguf_conversion_writes_the_same_files_as_transformers_own(tmp_path):
    """The conversion memoizes transformers' GGUF parsing (once instead of four times); the
    files it writes must be byte-identical to the unmemoized path's, and the patch undone."""
    import gguf
    from transformers import modeling_gguf_pytorch_utils as loader

    originals = (gguf.GGUFReader, gguf.get_tensor_name_map, loader.load_gguf_checkpoint)
    fast, plain = tmp_path / "fast", tmp_path / "plain"
    fast.mkdir(), plain.mkdir()
    models._convert_embedded(fast)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map, loader.load_gguf_checkpoint) == originals
    models._convert_gguf(plain)
    names = sorted(p.name for p in plain.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert sorted(p.name for p in fast.iterdir()) == names
    for name in names:
        assert (fast / name).read_bytes() == (plain / name).read_bytes(), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_cpu_4bit_models_stay_on_one_kernel_until_generation(dtype):
    """Every CPU 4-bit model loads on the dequantize + matmul kernel training uses (no
    repacking, whichever pass runs first); generation hands it to bitsandbytes' inference
    kernel only where that applies (AVX512-BF16 CPU, bf16 compute), and the repacked model
    still generates."""
    from bitsandbytes.functional import has_avx512bf16

    model = models.load_model("tiny-random-llama", quantization="4bit", dtype=dtype)
    layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.inference_mode():
        before = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    models.use_inference_kernel(model)
    repack = bool(has_avx512bf16()) and dtype == "bfloat16"
    assert all(m.support_avx512bf16_for_cpu == repack for m in layers)
    with torch.inference_mode():
        after = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert all(bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False)) == repack for m in layers)
    assert after.shape == before.shape and after[0, :5].tolist() == ids[0].tolist()


def _mapping_rss_kb(address: int) -> int:
    """Resident KiB of the mapping holding ``address`` (/proc/self/smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            inside = lo <= address < hi
        elif inside and head[0] == "Rss:":
            return int(head[1])
    raise AssertionError("no mapping holds the address")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc only")
def test_a_copied_tensor_leaves_its_file_pages(tmp_path):
    """The pre-quantized checkpoint stays mapped (its 4-bit weights are views of it): once an
    unquantized tensor is copied out, its pages of the mapping leave the resident set, and
    reading the old view again faults the same bytes back in from the file."""
    values = torch.arange(8 * 1024 * 1024, dtype=torch.float32)  # 32 MiB
    path = tmp_path / "weights.bin"
    path.write_bytes(values.numpy().tobytes())
    mapped = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32)
    assert torch.equal(mapped, values)  # every page read: resident
    before = _mapping_rss_kb(mapped.data_ptr())
    assert before >= 30 * 1024
    copy = mapped.clone()
    models._drop_mapped_pages(mapped, models._file_mappings())
    assert _mapping_rss_kb(mapped.data_ptr()) <= 8  # at most the partial pages at either end
    assert torch.equal(copy, values) and torch.equal(mapped, values)  # nothing lost either way
    anonymous = values.clone()  # memory not mapped from a file is never dropped
    models._drop_mapped_pages(anonymous, models._file_mappings())
    assert torch.equal(anonymous, values)


def test_a_model_built_on_first_use_writes_nothing_to_stderr(tmp_path, monkeypatch, capfd):
    """Building the tiny model in an empty cache printed transformers' "Writing model shards"
    bar, so a command failing right after (`train --out a_file/run` with a fresh cache) wrote
    three lines to stderr, not one. The build is silent now, and the bars are as they were."""
    from transformers.utils import logging as hf_logging

    embedded = Path(models.resolve_model(models.EMBEDDED).path)  # converted once for the session
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / embedded.name).symlink_to(embedded)  # only the tiny model is built
    capfd.readouterr()
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    was_on = hf_logging.is_progress_bar_enabled()  # another test in this process may have turned them off
    hf_logging.enable_progress_bar()
    try:
        resolved = models.resolve_model("tiny-random-llama")
        assert (Path(resolved.path) / "config.json").exists() and models.CONVERSIONS[-1]["built"]
        assert capfd.readouterr().err == ""
        assert hf_logging.is_progress_bar_enabled()
    finally:
        if not was_on:
            hf_logging.disable_progress_bar()
