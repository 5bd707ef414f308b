"""A CPU 4-bit load reads an NF4 checkpoint quantized once, with the same weights bit for bit."""
from __future__ import annotations

import os

import pytest
import torch

from pairlab import models


def _logits(model):
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=ids).logits


def _load_direct(spec, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(models, "_prequantized_4bit", lambda *a, **k: None)
        return models.load_model(spec, quantization="4bit", dtype="float32")


def _check_same_model(spec, monkeypatch):
    before = len(models.CONVERSIONS)
    cached = models.load_model(spec, quantization="4bit", dtype="float32")
    direct = _load_direct(spec, monkeypatch)
    nf4 = [c for c in models.CONVERSIONS[before:] if "-nf4-" in c["target"]]
    assert len(nf4) == 1  # this load went through the pre-quantized checkpoint
    assert type(cached.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    a, b = cached.state_dict(), direct.state_dict()
    assert a.keys() == b.keys()
    for name in a:  # packed 4-bit weights, absmax and double-quantization state, norms, embedding
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(_logits(cached), _logits(direct))
    return nf4[0]


def test_tiny_4bit_load_quantizes_once_then_reads_the_nf4_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    first = _check_same_model(models.TINY, monkeypatch)
    assert first["built"] is True
    again = _check_same_model(models.TINY, monkeypatch)
    assert again["built"] is False and again["target"] == first["target"]
    # new weights in the source (a rewritten file) -> a new key, quantized again
    weights = tmp_path / "cache" / "models" / f"{models.TINY}-{models.CACHE_VERSION}" / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = _check_same_model(models.TINY, monkeypatch)
    assert changed["built"] is True and changed["target"] != first["target"]
    # full precision and remote-code loads never touch it
    before = len(models.CONVERSIONS)
    models.load_model(models.TINY, quantization="none")
    assert not [c for c in models.CONVERSIONS[before:] if "-nf4-" in c["target"]]
    resolved = models.resolve_model(models.TINY)
    assert models._prequantized_4bit(resolved, torch.float32, {"trust_remote_code": True}) is None


@pytest.mark.slow
def test_smollm2_4bit_from_the_nf4_checkpoint_equals_quantizing_the_fp32_one(monkeypatch):
    _check_same_model(models.EMBEDDED, monkeypatch)


def test_nf4_cache_follows_the_source_config_names_the_source_and_never_hides_a_broken_model(tmp_path, monkeypatch):
    """A changed config.json is a new checkpoint; the model keeps its source's name (an adapter
    records it as its base); a sharded model with a shard missing is a one-line ModelError."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    tiny = models.resolve_model(models.TINY).path
    src = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).save_pretrained(src, max_shard_size="2MB")
    assert len(list(src.glob("model-*.safetensors"))) > 1
    first = _check_same_model(str(src), monkeypatch)
    model = models.load_model(str(src), quantization="4bit", dtype="float32")
    assert model.name_or_path == str(src) and model.config._name_or_path == str(src)
    config = json.loads((src / "config.json").read_text())
    config["rms_norm_eps"] = 0.5
    (src / "config.json").write_text(json.dumps(config))
    changed = _check_same_model(str(src), monkeypatch)
    assert changed["built"] is True and changed["target"] != first["target"]
    assert models.load_model(str(src), quantization="4bit", dtype="float32").config.rms_norm_eps == 0.5
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    sorted(broken.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(models.ModelError, match="cannot load model"):
        models.load_model(str(broken), quantization="4bit", dtype="float32")
