"""pairlab: curate preference pairs, train QLoRA DPO on them, evaluate and audit the result."""
__version__ = "0.1.0"

from .schema import PAIR_COLUMNS, PairDataError  # noqa: E402,F401
