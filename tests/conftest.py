"""Shared test fixtures. Real components only: real tokenizer, real TRL, real bitsandbytes."""
from __future__ import annotations

import os

import pytest

from realdata import REPO, SHARED_DATA, shared_file  # noqa: F401  (re-exported for tests)

# Two cores: keep torch from oversubscribing when tests run model code. Under pytest-xdist
# (`make test` runs two workers) each worker takes one core: a worker inherits the value this
# file set in the controlling process, so it is overwritten there, not defaulted (a value
# the user set before pytest started is kept).
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "2"
    os.environ["PAIRLAB_TESTS_SET_THREADS"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("PAIRLAB_TESTS_SET_THREADS"):
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")




@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from pairlab.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")
