"""Executor settings of an ablation config (``executor:``); `--executor` on the CLI picks the name."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class SlurmSettings:
    partition: Optional[str] = field(default=None, metadata={"help": "Slurm partition (None: the cluster default)"})
    gpus_per_task: int = field(default=1, metadata={"help": "GPUs of each arm x seed task (0 on CPU nodes)"})
    cpus_per_task: int = field(default=4, metadata={"help": "CPUs of each task"})
    mem_gb: Optional[int] = field(default=None, metadata={"help": "memory of each task in GB (None: the default)"})
    time_min: int = field(default=240, metadata={"help": "time limit of each arm x seed task, minutes"})
    prefill_time_min: int = field(default=120, metadata={"help": "time limit of the prefill job, minutes"})
    report_time_min: int = field(default=60, metadata={"help": "time limit of the report job, minutes"})
    array_parallelism: int = field(default=64, metadata={"help": "arm x seed tasks running at once (%N)"})
    account: Optional[str] = field(default=None, metadata={"help": "Slurm account to charge"})
    setup: list[str] = field(default_factory=list, metadata={
        "help": "shell lines run before each step (module load ..., source .venv/bin/activate)"})
    additional: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "more #SBATCH options, e.g. {qos: high, constraint: a100}"})
    cluster: str = field(default="slurm", metadata={
        "help": "submitit cluster: slurm, or local (run the jobs here as processes; tests, debugging)"})


@dataclass
class ExecutorSettings:
    name: str = field(default="local", metadata={"help": "local (sequential, here), ray or slurm"})
    num_gpus: float = field(default=0, metadata={"help": "GPUs each arm x seed Ray task declares"})
    num_cpus: float = field(default=1, metadata={"help": "CPUs each arm x seed Ray task declares"})
    ray_address: Optional[str] = field(default=None, metadata={
        "help": "a running Ray cluster (e.g. auto, ray://head:10001); None starts a local instance"})
    ray_num_cpus: Optional[int] = field(default=None, metadata={
        "help": "CPUs of the local Ray instance (None: all of this machine's)"})
    folder: Optional[str] = field(default=None, metadata={
        "help": "where sbatch scripts and job logs go (default DIR/slurm)"})
    slurm: SlurmSettings = field(default_factory=SlurmSettings, metadata={"help": "Slurm job settings"})
