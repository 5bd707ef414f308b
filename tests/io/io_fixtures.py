"""Small in-test record builders for every layout pairlab.io reads (written to tmp files)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from realdata import REPO, SHARED_DATA, shared_file as real_file  # noqa: F401


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def conv(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def h4_records() -> list[dict[str, Any]]:
    return [
        {"prompt": "What is 2+2?", "prompt_id": "p-add",
         "chosen": conv("What is 2+2?", "4"), "rejected": conv("What is 2+2?", "5"),
         "messages": conv("What is 2+2?", "4"), "score_chosen": 9.0, "score_rejected": 2.0},
        {"prompt": "Name a colour.", "prompt_id": "p-colour",
         "chosen": conv("Name a colour.", "Blue."), "rejected": conv("Name a colour.", "Blue."),
         "messages": conv("Name a colour.", "Blue."), "score_chosen": 7.0, "score_rejected": 7.0},
    ]


def raw_completion(response: str, model: str, ratings: dict[str, Any], overall: float,
                   fine: float | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "principle": "helpfulness", "custom_system_prompt": "Be helpful.",
        "response": response,
        "annotations": {aspect: {"Rating": str(r) if r != "N/A" else "N/A", "Rationale": "because"}
                        for aspect, r in ratings.items()},
        "fine-grained_score": fine if fine is not None else overall / 2,
        "overall_score": overall, "critique": "ok", **extra,
    }


def aspects(i: int, h: int, t: int, hp: int | str) -> dict[str, Any]:
    return {"instruction_following": i, "honesty": h, "truthfulness": t, "helpfulness": hp}


def raw_records() -> list[dict[str, Any]]:
    """Two prompts: one with four distinct completions, one where everything ties."""
    return [
        {"source": "evol_instruct", "instruction": "Explain gravity.", "models": ["a", "b", "c", "d"],
         "prompt_id": "g1", "split": "train",
         "completions": [
             # overall_score disagrees with the aspects here (the known UltraFeedback bug)
             raw_completion("Mass attracts mass.", "model-a", aspects(5, 5, 5, 5), 6.0, latent_quality=0.9),
             raw_completion("Gravity is magic.", "model-b", aspects(2, 3, 1, "N/A"), 9.0, latent_quality=0.1),
             raw_completion("Things fall down.", "model-c", aspects(4, 4, 4, 4), 7.0, latent_quality=0.6),
             raw_completion("Idk.", "model-d", aspects(1, 1, 1, 1), 2.0, latent_quality=0.2),
         ]},
        {"source": "false_qa", "instruction": "Is the sun cold?", "models": ["a", "b"],
         "prompt_id": "s1", "split": "test",
         "completions": [
             raw_completion("No.", "model-a", aspects(3, 3, 3, 3), 5.0, latent_quality=0.5),
             raw_completion("Nope.", "model-b", aspects(3, 3, 3, 3), 5.0, latent_quality=0.4),
         ]},
    ]


def argilla_records() -> list[dict[str, Any]]:
    """argilla/ultrafeedback-binarized-preferences-cleaned as on the hub."""
    return [
        {"source": "sharegpt", "prompt": "Say hi.", "chosen": conv("Say hi.", "Hi!"),
         "chosen-rating": 4.75, "chosen-model": "gpt-4", "rejected": conv("Say hi.", "Bye."),
         "rejected-rating": 2.5, "rejected-model": "alpaca-7b"},
        {"source": "ultrachat", "prompt": "Count to 3.", "chosen": conv("Count to 3.", "1 2 3"),
         "chosen-rating": 5.0, "chosen-model": "gpt-3.5-turbo",
         "rejected": conv("Count to 3.", "1 2"), "rejected-rating": 3.0, "rejected-model": "starchat"},
    ]


def generic_records() -> list[dict[str, Any]]:
    return [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "lang": "en"},
        {"prompt": "Capital of Spain?", "chosen": "Madrid.", "rejected": "", "lang": "en"},
    ]


def nested_records() -> list[dict[str, Any]]:
    """A file no layout knows: everything under other names, scores nested two deep."""
    return [
        {"question": "2*3?", "answers": {"good": "6", "bad": "5"},
         "meta": {"scores": {"good": 10, "bad": "1"}, "origin": "math"}},
        {"question": "3*3?", "answers": {"good": "9", "bad": "6"},
         "meta": {"scores": {"good": 9, "bad": None}, "origin": "math"}},
    ]
