"""Curvature-aware influence (DataInf, exact damped Fisher) against dense inverses on the full
LoRA gradients of tiny-random-llama, and the attribution-score registry."""
from __future__ import annotations

import numpy as np
import pytest

from pairlab.audit import ATTRIBUTION_SCORES, BASELINES, GRADIENT_SCORES, datainf, fisher_influence
from pairlab.audit.gradients import LossSettings, build_projections, naive_pair_gradients, pair_gradients


def _dense_fisher(g, v, damping):
    lam = damping * np.mean(g ** 2)
    h = g.T @ g / len(g) + lam * np.eye(g.shape[1])
    return g @ np.linalg.solve(h, v)


def _dense_datainf(g, v, blocks, damping):
    out = np.zeros(len(g))
    start = 0
    for size in blocks:
        gb, vb = g[:, start:start + size], v[start:start + size]
        lam = damping * np.mean(gb ** 2)
        inv = np.mean([np.linalg.inv(lam * np.eye(size) + np.outer(x, x)) for x in gb], axis=0)
        out += gb @ (inv @ vb)
        start += size
    return out


def test_influence_matches_dense_inverses_on_random_gradients():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(30, 12)) * np.linspace(0.1, 3, 12)  # anisotropic: curvature matters
    val = rng.normal(size=(5, 12))
    v = val.mean(axis=0)
    np.testing.assert_allclose(fisher_influence(g, val), _dense_fisher(g, v, 0.1), rtol=1e-8)
    np.testing.assert_allclose(fisher_influence(g, val, blocks=[5, 7]),
                               _dense_fisher(g[:, :5], v[:5], 0.1) + _dense_fisher(g[:, 5:], v[5:], 0.1),
                               rtol=1e-8)
    np.testing.assert_allclose(datainf(g, val, [4, 8]), _dense_datainf(g, v, [4, 8], 0.1), rtol=1e-8)
    # curvature changes the ranking: not a rescaled TracIn
    tracin = g @ v
    assert not np.array_equal(np.argsort(fisher_influence(g, val)), np.argsort(tracin))
    with pytest.raises(ValueError, match="block sizes"):
        datainf(g, val, [5, 5])


@pytest.mark.slow
def test_projected_influence_equals_the_dense_lora_reference(tiny_peft, sim_pairs):
    """Identity projections: pairlab's batched gradients + closed forms == brute-force per-pair
    full LoRA gradients + dense damped inverses (the reference on the tiny model)."""
    model, tokenizer = tiny_peft
    train, held_out = sim_pairs
    train, val = train.iloc[:6], held_out.iloc[:3]
    rng = np.random.default_rng(3)
    ref_t = rng.normal(-60, 5, size=(len(train), 2)).astype(np.float32)
    ref_v = rng.normal(-60, 5, size=(len(val), 2)).astype(np.float32)
    loss = LossSettings(beta=0.5, max_length=64)
    projections = build_projections(model, 10_000, seed=0)
    blocks = [p.k_out * p.k_in for p in projections]
    g, _, _ = pair_gradients(model, tokenizer, train, ref_t, projections, loss, batch_size=4)
    e, _, _ = pair_gradients(model, tokenizer, val, ref_v, projections, loss, batch_size=4)
    dense_g = naive_pair_gradients(model, tokenizer, train, ref_t, projections, loss).astype(np.float64)
    dense_v = naive_pair_gradients(model, tokenizer, val, ref_v, projections, loss).astype(np.float64).mean(0)
    assert g.shape[1] == sum(p.module.weight.numel() for p in projections) == sum(blocks)
    # dense d x d inverses stay cheap on six LoRA factors (about 1,500 of the 8,192 parameters)
    small = [i for i, b in enumerate(blocks) if b <= 512][:6]
    cols = np.concatenate([np.arange(sum(blocks[:i]), sum(blocks[:i + 1])) for i in small])
    sub = [blocks[i] for i in small]
    fisher = fisher_influence(g[:, cols], e[:, cols])
    reference = _dense_fisher(dense_g[:, cols], dense_v[cols], 0.1)
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(fisher, reference, rtol=2e-3, atol=2e-3 * np.abs(reference).max())
    ours = datainf(g[:, cols], e[:, cols], sub)
    want = _dense_datainf(dense_g[:, cols], dense_v[cols], sub, 0.1)
    np.testing.assert_allclose(ours, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    tracin = g[:, cols].astype(np.float64) @ e[:, cols].mean(0)
    assert np.corrcoef(fisher, tracin)[0, 1] < 0.9999  # curvature did something


def test_registry_names_every_score_with_help_and_kind():
    assert set(GRADIENT_SCORES) | set(BASELINES) | {"rank_average"} == set(ATTRIBUTION_SCORES)
    kinds = {name: spec.kind for name, spec in ATTRIBUTION_SCORES.items()}
    assert kinds["tracin"] == kinds["tracin_cosine"] == "gradient"
    assert kinds["datainf"] == kinds["influence_fisher"] == "influence"
    assert ATTRIBUTION_SCORES["lossdiff_irm"].free and ATTRIBUTION_SCORES["lossdiff_irm"].needs == "validation_run"
    assert all(spec.help for spec in ATTRIBUTION_SCORES.values())
