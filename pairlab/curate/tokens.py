"""Token counts exactly as the DPO trainer will see them, at batch-tokenizer speed.

TRL's ``DPOTrainer`` renders each conversational pair with the model's chat template:
the prompt with the generation prompt (``...<|im_start|>assistant\\n``), and prompt +
completion (``... completion<|im_end|>\\n``). Rendering and tokenizing three whole
sequences per pair would tokenize every prompt three times. Instead we tokenize each
*text* once and add the template's constant overhead, which we measure from the
tokenizer's own ``apply_chat_template`` (a test checks equality against it).

Why that is exact: a tokenizer splits its input at added/special tokens first, and
tokenizes the pieces between them independently. Chat templates put special tokens
around each message, so a message's content is tokenized together with only the short
literal text between the last special token and the content (``"assistant\\n"``). For
byte-level BPE that boundary is clean unless the content itself starts with whitespace
(a leading ``"\\n"`` can merge with the template's ``"\\n"``); those rows, and any
template or tokenizer where a probe shows the boundary is not clean, are tokenized
together with that literal text instead, which is exact in every case.

Multi-message prompts (system turn, multi-turn context) are rendered with
``apply_chat_template`` and tokenized whole: rare, exact, and not the hot path.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..schema import PairDataError

#: Texts per tokenizer call: bounds the memory of the Encoding objects (they hold
#: token strings and offsets) without losing the tokenizer's own parallelism.
CHUNK = 8192
#: Probe contents used to check that content tokenizes the same alone as after the
#: template's literal prefix. Whitespace-leading content is handled per row anyway.
_PROBES = ("Hello", "hello world", "1234 apples", "(a) b", "'s fine", "é café", "你好",
           "<b>bold</b>", "#include", "-1", ".", "A\nB")
_SENTINEL = "\x00PAIRLAB\x00"
_CHAR_TOKENS = "none"  # tokenizer spec that selects the char-based approximation


@lru_cache(maxsize=4)
def load_tokenizer(spec: str):
    """The fast tokenizer for a model spec, loaded once per process (it takes seconds)."""
    from ..models import load_tokenizer as _load

    return _load(spec)


def _added_token_strings(tokenizer) -> list[str]:
    return [t.content for t in tokenizer.added_tokens_decoder.values()]


def _tail_after_last_added(text: str, added: list[str]) -> tuple[str, str]:
    """Split ``text`` into (head ending with an added token, literal tail after it)."""
    cut = 0
    for tok in added:
        pos = text.rfind(tok)
        if pos >= 0:
            cut = max(cut, pos + len(tok))
    return text[:cut], text[cut:]


def _head_before_first_added(text: str, added: list[str]) -> tuple[str, str]:
    """Split ``text`` into (literal head before the first added token, rest from it)."""
    cut = len(text)
    for tok in added:
        pos = text.find(tok)
        if pos >= 0:
            cut = min(cut, pos)
    return text[:cut], text[cut:]


@dataclass
class _Slot:
    """Where one message's content sits in the rendered template.

    The rendered text is ``head + lead + content + trail + rest`` where ``head`` ends and
    ``rest`` starts at an added token, so its token count is
    ``const + len(tokens(lead + content + trail))``. With ``clean`` (probe-verified) the
    lead and trail tokenize apart from the content, so the count is
    ``const + lead_tokens + trail_tokens + len(tokens(content))``.
    """

    lead: str
    trail: str
    const: int
    lead_tokens: int
    trail_tokens: int
    clean: bool

    @property
    def content_const(self) -> int:
        """What to add to len(tokens(content)) when ``clean``."""
        return self.const + self.lead_tokens + self.trail_tokens


class TokenCounter:
    """Counts prompt / completion tokens for one tokenizer + chat template.

    Parameters
    ----------
    tokenizer : a fast HF tokenizer with a chat template.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend = tokenizer.backend_tokenizer
        self._encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        self._added = _added_token_strings(tokenizer)
        user = [{"role": "user", "content": _SENTINEL}]
        # prompt: the rendered prompt with the generation prompt
        self.prompt_slot = self._slot(self._render(user, generation=True), minus=0)
        # completion: tokens(prompt + completion) - tokens(prompt), for a fixed prompt
        hi = [{"role": "user", "content": "Hi"}]
        prompt = self._render(hi, generation=True)
        full = self._render(hi + [{"role": "assistant", "content": _SENTINEL}], generation=False)
        if not full.startswith(prompt):
            raise PairDataError(
                "the chat template renders the prompt differently once a reply follows; "
                "token counts cannot be derived from it", field="tokenizer",
                hint="use a model whose template appends turns, or tokenizer: none")
        self.completion_slot = self._slot(full, minus=self._len(prompt))

    def _len(self, text: str) -> int:
        return len(self.backend.encode(text, add_special_tokens=False))

    def _render(self, messages, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation)

    def _slot(self, rendered: str, minus: int) -> _Slot:
        before, after = rendered.split(_SENTINEL)
        _, lead = _tail_after_last_added(before, self._added)
        trail, _ = _head_before_first_added(after, self._added)
        lead_tokens, trail_tokens = self._len(lead), self._len(trail)
        const = self._len(rendered) - self._len(lead + _SENTINEL + trail) - minus
        clean = all(self._len(lead + p + trail) == lead_tokens + self._len(p) + trail_tokens
                    for p in _PROBES)
        return _Slot(lead, trail, const, lead_tokens, trail_tokens, clean)

    # ------------------------------------------------------------ counting

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text (no special tokens added), batched and chunked."""
        out = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), CHUNK):
            encs = self._encode(list(texts[start:start + CHUNK]), add_special_tokens=False)
            out[start:start + len(encs)] = [len(e) for e in encs]
        return out

    def _slot_counts(self, contents: pd.Series, slot: _Slot) -> np.ndarray:
        contents = contents.fillna("").astype(str)
        if not slot.clean:
            return self.lengths((slot.lead + contents + slot.trail).tolist()) + slot.const
        counts = self.lengths(contents.tolist()) + slot.content_const
        # content starting with whitespace may merge with the template's literal lead:
        # tokenize those rows together with it (exact), the rest alone (fast)
        edge = contents.str.match(r"\s").to_numpy(dtype=bool)
        if edge.any():
            counts[edge] = self.lengths((slot.lead + contents[edge] + slot.trail).tolist()) + slot.const
        return counts

    def completion_tokens(self, completions: pd.Series) -> np.ndarray:
        """Tokens the trainer sees for each completion: content + end-of-turn."""
        return self._slot_counts(completions, self.completion_slot)

    def prompt_tokens(self, prompts: pd.Series, prompt_text: pd.Series) -> np.ndarray:
        """Tokens of each rendered prompt with the generation prompt (what TRL's prompt_ids holds)."""
        single = _single_user_mask(prompts)
        counts = np.empty(len(prompts), dtype=np.int64)
        counts[single] = self._slot_counts(prompt_text[single], self.prompt_slot)
        if (~single).any():
            rendered = [self._render(_plain(m), generation=True) for m in prompts[~single]]
            counts[~single] = self.lengths(rendered)
        return counts


def _plain(messages: Any) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _single_user_mask(prompts: pd.Series) -> np.ndarray:
    """True where the prompt is one user message (then prompt_text is its content)."""
    n_messages = prompts.map(len).to_numpy()
    first_role = prompts.map(lambda m: m[0]["role"] if len(m) else "").to_numpy()
    return (n_messages == 1) & (first_role == "user")


class CharCounter:
    """``tokenizer: none``: a tokenizer-free approximation, ceil(characters / 4).

    For quick experiments without a model; the manifest records that counts are approximate.
    """

    def completion_tokens(self, completions: pd.Series) -> np.ndarray:
        return np.ceil(completions.fillna("").astype(str).str.len().to_numpy() / 4).astype(np.int64)

    def prompt_tokens(self, prompts: pd.Series, prompt_text: pd.Series) -> np.ndarray:
        return self.completion_tokens(prompt_text)


def token_counter(spec: str, tokenizer=None):
    """The counter for a tokenizer spec (or an already-loaded tokenizer)."""
    if tokenizer is not None:
        return _counter_for(tokenizer)
    if spec == _CHAR_TOKENS:
        return CharCounter()
    return _counter_for(load_tokenizer(spec))


_COUNTERS: dict[int, TokenCounter] = {}


def _counter_for(tokenizer) -> TokenCounter:
    key = id(tokenizer)
    if key not in _COUNTERS:
        _COUNTERS[key] = TokenCounter(tokenizer)
    return _COUNTERS[key]
