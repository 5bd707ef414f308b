"""pairlab.preference: the rating gap, implicit reward and per-pair DPO losses, each checked
against the code it must agree with (every per-pair loss against TRL 1.16's DPOTrainer)."""
from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from trl import DPOTrainer

from pairlab.preference import (PER_PAIR_LOSSES, dpo_losses, implicit_reward, rating_gap, reward_margin,
                                sigmoid_loss, weighted_dpo_losses)
from pairlab.schema import ASPECTS


def _pairs(scores, aspects=None) -> pd.DataFrame:
    df = pd.DataFrame({"score_chosen": [s[0] for s in scores], "score_rejected": [s[1] for s in scores]})
    for side in ("chosen", "rejected"):
        for a in ASPECTS:
            df[f"{side}_{a}"] = np.nan
    for i, (c, r) in (aspects or {}).items():
        df.loc[i, "chosen_helpfulness"], df.loc[i, "rejected_helpfulness"] = c, r
    return df


def test_rating_gap_is_signed_unusable_scores_unknown_and_aspects_optional():
    df = _pairs([(5.0, 1.0), (1.0, 5.0), (float("inf"), 1.0), (np.nan, 2.0)], aspects={3: (2.0, 4.5)})
    gap = rating_gap(df)
    assert gap.iloc[0] == 4.0 and gap.iloc[1] == -4.0  # signed: an inverted pair stays negative
    assert np.isnan(gap.iloc[2]) and np.isnan(gap.iloc[3])
    filled = rating_gap(df, aspect_fallback=True)
    assert filled.iloc[3] == -2.5 and np.isnan(filled.iloc[2]) and filled.iloc[0] == 4.0


def test_implicit_reward_and_margin():
    assert implicit_reward([-3.0], [-5.0], 0.1) == pytest.approx([0.2])
    assert reward_margin([-3.0], [-4.0], [-5.0], [-4.0], 0.5) == pytest.approx([1.0])


def _trl_loss(loss_type: str, *, chosen_logps, rejected_logps, ref_chosen, ref_rejected, tokens, beta,
              label_smoothing, tau) -> float:
    """TRL's own DPOTrainer._compute_loss on a one-pair batch whose summed log-probs are given.

    The model is a stand-in returning fixed per-token log-probs (all on the first completion
    token), so TRL's loss code runs unchanged on exactly these numbers."""
    width = max(tokens) + 2
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, n in enumerate(tokens):
        mask[row, 1:1 + n] = 1
    log_probs = torch.zeros(2, width - 1, dtype=torch.float64)
    log_probs[0, 0], log_probs[1, 0] = chosen_logps, rejected_logps

    def model(**kwargs):
        zeros = torch.zeros(2, width - 1)
        return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros,
                               is_top1=zeros.bool(), aux_loss=None)

    accelerator = SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x, gather=lambda x: x)
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, label_smoothing=label_smoothing, args=SimpleNamespace(discopop_tau=tau), use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.ones(2, width, dtype=torch.long), "attention_mask": torch.ones(2, width),
              "completion_mask": mask, "ref_chosen_logps": torch.tensor([ref_chosen], dtype=torch.float64),
              "ref_rejected_logps": torch.tensor([ref_rejected], dtype=torch.float64)}
    return float(DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False))


@pytest.mark.parametrize("loss_type", PER_PAIR_LOSSES)
def test_every_per_pair_loss_matches_trl(loss_type):
    rng = np.random.default_rng(7)
    beta, eps, tau = 0.3, 0.1, 0.05
    for _ in range(4):
        pc, pr, rc, rr = rng.normal(-20, 4, size=4)
        tokens = [int(t) for t in rng.integers(1, 9, size=2)]
        ours = dpo_losses(np.array([pc - rc]), np.array([pr - rr]), loss_type=loss_type, beta=beta,
                          label_smoothing=eps, discopop_tau=tau, chosen_tokens=np.array([tokens[0]]),
                          rejected_tokens=np.array([tokens[1]]))
        theirs = _trl_loss(loss_type, chosen_logps=pc, rejected_logps=pr, ref_chosen=rc, ref_rejected=rr,
                           tokens=tokens, beta=beta, label_smoothing=eps, tau=tau)
        # rel 1e-6, not exact: TRL builds exo_pair's epsilon as a float32 tensor (we keep float64)
        assert ours[0] == pytest.approx(theirs, rel=1e-6, abs=1e-9), loss_type


def test_losses_are_differentiable_and_weighted_sum_is_nan_for_batch_coupled_types():
    cl = torch.tensor([0.5, -1.0], requires_grad=True)
    dpo_losses(cl, torch.tensor([0.0, 0.0]), loss_type="sigmoid", beta=1.0).sum().backward()
    assert torch.allclose(cl.grad, -torch.sigmoid(-cl.detach()))
    kwargs = dict(beta=0.1, label_smoothing=0.0, discopop_tau=0.05, chosen_logratios=np.array([1.0, -2.0]),
                  rejected_logratios=np.array([0.0, 0.0]), chosen_tokens=np.array([3, 3]),
                  rejected_tokens=np.array([3, 3]))
    both = weighted_dpo_losses(["sigmoid", "hinge"], [1.0, 0.5], **kwargs)
    assert both == pytest.approx(dpo_losses(kwargs["chosen_logratios"], kwargs["rejected_logratios"], beta=0.1)
                                 + 0.5 * np.maximum(0, 1 - 0.1 * kwargs["chosen_logratios"]))
    assert np.isnan(weighted_dpo_losses(["sigmoid", "sft"], [1.0, 1.0], **kwargs)).all()
    assert sigmoid_loss([0.0]) == pytest.approx([np.log(2)])
    with pytest.raises(ValueError, match="aot"):
        dpo_losses(np.zeros(1), np.zeros(1), loss_type="aot", beta=0.1)
