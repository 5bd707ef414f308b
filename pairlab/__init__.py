"""pairlab: curate preference pairs, train QLoRA DPO on them, evaluate and audit the result."""
__version__ = "0.1.0"

from .schema import PAIR_COLUMNS, PairDataError  # noqa: E402,F401


def __getattr__(name):
    # pairlab.load(DIR) without importing pandas-heavy modules at `import pairlab`
    if name == "load":
        from .results import load

        return load
    raise AttributeError(f"module 'pairlab' has no attribute '{name}'")
