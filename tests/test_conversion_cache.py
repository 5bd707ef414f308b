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
