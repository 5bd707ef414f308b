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
    assert kinds["datainf"] == kinds["influence_fisher"] == kinds["ekfac"] == "influence"
    assert ATTRIBUTION_SCORES["lossdiff_irm"].free and ATTRIBUTION_SCORES["lossdiff_irm"].needs == "validation_run"
    assert all(spec.help for spec in ATTRIBUTION_SCORES.values())


def test_ekfac_equals_the_dense_eigen_corrected_inverse():
    """EK-FAC by its definition, densely: H = (Q_S ⊗ Q_A) diag(Λ + λ) (Q_S ⊗ Q_A)ᵀ on the
    row-major vec of each block's k_out x k_in gradient."""
    from pairlab.audit.influence import ekfac_influence

    rng = np.random.default_rng(1)
    shapes = [(3, 4), (2, 5)]
    g = rng.normal(size=(25, 22)) * np.linspace(0.2, 2, 22)
    val = rng.normal(size=(4, 22))
    factors = []
    for k_o, k_i in shapes:
        a, s = rng.normal(size=(k_i, 2 * k_i)), rng.normal(size=(k_o, 2 * k_o))
        factors.append((a @ a.T, s @ s.T))
    want, start = np.zeros(len(g)), 0
    for (k_o, k_i), (a, s) in zip(shapes, factors):
        gb, v = g[:, start:start + k_o * k_i], val.mean(0)[start:start + k_o * k_i]
        q = np.kron(np.linalg.eigh(s)[1], np.linalg.eigh(a)[1])        # eigenbasis of S ⊗ A
        lam = np.mean((gb @ q) ** 2, axis=0)                             # refitted eigenvalues
        h = q @ np.diag(lam + 0.1 * lam.mean()) @ q.T
        want += gb @ np.linalg.solve(h, v)
        start += k_o * k_i
    np.testing.assert_allclose(ekfac_influence(g, val, shapes, factors), want, rtol=1e-9)
    # the scale of the Kronecker factors does not matter, only their eigenbases
    scaled = [(3 * a, 0.5 * s) for a, s in factors]
    np.testing.assert_allclose(ekfac_influence(g, val, shapes, scaled), want, rtol=1e-9)


@pytest.mark.slow
def test_projected_ekfac_matches_kronfluence_on_the_tiny_model(fresh_tiny_peft, sim_pairs, tmp_path):
    """pairlab's EK-FAC (hook-captured K-FAC factors, identity projections) == kronfluence's
    EK-FAC scores (float64, empirical Fisher, damping 0.1 x mean eigenvalue) on the LoRA
    factors of tiny-random-llama, for a per-sequence loss (kronfluence's sample is one
    sequence; a DPO pair is two, whose scores add: influence is linear in the gradient)."""
    import copy

    import torch

    pytest.importorskip("kronfluence", reason="installed by `make install` (pip --no-deps kronfluence)")
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    from pairlab.audit.gradients import ProjectedGradientCapture, lora_linears
    from pairlab.audit.influence import ekfac_influence
    from pairlab.logprobs import preference_collator, tokenize_pairs

    # its own model: kronfluence wraps the modules it tracks, and the session's shared model
    # carries what earlier tests did to it (a shared one left the factors uncomputed)
    model, tokenizer = fresh_tiny_peft
    train, held_out = sim_pairs
    batch = preference_collator(tokenizer, 48, "keep_start")(tokenize_pairs(tokenizer, train.iloc[:5]))
    rows = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    val_batch = preference_collator(tokenizer, 48, "keep_start")(tokenize_pairs(tokenizer, held_out.iloc[:2]))
    val_rows = {k: val_batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}

    def row_nll(net, b):  # each sequence's completion negative log-likelihood
        logits = net(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, b["input_ids"][:, 1:, None])[..., 0]
        return -(logp * b["completion_mask"][:, 1:]).sum(-1)

    names = [name for name, _ in lora_linears(model)]
    projections = build_projections(model, 10_000, seed=0)       # identity: the full LoRA gradients
    shapes = [(p.k_out, p.k_in) for p in projections]
    model.eval()

    def captured(b, covariances):
        capture = ProjectedGradientCapture(projections, covariances=covariances)
        capture.token_mask = b["attention_mask"]
        with capture:
            row_nll(model, b).sum().backward()
        model.zero_grad(set_to_none=True)
        return capture.row_gradients().double().numpy(), capture

    g, capture = captured(rows, True)
    e, _ = captured(val_rows, False)
    ours = ekfac_influence(g, e, shapes, capture.factors())

    class RowTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            return row_nll(model, batch).sum()

        def compute_measurement(self, batch, model):
            return row_nll(model, batch).sum()

        def get_influence_tracked_modules(self):
            return names

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

    class Rows(torch.utils.data.Dataset):
        def __init__(self, b):
            self.b = b

        def __len__(self):
            return len(self.b["input_ids"])

        def __getitem__(self, i):
            return {k: v[i] for k, v in self.b.items()}

    task = RowTask()
    twin = prepare_model(copy.deepcopy(model), task)
    analyzer = Analyzer("pairlab", twin, task, cpu=True, disable_tqdm=True, output_dir=str(tmp_path))
    f64 = torch.float64
    analyzer.fit_all_factors("ekfac", Rows(rows), per_device_batch_size=len(rows["input_ids"]),
                             factor_args=FactorArguments(strategy="ekfac", use_empirical_fisher=True,
                                                         activation_covariance_dtype=f64,
                                                         gradient_covariance_dtype=f64, lambda_dtype=f64),
                             overwrite_output_dir=True)
    analyzer.compute_pairwise_scores("scores", "ekfac", Rows(val_rows), Rows(rows),
                                     per_device_query_batch_size=4, per_device_train_batch_size=10,
                                     score_args=ScoreArguments(damping_factor=None, per_sample_gradient_dtype=f64,
                                                               precondition_dtype=f64, score_dtype=f64),
                                     overwrite_output_dir=True)
    theirs = analyzer.load_pairwise_scores("scores")["all_modules"].double().mean(0).numpy()
    assert np.abs(theirs).max() > 0 and len(theirs) == len(ours) == 10
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())
    tracin = g @ e.mean(0)
    assert np.corrcoef(ours, tracin)[0, 1] < 0.9999  # curvature did something
