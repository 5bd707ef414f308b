"""Helpers for tests/simulate (importable by name; conftest names collide across folders)."""
from __future__ import annotations

import re

import numpy as np

from pairlab.simulate.templates import PREFIXES, SUFFIXES

from realdata import REPO, SHARED_DATA, shared_file  # noqa: F401


def latents(records) -> np.ndarray:
    return np.array([[c["latent_quality"] for c in r["completions"]] for r in records])


def aspect_ratings(records) -> np.ndarray:
    """(records, completions, aspects) integer ratings."""
    return np.array([[[int(a["Rating"]) for a in c["annotations"].values()]
                      for c in r["completions"]] for r in records])


def core_question(prompt: str) -> str:
    """The prompt without the greeting prefix and the sign-off suffix."""
    for p in sorted(PREFIXES, key=len, reverse=True):
        if p and prompt.startswith(p):
            prompt = prompt[len(p):]
            break
    for s in sorted(SUFFIXES, key=len, reverse=True):
        if s and prompt.endswith(s):
            prompt = prompt[: -len(s)]
            break
    return re.sub(r"\s+", " ", prompt).strip().lower()
