"""The curation settings: one dataclass, loadable from YAML (``config:`` in a filters file)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import ConfigError


@dataclass
class CurateConfig:
    tokenizer: str = field(default="smollm2-135m-instruct", metadata={
        "help": "model spec whose tokenizer + chat template count tokens (as the DPO trainer "
                "sees them); 'none' = approximate ceil(chars/4), no model needed"})
    max_length: int = field(default=1024, metadata={
        "help": "training max_length: would_truncate marks pairs whose prompt + longer "
                "completion exceed it"})
    eval_fraction: float = field(default=0.05, metadata={
        "help": "share of prompts held out as eval.parquet, by normalized-prompt hash "
                "(ignored with --eval-from)"})
    seed: int = field(default=0, metadata={
        "help": "seed of the eval split and the default seed of sample / balance_length / "
                "keep_quantile tie-breaks"})
    contamination_file: str | None = field(default=None, metadata={
        "help": "evaluation prompts to check against: a .txt (one prompt per line) or any "
                "pairs file pairlab reads"})
    contamination_ngram: int = field(default=8, metadata={
        "help": "word n-gram size for the contamination overlap score"})
    contamination_threshold: float = field(default=0.5, metadata={
        "help": "contaminated = exact normalized match, or at least this share of the "
                "prompt's n-grams found in the evaluation prompts"})
    near_dup_threshold: float = field(default=0.8, metadata={
        "help": "prompts are near-duplicates at this estimated Jaccard of word 3-gram "
                "shingles (MinHash, 64 bins)"})
    near_identical_threshold: float = field(default=0.9, metadata={
        "help": "chosen and rejected are near-identical at this Jaccard of their "
                "normalized word multisets"})
    cache: bool = field(default=True, metadata={
        "help": "reuse scores cached under $PAIRLAB_CACHE/scores/ by pool content hash"})
    report: bool = field(default=True, metadata={
        "help": "write curation.html into the output directory"})

    def validate(self) -> "CurateConfig":
        """Check every field once, at the boundary; raises ConfigError naming the field."""
        def share(name: str) -> None:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"must be in [0, 1], got {v}", field=name)

        if self.max_length < 1:
            raise ConfigError(f"must be >= 1, got {self.max_length}", field="max_length")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.eval_fraction}", field="eval_fraction")
        for name in ("contamination_threshold", "near_dup_threshold", "near_identical_threshold"):
            share(name)
        if self.contamination_ngram < 1:
            raise ConfigError(f"must be >= 1, got {self.contamination_ngram}",
                              field="contamination_ngram")
        return self

    def scoring_key(self) -> dict:
        """The fields the scores depend on (the score cache key); split/seed/report are not."""
        skip = {"eval_fraction", "seed", "cache", "report"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
