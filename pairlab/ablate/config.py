"""AblationConfig: one pool, one eval split, a list of filter arms, a common budget.

Mirrors ``examples/ablation-demo.yaml``. Stage settings are the stages' own config
dataclasses, given as mappings (``curate:``, ``train:``, ``eval:``) and validated by
those dataclasses before any work starts; each arm may override ``train:`` keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..config import ConfigError, check_ranges, from_dict, load_config
from ..executors.config import ExecutorSettings

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BUDGET_UNITS = ("steps", "epochs")


@dataclass
class PoolSettings:
    input: Optional[str] = field(default=None, metadata={
        "help": "pairs to ablate over (any SPEC `pairlab convert` reads); or use `simulate:`"})
    format: str = field(default="auto", metadata={"help": "layout of `input` (auto, h4, raw, ...)"})
    map: list[str] = field(default_factory=list, metadata={"help": "field mappings for `input` (FIELD=PATH)"})
    split: Optional[str] = field(default=None, metadata={"help": "hub split of `input`"})
    eval_from: Optional[str] = field(default=None, metadata={
        "help": "an existing eval split (SPEC); pool prompts overlapping it are dropped"})
    eval_split: Optional[str] = field(default=None, metadata={"help": "hub split of `eval_from` (e.g. test_prefs)"})
    eval_format: str = field(default="auto", metadata={"help": "layout of `eval_from`"})
    eval_map: list[str] = field(default_factory=list, metadata={"help": "field mappings for `eval_from`"})
    simulate: Optional[dict[str, Any]] = field(default=None, metadata={
        "help": "SimulateConfig fields: synthetic pool + clean held-out split with known truth"})
    flip_rate: float = field(default=0.0, metadata={"min": 0, "max": 1,
        "help": "inject this share of label flips into the pool (known truth for real data)"})
    flip_by: str = field(default="gap", metadata={"help": "gap (small gaps flip more) or uniform"})
    noise: str = field(default="uniform", metadata={
        "help": "which labels flip_rate flips: uniform | length | source | marker (pairlab.simulate.NOISE_TYPES)"})
    max_eval_pairs: Optional[int] = field(default=None, metadata={"min": 1,
        "help": "evaluate on a seeded sample of at most this many eval pairs"})


@dataclass
class Budget:
    unit: str = field(default="steps", metadata={
        "help": "steps: every arm gets the same optimizer steps (fair); epochs: same passes over its data"})
    value: float = field(default=30, metadata={"help": "the number of steps or epochs", "gt": 0})


@dataclass
class Arm:
    name: str = field(metadata={"help": "arm name (letters, digits, . _ -)"})
    filters: list[Any] = field(default_factory=list, metadata={"help": "filter spec, as in filters.yaml"})
    train: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "TrainConfig overrides for this arm (dotted keys or nested mappings)"})


@dataclass
class AblationConfig:
    name: str = field(default="ablation", metadata={"help": "title of the comparison report"})
    pool: PoolSettings = field(default_factory=PoolSettings, metadata={"help": "the shared pool and eval split"})
    arms: list[Arm] = field(default_factory=list, metadata={"help": "the arms: name + filters (+ train overrides)"})
    baseline: Optional[str] = field(default=None, metadata={"help": "arm the others are compared to (default: first)"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"min": 0,
        "help": "training seeds; with several, the table shows mean ± sd"})
    budget: Budget = field(default_factory=Budget, metadata={"help": "common training budget"})
    curate: dict[str, Any] = field(default_factory=dict, metadata={"help": "CurateConfig fields"})
    train: dict[str, Any] = field(default_factory=dict, metadata={"help": "TrainConfig fields for every arm"})
    eval: dict[str, Any] = field(default_factory=dict, metadata={"help": "EvalConfig fields"})
    evaluate_base: bool = field(default=True, metadata={
        "help": "also evaluate the untrained base model (reference-free baseline)"})
    executor: ExecutorSettings = field(default_factory=ExecutorSettings, metadata={
        "help": "where the arm x seed runs go: local, ray or slurm, and their resources (--executor)"})
    report_to: list[str] = field(default_factory=list, metadata={
        "help": "trackers that get one run per arm x seed, grouped by `name`: tensorboard, wandb"})

    def validate(self) -> "AblationConfig":
        """Check everything that can be checked without loading data or models."""
        from ..curate import CurateConfig, parse_filters
        from ..evaluate.config import EvalConfig
        from ..train.config import TrainConfig, validate as validate_train

        if not self.arms:
            raise ConfigError("no arms", field="arms", hint="list at least one arm with a name and filters")
        names = [a.name for a in self.arms]
        for arm in self.arms:
            if not _ARM_NAME.match(arm.name):
                raise ConfigError(f"bad arm name '{arm.name}'", field="arms.name",
                                  hint="letters, digits, '.', '_' and '-' only")
            try:
                parse_filters(arm.filters)
            except ConfigError as err:
                raise ConfigError(f"arm '{arm.name}': {err.message}", field=f"arms.{arm.name}.filters.{err.field}",
                                  hint=err.hint) from None
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"arm names repeat: {sorted(dup)}", field="arms.name")
        for arm in self.arms:  # drop_flagged audits another arm: it must exist and not flag itself
            for f in parse_filters(arm.filters):
                source = getattr(f.params, "from_arm", None) if f.name == "drop_flagged" else None
                if source is not None and (source not in names or source == arm.name):
                    raise ConfigError(f"arm '{arm.name}': drop_flagged from_arm '{source}' is not another arm",
                                      field=f"arms.{arm.name}.filters.drop_flagged.from_arm", hint=f"one of {names}")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(f"baseline '{self.baseline}' is not an arm", field="baseline",
                              hint=f"one of {names}")
        if (self.pool.input is None) == (self.pool.simulate is None):
            raise ConfigError("give exactly one of pool.input and pool.simulate", field="pool")
        if self.budget.unit not in BUDGET_UNITS:
            raise ConfigError(f"unknown unit '{self.budget.unit}'", field="budget.unit",
                              hint=f"one of {BUDGET_UNITS}")
        check_ranges(self)  # numeric fields: the ranges in their metadata
        if not self.seeds:
            raise ConfigError("at least one seed", field="seeds")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ConfigError(f"seed {repeated[0]} is listed twice: a repeated seed retrains the same run and "
                              "counts it twice in the pooled test", field="seeds", hint="list each seed once")
        from ..simulate.noise import NOISE_TYPES

        if self.pool.noise not in NOISE_TYPES:
            raise ConfigError(f"unknown noise type {self.pool.noise!r}", field="pool.noise",
                              hint=f"one of {list(NOISE_TYPES)}")
        from ..simulate.config import FLIP_BY

        if self.pool.flip_by not in FLIP_BY:
            raise ConfigError(f"unknown flip_by {self.pool.flip_by!r}", field="pool.flip_by", hint=f"one of {list(FLIP_BY)}")
        from ..executors import EXECUTORS
        from ..tracking import TRACKERS

        if self.executor.name not in EXECUTORS:
            raise ConfigError(f"unknown executor '{self.executor.name}'", field="executor.name",
                              hint=f"one of {sorted(EXECUTORS)}")
        if self.executor.slurm.cluster not in ("slurm", "local", "debug"):
            raise ConfigError(f"unknown cluster '{self.executor.slurm.cluster}'", field="executor.slurm.cluster",
                              hint="slurm, or local / debug to run the jobs on this machine")
        if self.executor.num_gpus < 0 or self.executor.num_cpus < 0:
            raise ConfigError("must be >= 0", field="executor.num_gpus" if self.executor.num_gpus < 0
                              else "executor.num_cpus")
        for tracker in self.report_to:
            if tracker not in TRACKERS:
                raise ConfigError(f"unknown tracker '{tracker}'", field="report_to", hint=f"one of {sorted(TRACKERS)}")
        if self.pool.simulate is not None:
            from ..simulate.config import SimulateConfig

            from_dict(SimulateConfig, self.pool.simulate, prefix="pool.simulate.").validate()
        from_dict(CurateConfig, self.curate, prefix="curate.").validate()
        from_dict(EvalConfig, self.eval, prefix="eval.").validate()
        for arm in self.arms:
            validate_train(train_config(self, arm, self.seeds[0]), prefix=f"arms.{arm.name}.train.")
        _ = TrainConfig  # the dataclass train_config() builds
        return self

    @property
    def baseline_arm(self) -> str:
        return self.baseline or self.arms[0].name


def _nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """{'dpo.beta': 0.2} -> {'dpo': {'beta': 0.2}} (dotted keys as in `--set`)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = _merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def train_settings(cfg: AblationConfig, arm: Arm, seed: int) -> dict[str, Any]:
    """The TrainConfig mapping of one arm and seed: common < arm overrides < budget, seed.

    Either may use TRL / alignment-handbook flat keys (``lora_r``, ``beta``, ...): they are
    mapped to pairlab's fields with one notice per key (see :mod:`pairlab.train.recipes`).
    """
    from ..train.recipes import emit_notices, map_recipe

    common, said = map_recipe(_nested(cfg.train), prefix="train.")
    own, said_arm = map_recipe(_nested(arm.train), prefix=f"arms.{arm.name}.train.")
    emit_notices(said + said_arm)
    settings = _merge(common, own)
    dpo = dict(settings.get("dpo", {}))
    if cfg.budget.unit == "steps":
        dpo["max_steps"] = int(cfg.budget.value)
    else:
        dpo["num_train_epochs"] = float(cfg.budget.value)
        dpo["max_steps"] = -1
    settings["dpo"] = dpo
    settings["seed"] = seed
    return settings


def train_config(cfg: AblationConfig, arm: Arm, seed: int):
    from ..train.config import TrainConfig

    return from_dict(TrainConfig, train_settings(cfg, arm, seed), prefix=f"arms.{arm.name}.train.")


def load_ablation_config(path: str, overrides: list[str] | None = None) -> AblationConfig:
    return load_config(AblationConfig, path, overrides).validate()
