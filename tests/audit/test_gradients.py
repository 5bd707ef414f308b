"""Projected per-pair LoRA gradients from one batched backward == brute force per pair."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pairlab.audit.gradients import (LossSettings, ProjectedGradientCapture, build_projections,
                                     dpo_pair_loss, naive_pair_gradients, pair_gradients)


def _ref(pairs, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(-60.0, 5.0, size=(len(pairs), 2)).astype(np.float32)


@pytest.mark.parametrize("layout", ["shared", "trl"])  # one row per pair (the default here), TRL's two
@pytest.mark.parametrize("proj_dim", [4, 1000])  # projected, and exact (identity) projections
def test_batched_projected_gradients_match_brute_force(tiny_peft, sim_pairs, proj_dim, layout):
    from pairlab.logprobs import shared_prompt_supported

    model, tokenizer = tiny_peft
    assert shared_prompt_supported(model)  # so the default is the shared layout
    pairs = sim_pairs[0].iloc[:5]
    ref = _ref(pairs)
    loss = LossSettings(beta=0.5, max_length=64)
    projections = build_projections(model, proj_dim, seed=7)
    batched, losses, logps = pair_gradients(model, tokenizer, pairs, ref, projections, loss, batch_size=3,
                                            layout=None if layout == "shared" else layout)
    brute = naive_pair_gradients(model, tokenizer, pairs, ref, projections, loss)
    assert batched.shape == brute.shape == (5, ProjectedGradientCapture(projections).dim)
    assert np.abs(brute).max() > 0 and np.isfinite(losses).all()
    from pairlab.logprobs import sequence_logps

    plain = sequence_logps(model, tokenizer, pairs, max_length=64)
    np.testing.assert_allclose(logps, plain[["chosen_logps", "rejected_logps"]].to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(batched, brute, rtol=1e-3, atol=1e-4 * np.abs(brute).max())
    # What attribution uses: dot products between pairs' projected gradients.
    np.testing.assert_allclose(batched @ batched.T, brute @ brute.T, rtol=2e-3,
                               atol=1e-4 * np.abs(brute @ brute.T).max())


def test_exact_projection_equals_the_full_lora_gradient(tiny_peft, sim_pairs):
    """With identity projections the vector is the full flattened LoRA gradient of the pair."""
    model, tokenizer = tiny_peft
    pairs = sim_pairs[0].iloc[:2]
    ref = _ref(pairs, seed=1)
    loss = LossSettings(beta=0.1, max_length=64)
    projections = build_projections(model, 10_000, seed=0)
    assert all(p.p_in is None and p.p_out is None for p in projections)
    batched, _, _ = pair_gradients(model, tokenizer, pairs, ref, projections, loss, batch_size=2)
    from pairlab.logprobs import preference_collator, tokenize_pairs
    from pairlab.audit.gradients import policy_logps_with_grad

    model.zero_grad(set_to_none=True)
    batch = preference_collator(tokenizer, 64)(tokenize_pairs(tokenizer, pairs.iloc[1:2]))
    c, r, _, _ = policy_logps_with_grad(model, batch)
    dpo_pair_loss(c, r, torch.tensor(ref[1:2, 0]), torch.tensor(ref[1:2, 1]), beta=0.1).sum().backward()
    full = torch.cat([p.module.weight.grad.reshape(-1) for p in projections]).numpy()
    model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(batched[1], full, rtol=1e-3, atol=1e-6)


def test_projections_are_seeded(tiny_peft):
    model, _ = tiny_peft
    a = build_projections(model, 4, seed=3)
    b = build_projections(model, 4, seed=3)
    c = build_projections(model, 4, seed=4)
    big = next(i for i, p in enumerate(a) if p.p_in is not None)
    assert torch.equal(a[big].p_in, b[big].p_in)
    assert not torch.equal(a[big].p_in, c[big].p_in)


@pytest.mark.parametrize("layout", ["shared", "trl"])
def test_a_pair_without_completion_tokens_gets_no_forward_and_a_zero_gradient(tiny_peft, sim_pairs, layout):
    """A prompt that fills max_length leaves no completion token (TRL drops the pair): NaN loss and
    log-probs, as sequence_logps gives them, a zero gradient, and the other pairs unchanged."""
    model, tokenizer = tiny_peft
    pairs = sim_pairs[0].iloc[:3].copy()
    long_prompt = [{"role": "user", "content": "word " * 200}]
    pairs.at[pairs.index[1], "prompt"] = long_prompt
    ref = _ref(pairs)
    loss = LossSettings(beta=0.5, max_length=64)
    projections = build_projections(model, 4, seed=7)
    grads, losses, logps = pair_gradients(model, tokenizer, pairs, ref, projections, loss, batch_size=3, layout=layout)
    assert np.isnan(losses[1]) and np.isnan(logps[1]).all() and not grads[1].any()
    assert np.isfinite(losses[[0, 2]]).all() and np.abs(grads[[0, 2]]).max() > 0
    alone, _, _ = pair_gradients(model, tokenizer, pairs.iloc[[0, 2]], ref[[0, 2]], projections, loss,
                                 batch_size=3, layout=layout)
    np.testing.assert_allclose(grads[[0, 2]], alone, rtol=1e-4, atol=1e-6 * np.abs(alone).max())
