"""Curvature-aware influence in the projected LoRA-gradient space. Pure numpy.

TracIn (:mod:`.attribution`) dots a training pair's gradient with the validation gradient.
An influence function first preconditions by the inverse curvature,

    influence_i = <H^-1 g_val, g_i>      (positive: up-weighting pair i lowers the validation loss),

so directions the whole training set already pulls hard along (large curvature: the bulk of
clean pairs, and a *systematic* bias once the model has fitted it) count less, and rare
directions count more. ``g_val`` is the mean DPO-loss gradient of a small clean validation
set, ``g_i`` a training pair's gradient, both in the seeded Kronecker projection of
:mod:`.gradients` (LoGra, arXiv 2405.13954). H is the damped Gauss-Newton / empirical Fisher
``(1/n) sum_j g_j g_jᵀ + λ I`` of the training gradients. Two ways to invert it:

* :func:`fisher_influence`: exactly, in the whole projected space, by the Woodbury identity
  ``(λI + GᵀG/n)^-1 v = (v - Gᵀ (nλI + GGᵀ)^-1 G v) / λ`` (an n x n solve, whatever the
  projected size);
* :func:`datainf`: DataInf's closed form (Kwon et al., arXiv 2310.00902), layer by layer
  (each LoRA factor is a block), swapping the inverse of the mean for the mean of the rank-one
  inverses, ``(1/n) sum_j (λI + g_j g_jᵀ)^-1 = (1/(nλ)) sum_j (I - g_j g_jᵀ / (λ + |g_j|²))``.

λ follows DataInf: ``damping`` x the mean squared gradient entry (per block for DataInf, over
the whole space for the Fisher). ``tests/audit/test_influence.py`` checks both against dense
inverses of the full (unprojected) LoRA gradients on tiny-random-llama.
"""
from __future__ import annotations

import numpy as np

#: Relative damping: λ = DAMPING x mean squared gradient entry (DataInf's choice, 0.1).
DAMPING = 0.1


def _blocks(dim: int, blocks: list[int] | None) -> list[slice]:
    sizes = blocks or [dim]
    if sum(sizes) != dim:
        raise ValueError(f"block sizes sum to {sum(sizes)}, gradients have {dim} columns")
    edges = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _damping(g: np.ndarray, damping: float) -> float:
    lam = damping * float(np.mean(g ** 2)) if g.size else 0.0
    return lam if lam > 0 else 1e-12  # all-zero gradients: any λ > 0 gives influence 0


def fisher_influence(train_grads: np.ndarray, val_grads: np.ndarray, *, damping: float = DAMPING,
                     blocks: list[int] | None = None) -> np.ndarray:
    """<(λI + GᵀG/n)^-1 mean(val_grads), g_i> per training pair (float64), solved exactly.

    ``blocks`` (column counts) makes H block-diagonal, one block per LoRA factor, like
    EK-FAC's layer-wise assumption; ``None`` keeps the whole projected space as one block.
    """
    g = np.asarray(train_grads, dtype=np.float64)
    v_all = np.asarray(val_grads, dtype=np.float64).mean(axis=0)
    n = len(g)
    out = np.zeros(n)
    for sl in _blocks(g.shape[1], blocks):
        gb, v = g[:, sl], v_all[sl]
        lam = _damping(gb, damping)
        inner = np.linalg.solve(n * lam * np.eye(n) + gb @ gb.T, gb @ v)
        hv = (v - gb.T @ inner) / lam
        out += gb @ hv
    return out


def datainf(train_grads: np.ndarray, val_grads: np.ndarray, blocks: list[int] | None,
            *, damping: float = DAMPING) -> np.ndarray:
    """DataInf influence per training pair (float64): per block, <(1/n) sum_j (λI + g_j g_jᵀ)^-1 v, g_i>."""
    g = np.asarray(train_grads, dtype=np.float64)
    v_all = np.asarray(val_grads, dtype=np.float64).mean(axis=0)
    n = len(g)
    out = np.zeros(n)
    for sl in _blocks(g.shape[1], blocks):
        gb, v = g[:, sl], v_all[sl]
        lam = _damping(gb, damping)
        coef = (gb @ v) / (lam + np.einsum("ij,ij->i", gb, gb))   # (v·g_j) / (λ + |g_j|²)
        hv = (v - coef @ gb / n) / lam
        out += gb @ hv
    return out


def ekfac_influence(train_grads: np.ndarray, val_grads: np.ndarray, shapes: list[tuple[int, int]],
                    factors: list[tuple[np.ndarray, np.ndarray]], *, damping: float = DAMPING) -> np.ndarray:
    """EK-FAC influence per training pair (float64): per LoRA factor, <H^-1 v, g_i> with H the
    eigenvalue-corrected Kronecker-factored curvature (George et al. 2018; Grosse et al. 2023).

    ``shapes``: (k_out, k_in) of each block (the projected gradient of a block is the row-major
    k_out x k_in matrix ``G``); ``factors``: per block (A, S), the token-level second moments of
    the (projected) layer inputs (k_in x k_in) and output gradients (k_out x k_out). K-FAC takes
    H ≈ S ⊗ A; EK-FAC keeps its eigenbases Q_S, Q_A and refits the eigenvalues to the training
    gradients themselves, Λ = mean_i (Q_Sᵀ G_i Q_A)² (elementwise), so the scale of A and S does
    not matter. H^-1 v = Q_S [(Q_Sᵀ V Q_A) / (Λ + λ)] Q_Aᵀ with λ = ``damping`` x mean(Λ), the
    heuristic of ``kronfluence`` (``damping_factor=None``), which ``tests/audit/test_influence.py``
    checks this against on tiny-random-llama.
    """
    g = np.asarray(train_grads, dtype=np.float64)
    v_all = np.asarray(val_grads, dtype=np.float64).mean(axis=0)
    n = len(g)
    out = np.zeros(n)
    sizes = [k_o * k_i for k_o, k_i in shapes]
    for sl, (k_o, k_i), (act, grad) in zip(_blocks(g.shape[1], sizes), shapes, factors):
        _, q_a = np.linalg.eigh(np.asarray(act, dtype=np.float64))
        _, q_s = np.linalg.eigh(np.asarray(grad, dtype=np.float64))
        gb = g[:, sl].reshape(n, k_o, k_i)
        rotated = np.einsum("ao,nab,bi->noi", q_s, gb, q_a)          # Q_Sᵀ G_i Q_A
        lam = np.mean(rotated ** 2, axis=0)
        lam = lam + damping * float(lam.mean()) if lam.mean() > 0 else lam + 1e-12
        v = q_s.T @ v_all[sl].reshape(k_o, k_i) @ q_a / lam
        out += np.einsum("noi,oi->n", rotated, v)                    # <rotated G_i, rotated H^-1 v>
    return out
