"""Model-loading options a recipe carries: chat_template, trust_remote_code, model_revision, attn_implementation."""
from __future__ import annotations

import logging

import pytest

from pairlab.models import load_options, load_tokenizer
from pairlab.train import load_train_config

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"


def test_chat_template_override_and_warnings(tmp_path, caplog):
    tok = load_tokenizer("tiny-random-llama", chat_template=TEMPLATE)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<user>hi"
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    assert load_tokenizer("tiny-random-llama", chat_template=str(tmp_path / "t.jinja")).chat_template == TEMPLATE
    with caplog.at_level(logging.WARNING, logger="pairlab.models"):
        load_tokenizer("tiny-random-llama", trust_remote_code=True, model_revision="v2")
    messages = [r.getMessage() for r in caplog.records]
    assert any("trust_remote_code is on" in m for m in messages)
    assert any("model_revision 'v2' ignored" in m for m in messages)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pairlab.models"):
        load_tokenizer("tiny-random-llama")
    assert not caplog.records  # off unless set: no warning


def test_options_travel_from_a_recipe():
    cfg = load_train_config(None, {"model_name_or_path": "tiny-random-llama", "attn_implementation": "eager",
                                   "trust_remote_code": True, "chat_template": TEMPLATE})
    assert load_options(cfg) == {"attn_implementation": "eager", "trust_remote_code": True,
                                 "chat_template": TEMPLATE}
    assert load_options(load_train_config(None, [])) == {}  # defaults: nothing set, remote code off


@pytest.mark.slow
def test_attn_implementation_reaches_the_model():
    from pairlab.models import load_model

    model = load_model("tiny-random-llama", quantization="none", dtype="float32", device="cpu",
                       attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
