"""Generations on a fixed prompt set: base vs aligned, greedy and seeded sampling.

One row per prompt x model x mode (x seed for sampling) in ``generations.parquet``.
``implicit_reward`` is the aligned model's DPO reward of the generated text,
beta * (log pi(text|prompt) - log pi_ref(text|prompt)), scored exactly like an eval
pair (TRL's tokenization and log-probs, :mod:`pairlab.logprobs`); it is NaN when there
is no adapter (a bare ``--model`` has only the base, whose reward is 0 by definition).

Sampling is seeded right before each ``generate`` call (``torch.manual_seed(seed)``), so
a text depends only on (model, prompt, seed), not on the order prompts are run in, and
base and aligned draw from the same random stream (a paired comparison).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..preference import implicit_reward
from ..schema import PairDataError, as_messages, make_prompt_id, prompt_to_text, prompt_turns

GENERATION_COLUMNS = ["prompt_id", "prompt_text", "model", "mode", "seed", "text", "n_tokens",
                      "finished", "implicit_reward"]


# ---------------------------------------------------------------- the prompt set

def _prompt_frame(messages: list[list[dict[str, str]]]) -> pd.DataFrame:
    texts = [prompt_to_text(m) for m in messages]
    return pd.DataFrame({"prompt_id": [make_prompt_id(t) for t in texts], "prompt": messages,
                         "prompt_text": texts})


def read_prompts_file(path: str | Path) -> pd.DataFrame:
    """A ``.txt`` file (one prompt per line) or ``.jsonl`` (``prompt``: text or chat messages),
    UTF-8 (a byte-order mark skipped) or UTF-16 with its byte-order mark, optionally compressed;
    bytes that are not text fail naming the file and the line."""
    from ..io.sources import file_type, read_text_file

    path = Path(path)
    text = read_text_file(path, "prompts_file")
    jsonl = file_type(path)[0] == ".jsonl"  # prompts.jsonl.gz too
    messages: list[list[dict[str, str]]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not jsonl:
            messages.append([{"role": "user", "content": line.strip()}])
            continue
        try:
            value = json.loads(line)["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PairDataError("expected a JSON object with a 'prompt'", file=str(path), line=line_no,
                                field="prompt", hint="text, or a list of {role, content} messages") from None
        messages.append([{"role": "user", "content": value}] if isinstance(value, str) else as_messages(value))
    if not messages:
        raise PairDataError("no prompts in file", file=str(path), field="prompts_file")
    return _prompt_frame(messages)


def select_prompts(pairs: pd.DataFrame, n: int, prompts_file: str | None = None) -> pd.DataFrame:
    """The fixed prompt set: the first ``n`` distinct prompts of a file, else of the eval pairs."""
    if prompts_file:
        return read_prompts_file(prompts_file).drop_duplicates("prompt_id").head(n).reset_index(drop=True)
    first = pairs.drop_duplicates("prompt_id").head(n)
    return _prompt_frame([as_messages(m) for m in first["prompt"]])


# ---------------------------------------------------------------- generating

def _generate_one(model, tokenizer, messages, *, sample: bool, seed: int | None, max_new_tokens: int,
                  temperature: float, top_p: float) -> tuple[str, int, bool]:
    """(text, generated tokens before end-of-sequence, whether it ended by itself)."""
    import torch
    from transformers import GenerationConfig

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        return_dict=True, return_tensors="pt")
    device = next(model.parameters()).device
    input_ids = enc["input_ids"].to(device)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample,
                              temperature=temperature if sample else None,
                              top_p=top_p if sample else None, top_k=None,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if sample:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=enc["attention_mask"].to(device),
                             generation_config=config)
    new = out[0, input_ids.shape[1]:].tolist()
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    n = next((i for i, t in enumerate(new) if t in stops), len(new))
    return tokenizer.decode(new[:n], skip_special_tokens=True), n, n < len(new)


def implicit_rewards(model, tokenizer, prompts: list, texts: list[str], *, beta: float,
                     max_length: int | None, truncation_mode: str, batch_size: int) -> np.ndarray:
    """beta * (log pi - log pi_ref) of each text as the completion of its prompt (adapter on vs off)."""
    from ..logprobs import sequence_logps

    # sequence_logps scores pairs; scoring the text as both sides keeps one code path for
    # every log-prob pairlab reports (the generation itself costs far more than this).
    frame = pd.DataFrame({"pair_id": [f"g{i}" for i in range(len(texts))], "prompt": prompts,
                          "chosen": texts, "rejected": texts})
    kwargs = dict(max_length=max_length, truncation_mode=truncation_mode, batch_size=batch_size)
    policy = sequence_logps(model, tokenizer, frame, adapter=True, **kwargs)
    reference = sequence_logps(model, tokenizer, frame, adapter=False, **kwargs)
    return implicit_reward(policy["chosen_logps"], reference["chosen_logps"], beta)


def generate_table(model, tokenizer, prompts: pd.DataFrame, *, has_adapter: bool, modes: list[str],
                   sample_seeds: list[int], max_new_tokens: int, temperature: float, top_p: float,
                   beta: float, max_length: int | None, truncation_mode: str = "keep_start",
                   batch_size: int = 8) -> pd.DataFrame:
    """Generate for every prompt x model (base, aligned when there is an adapter) x mode.

    Returns a frame with :data:`GENERATION_COLUMNS` (``seed`` is <NA> for greedy rows).
    """
    from ..logprobs import adapter_context
    from ..models import use_inference_kernel

    # Generation and the scoring of its texts are the model's last uses: decoding one token a
    # step is faster on bitsandbytes' own CPU kernel (the implicit rewards below then run on it
    # too: a few texts, and nothing cached)
    use_inference_kernel(model)
    runs: list[tuple[str, str, int | None]] = []
    for mode in modes:
        runs += [(mode, "greedy", None)] if mode == "greedy" else [(mode, "sample", s) for s in sample_seeds]
    models = ["base", "aligned"] if has_adapter else ["base"]
    rows: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    try:
        for which in models:
            with adapter_context(model, which == "aligned"):
                for _, prompt in prompts.iterrows():
                    for _, mode, seed in runs:
                        text, n_tokens, finished = _generate_one(
                            model, tokenizer, prompt_turns(prompt["prompt"]), sample=mode == "sample",
                            seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
                        rows.append({"prompt_id": prompt["prompt_id"], "prompt": as_messages(prompt["prompt"]),
                                     "prompt_text": prompt["prompt_text"], "model": which, "mode": mode,
                                     "seed": seed, "text": text, "n_tokens": n_tokens, "finished": finished})
    finally:
        model.train(was_training)
    table = pd.DataFrame(rows, columns=GENERATION_COLUMNS[:-1] + ["prompt"])
    table["seed"] = pd.array(table["seed"], dtype="Int64")
    table["n_tokens"] = table["n_tokens"].astype(int)
    table["implicit_reward"] = np.nan
    if has_adapter and len(table):
        table["implicit_reward"] = implicit_rewards(
            model, tokenizer, list(table["prompt"]), list(table["text"]), beta=beta, max_length=max_length,
            truncation_mode=truncation_mode, batch_size=batch_size)
    return table[GENERATION_COLUMNS]
