"""Synthetic UltraFeedback with known truth, and label-noise injection into real pairs.

* :func:`simulate` - raw-layout records (4 completions per prompt, latent quality known).
* :func:`write_simulation` - raw files + the pairs the reader makes of them + manifest.
* :func:`simulate_pairs` - (train pairs, eval pairs) in memory, through the same reader.
* :func:`inject_noise` - flip a seeded share of labels in any pairs table, and say which.
"""
from __future__ import annotations

from .config import SimulateConfig
from .generate import SimResult, raw_discordance, simulate
from .noise import NOISE_TYPES, has_marker, inject_noise
from .templates import TOPICS
from .write import label_noise_rate, simulate_pairs, write_noisy_pairs, write_simulation

__all__ = ["NOISE_TYPES", "SimResult", "SimulateConfig", "TOPICS", "has_marker", "inject_noise", "label_noise_rate",
           "raw_discordance", "simulate", "simulate_pairs", "write_noisy_pairs",
           "write_simulation"]
