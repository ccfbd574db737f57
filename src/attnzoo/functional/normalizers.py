"""Normalisers that turn scores into attention weights: softmax, sparsemax and 1.5-entmax.

The survey contrasts soft attention (softmax: every key gets some weight) with hard attention
(one key). Sparsemax and entmax sit between them: they are projections onto the probability
simplex that give exact zeros to weak keys and still have gradients.

- ``sparsemax(z) = argmin_{p in simplex} |p - z|^2`` (Martins & Astudillo, "From Softmax to
  Sparsemax: A Sparse Model of Attention and Multi-Label Classification", ICML 2016,
  https://arxiv.org/abs/1602.02068): ``p_i = max(z_i - tau, 0)``, ``tau`` chosen so that the
  weights sum to one (sorting algorithm of the paper, ``O(S log S)``).
- ``entmax15(z)``: 1.5-entmax (Peters, Niculae & Martins, "Sparse Sequence-to-Sequence Models",
  ACL 2019, https://arxiv.org/abs/1905.05702): ``p_i = max(z_i / 2 - tau, 0)^2`` with the
  exact sorting algorithm for ``tau``; softer than sparsemax, still sparse.

Every normaliser takes a mask (bool ``True`` = may attend, or an additive float mask) and
returns exact zeros for masked keys and for rows with nothing to attend to, with zero (never
NaN) gradients. Half inputs are normalised in float32. Gradients are those of the closed forms
(``tau`` is differentiated on its support), which equal the papers' Jacobians.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnzoo._checks import check_choice
from attnzoo.functional.softmax import safe_softmax

__all__ = ["NORMALIZERS", "entmax15", "get_normalizer", "sparsemax"]


def _prepare(scores: torch.Tensor, mask: torch.Tensor | None):
    """Scores in float32 for half inputs, masked to ``-inf``; rows that see nothing marked."""
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        if mask.dtype == torch.bool:
            work = work.masked_fill(~mask, float("-inf"))
        else:
            work = work + mask.to(work.dtype)
    dead = work.amax(dim=-1, keepdim=True) == float("-inf")  # (..., 1)
    return work.masked_fill(dead, 0.0), dead


def sparsemax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sparsemax over the last dim (Martins & Astudillo 2016): a sparse softmax.

    Args:
        scores: ``(..., S)``.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to ``scores``.

    Returns:
        ``(..., S)`` weights: non-negative, rows summing to one (or exact zeros where nothing
        is visible), exactly zero for keys below the threshold.

    Example:
        >>> sparsemax(torch.tensor([[2.0, 1.0, -1.0]]))
        tensor([[1., 0., 0.]])
        >>> sparsemax(torch.tensor([[0.5, 0.3, -1.0]]))
        tensor([[0.6000, 0.4000, 0.0000]])
    """
    if scores.shape[-1] == 0:
        return scores.clone()
    work, dead = _prepare(scores, mask)
    z, _ = work.sort(dim=-1, descending=True)  # (..., S), masked keys (-inf) last
    finite = torch.where(torch.isfinite(z), z, 0.0)  # no inf in the sums (or their gradients)
    cumulative = finite.cumsum(dim=-1)  # (..., S)
    rank = torch.arange(1, z.shape[-1] + 1, device=z.device).to(z.dtype)  # (S,)
    k = (1 + rank * z > cumulative).sum(dim=-1, keepdim=True).clamp_min(1)  # (..., 1): support
    tau = (cumulative.gather(-1, k - 1) - 1) / k.to(z.dtype)  # (..., 1)
    weights = (work - tau).clamp_min(0.0).masked_fill(dead, 0.0)
    return weights.to(scores.dtype)


def entmax15(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1.5-entmax over the last dim (Peters, Niculae & Martins 2019), exact by sorting.

    ``p_i = max(z_i / 2 - tau, 0)^2``: between softmax (dense) and sparsemax (sparser).

    Args:
        scores: ``(..., S)``.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to ``scores``.

    Returns:
        ``(..., S)`` weights: non-negative, rows summing to one (or exact zeros where nothing
        is visible).

    Example:
        >>> entmax15(torch.tensor([[2.0, 1.0, -2.0]]))
        tensor([[0.8307, 0.1693, 0.0000]])
    """
    if scores.shape[-1] == 0:
        return scores.clone()
    work, dead = _prepare(scores, mask)
    half = work / 2
    z, _ = half.sort(dim=-1, descending=True)  # (..., S), masked keys (-inf) last
    finite = torch.where(torch.isfinite(z), z, 0.0)  # no inf in the sums (or their gradients)
    rank = torch.arange(1, z.shape[-1] + 1, device=z.device).to(z.dtype)  # (S,)
    mean = finite.cumsum(dim=-1) / rank  # (..., S): mean of the top k
    mean_sq = finite.square().cumsum(dim=-1) / rank  # (..., S)
    delta = (1 - rank * (mean_sq - mean.square())) / rank  # (..., S)
    tau_k = mean - delta.clamp_min(0.0).sqrt()  # (..., S): the threshold if the support is k
    k = (tau_k <= z).sum(dim=-1, keepdim=True).clamp_min(1)  # (..., 1)
    tau = tau_k.gather(-1, k - 1)  # (..., 1)
    weights = (half - tau).clamp_min(0.0).square().masked_fill(dead, 0.0)
    return weights.to(scores.dtype)


NORMALIZERS: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "softmax": safe_softmax,
    "sparsemax": sparsemax,
    "entmax15": entmax15,
}


def get_normalizer(name: str) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The normaliser called ``name`` (``"softmax"``, ``"sparsemax"`` or ``"entmax15"``)."""
    return NORMALIZERS[check_choice("normalizer", name, tuple(NORMALIZERS))]
