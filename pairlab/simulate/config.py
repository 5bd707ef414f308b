"""The simulator's knobs, one dataclass; loads from YAML with ``pairlab.config.load_config``."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from .templates import TOPICS

LENGTHS = ("short", "realistic")
FLIP_BY = ("gap", "uniform")


@dataclass
class SimulateConfig:
    n: int = field(default=1000, metadata={
        "help": "records (prompts with 4 completions each) in total, train + eval"})
    seed: int = field(default=0, metadata={
        "help": "seed: the same config and seed give byte-identical output"})
    eval_fraction: float = field(default=0.1, metadata={
        "help": "share of records (and of underlying questions) held out as the clean eval split"})
    length: str = field(default="short", metadata={
        "help": "short (one or two sentences; CPU demo) | realistic (~1,200 characters per "
                "completion, like real UltraFeedback)"})
    rater_noise: float = field(default=1.0, metadata={
        "help": "sd of the Gaussian noise added to latent quality before each 1-5 aspect "
                "rating is rounded (0 = the rater sees the truth)"})
    length_bias: float = field(default=0.75, metadata={
        "help": "rating bonus (in rating points) the rater gives to padded, verbose answers"})
    padding_rate: float = field(default=0.25, metadata={
        "help": "share of completions padded with verbose filler that adds length, not content"})
    overall_score_bug_rate: float = field(default=0.05, metadata={
        "help": "share of completions whose overall_score (critique score) is wrong: mirrored, "
                "11 - s; the aspect ratings stay right (UltraFeedback's overall_score bug)"})
    tie_rate: float = field(default=0.05, metadata={
        "help": "share of records where two completions of adjacent quality get identical ratings"})
    topics: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in TOPICS}, metadata={
        "help": "topic mix weights: " + ", ".join(TOPICS) + " (need not sum to 1)"})
    label_flip_rate: float = field(default=0.0, metadata={
        "help": "extra explicit label flips applied to the train pairs (not to the raw records)"})
    flip_by: str = field(default="gap", metadata={
        "help": "how explicit flips are drawn: gap (more often where the rating gap is small) "
                "| uniform"})
    binarize: str = field(default="mean-aspects", metadata={
        "help": "how the reader binarizes the raw records into the *_pairs.parquet files"})
    pairing: str = field(default="best-vs-random", metadata={
        "help": "which pairs the reader forms per record for the *_pairs.parquet files"})

    def validate(self) -> "SimulateConfig":
        """Check every knob once, at the boundary; raises ConfigError naming the field."""
        def share(name: str, upper_open: bool = False) -> None:
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0) or (upper_open and v >= 1.0):
                raise ConfigError(f"must be in [0, 1{')' if upper_open else ']'}, got {v}",
                                  field=name)

        if self.n < 1:
            raise ConfigError(f"must be >= 1, got {self.n}", field="n")
        for name in ("padding_rate", "overall_score_bug_rate", "tie_rate"):
            share(name)
        share("eval_fraction", upper_open=True)
        share("label_flip_rate")
        for name in ("rater_noise", "length_bias"):
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)}", field=name)
        if self.length not in LENGTHS:
            raise ConfigError(f"must be one of {LENGTHS}, got {self.length!r}", field="length")
        if self.flip_by not in FLIP_BY:
            raise ConfigError(f"must be one of {FLIP_BY}, got {self.flip_by!r}", field="flip_by")
        unknown = [t for t in self.topics if t not in TOPICS]
        if unknown:
            raise ConfigError(f"unknown topic {unknown[0]!r}; known: {list(TOPICS)}",
                              field="topics")
        weights = list(self.topics.values())
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError("weights must be >= 0 with a positive sum", field="topics")
        return self
