"""The curation settings: one dataclass, loadable from YAML (``config:`` in a filters file)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import check_ranges


@dataclass
class CurateConfig:
    tokenizer: str = field(default="smollm2-135m-instruct", metadata={
        "help": "model spec whose tokenizer + chat template count tokens (as the DPO trainer "
                "sees them); 'none' = approximate ceil(chars/4), no model needed"})
    max_length: int = field(default=1024, metadata={"min": 1,
        "help": "training max_length: would_truncate marks pairs whose prompt + longer "
                "completion exceed it"})
    eval_fraction: float = field(default=0.05, metadata={"min": 0, "lt": 1,
        "help": "share of prompts held out as eval.parquet, by normalized-prompt hash "
                "(ignored with --eval-from)"})
    seed: int = field(default=0, metadata={"min": 0,
        "help": "seed of the eval split and the default seed of sample / balance_length / "
                "keep_quantile tie-breaks"})
    contamination_file: str | None = field(default=None, metadata={
        "help": "evaluation prompts to check against: a .txt (one prompt per line) or any "
                "pairs file pairlab reads"})
    contamination_ngram: int = field(default=8, metadata={"min": 1,
        "help": "word n-gram size for the contamination overlap score"})
    contamination_threshold: float = field(default=0.5, metadata={"min": 0, "max": 1,
        "help": "contaminated = exact normalized match, or at least this share of the "
                "prompt's n-grams found in the evaluation prompts"})
    near_dup_threshold: float = field(default=0.8, metadata={"min": 0, "max": 1,
        "help": "prompts are near-duplicates at this estimated Jaccard of word 3-gram "
                "shingles (MinHash, 64 bins)"})
    near_identical_threshold: float = field(default=0.9, metadata={"min": 0, "max": 1,
        "help": "chosen and rejected are near-identical at this Jaccard of their "
                "normalized word multisets"})
    cache: bool = field(default=True, metadata={
        "help": "reuse scores cached under $PAIRLAB_CACHE/scores/ by pool content hash"})
    report: bool = field(default=True, metadata={
        "help": "write curation.html into the output directory"})
    chunk_rows: int | None = field(default=None, metadata={"min": 0,
        "help": "stream the pool in chunks of this many rows (bounded memory; scores cached chunk by "
                "chunk, so an interrupted curation resumes): a pairs-Parquet file, or a JSONL/CSV/TSV "
                "file (any compression; converted chunk by chunk into a Parquet in the cache first); "
                "default: pools over 50,000 rows (a line file: lines) stream in chunks of 10,000; "
                "0 = read the pool whole (JSON files, directories, datasets: always whole)"})

    def validate(self) -> "CurateConfig":
        """Check every field once, at the boundary (the ranges in the field metadata);
        raises ConfigError naming the field."""
        return check_ranges(self)

    def scoring_key(self) -> dict:
        """The fields the scores depend on (the score cache key); split/seed/report are not."""
        skip = {"eval_fraction", "seed", "cache", "report", "chunk_rows"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
