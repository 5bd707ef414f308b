"""The simulator's knobs, one dataclass; loads from YAML with ``pairlab.config.load_config``."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, check_range, check_ranges
from .templates import TOPICS

LENGTHS = ("short", "realistic")
FLIP_BY = ("gap", "uniform")
#: Label-noise types (pairlab.simulate.noise.NOISE_TYPES has their meaning).
NOISE_TYPES = ("uniform", "length", "source", "marker")


@dataclass
class SimulateConfig:
    n: int = field(default=1000, metadata={"min": 1,
        "help": "records (prompts with 4 completions each) in total, train + eval"})
    seed: int = field(default=0, metadata={"min": 0,
        "help": "seed: the same config and seed give byte-identical output"})
    eval_fraction: float = field(default=0.1, metadata={"min": 0, "lt": 1,
        "help": "share of records (and of underlying questions) held out as the clean eval split"})
    length: str = field(default="short", metadata={
        "help": "short (one or two sentences; CPU demo) | realistic (~1,200 characters per "
                "completion, like real UltraFeedback)"})
    rater_noise: float = field(default=1.0, metadata={"min": 0,
        "help": "sd of the Gaussian noise added to latent quality before each 1-5 aspect "
                "rating is rounded (0 = the rater sees the truth)"})
    length_bias: float = field(default=0.75, metadata={"min": 0,
        "help": "rating bonus (in rating points) the rater gives to padded, verbose answers"})
    padding_rate: float = field(default=0.25, metadata={"min": 0, "max": 1,
        "help": "share of completions padded with verbose filler that adds length, not content"})
    overall_score_bug_rate: float = field(default=0.05, metadata={"min": 0, "max": 1,
        "help": "share of completions whose overall_score (critique score) is wrong: mirrored, "
                "11 - s; the aspect ratings stay right (UltraFeedback's overall_score bug)"})
    tie_rate: float = field(default=0.05, metadata={"min": 0, "max": 1,
        "help": "share of records where two completions of adjacent quality get identical ratings"})
    topics: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in TOPICS}, metadata={"min": 0,
        "help": "topic mix weights: " + ", ".join(TOPICS) + " (need not sum to 1)"})
    label_flip_rate: float = field(default=0.0, metadata={"min": 0, "max": 1,
        "help": "extra explicit label flips applied to the train pairs (not to the raw records)"})
    flip_by: str = field(default="gap", metadata={
        "help": "how explicit flips are drawn: gap (more often where the rating gap is small) "
                "| uniform"})
    noise: str = field(default="uniform", metadata={
        "help": "which labels the explicit flips hit: uniform (random pairs, drawn by flip_by) | length "
                "(the longer answer wins) | source (every pair of one source flipped) | marker (the answer "
                "with a flattery / hedging marker wins)"})
    noise_group: str = field(default="source", metadata={
        "help": "noise=source: the column whose one value has every label flipped (source, chosen_model...)"})
    marker_rate: float = field(default=0.0, metadata={"min": 0, "max": 1,
        "help": "share of completions given a flattery or hedging marker, independent of quality"})
    binarize: str = field(default="mean-aspects", metadata={
        "help": "how the reader binarizes the raw records into the *_pairs.parquet files"})
    pairing: str = field(default="best-vs-random", metadata={
        "help": "which pairs the reader forms per record for the *_pairs.parquet files"})

    def validate(self) -> "SimulateConfig":
        """Check every knob once, at the boundary; raises ConfigError naming the field."""
        check_ranges(self)  # numeric knobs: the ranges in their field metadata
        if self.noise not in NOISE_TYPES:
            raise ConfigError(f"must be one of {NOISE_TYPES}, got {self.noise!r}", field="noise")
        if self.length not in LENGTHS:
            raise ConfigError(f"must be one of {LENGTHS}, got {self.length!r}", field="length")
        if self.flip_by not in FLIP_BY:
            raise ConfigError(f"must be one of {FLIP_BY}, got {self.flip_by!r}", field="flip_by")
        unknown = [t for t in self.topics if t not in TOPICS]
        if unknown:
            raise ConfigError(f"unknown topic {unknown[0]!r}; known: {list(TOPICS)}",
                              field="topics")
        for topic, weight in self.topics.items():
            check_range(weight, {"min": 0}, f"topics.{topic}")
        if sum(self.topics.values()) <= 0:
            raise ConfigError("weights must be >= 0 with a positive sum", field="topics")
        return self
