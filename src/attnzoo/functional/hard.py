"""Hard attention: pick one key per query instead of a weighted average.

Soft attention (``masked_softmax``) averages every value; hard attention selects one
(Xu et al., "Show, Attend and Tell", 2015, https://arxiv.org/abs/1502.03044). Three selectors:

- ``"argmax"``: the highest-scoring key. Deterministic, **not differentiable** (zero gradient).
- ``"sample"``: a key drawn from ``softmax(scores)``. Stochastic, **not differentiable**; train it
  with REINFORCE as Xu et al. do.
- ``"gumbel"``: straight-through Gumbel-softmax (Jang et al. 2017, https://arxiv.org/abs/1611.01144):
  the forward value is one-hot, the gradient is that of ``softmax((scores + g) / tau)``, a biased
  but low-variance **estimator**.

Every selector returns one-hot rows ``(..., L, S)`` (all zero where the row is fully masked), to be
used like soft weights: ``out = weights @ v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo._checks import check_choice, check_finite, type_name
from attnzoo.functional.softmax import check_mask, safe_softmax

__all__ = ["hard_attention"]

MODES = ("argmax", "sample", "gumbel")


def _one_hot(index: torch.Tensor, like: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    hot = F.one_hot(index, like.shape[-1]).to(like.dtype)  # (..., L, S)
    return hot * alive.to(like.dtype)


def hard_attention(
    scores: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    mode: str = "argmax",
    tau: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-hot attention weights selected from ``scores``.

    Args:
        scores: ``(..., L, S)`` floating scores.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to ``scores``.
        mode: ``"argmax"``, ``"sample"`` or ``"gumbel"`` (see the module docstring).
        tau: Gumbel-softmax temperature (``mode="gumbel"`` only), ``> 0``.
        generator: Random generator for ``"sample"`` and ``"gumbel"`` (reproducible draws).

    Returns:
        One-hot weights of the shape and dtype of ``scores``; fully masked rows are zero.

    Shape:
        - scores: ``(..., L, S)`` -> ``(..., L, S)``

    Example:
        >>> hard_attention(torch.tensor([[0.1, 2.0, 0.3]]))
        tensor([[0., 1., 0.]])
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating torch.Tensor, got {type_name(scores)}")
    check_choice("mode", mode, MODES)
    tau = check_finite("tau", tau, positive=True)
    if mask is not None:
        check_mask(mask, scores.shape, scores.dtype)
    probs = safe_softmax(scores, mask)
    alive = probs.sum(dim=-1, keepdim=True) > 0  # (..., L, 1) rows with something to attend to
    if mode == "argmax":
        return _one_hot(probs.detach().argmax(dim=-1), scores, alive)
    if mode == "sample":
        flat = probs.detach().float().reshape(-1, scores.shape[-1])  # (N, S)
        flat = torch.where(alive.reshape(-1, 1), flat, torch.ones_like(flat))  # dead rows: any key
        index = torch.multinomial(flat, 1, generator=generator)  # (N, 1)
        return _one_hot(index.view(scores.shape[:-1]), scores, alive)  # (..., L, S)
    # Gumbel(0, 1) noise as -log(E) with E ~ Exp(1); E is clamped away from 0.
    exponential = torch.empty(scores.shape, device=scores.device).exponential_(generator=generator)
    gumbel = -exponential.clamp_min(torch.finfo(exponential.dtype).tiny).log()
    soft = safe_softmax((scores + gumbel.to(scores.dtype)) / tau, mask)
    hard = _one_hot(soft.detach().argmax(dim=-1), scores, alive)
    return hard - soft.detach() + soft  # forward: one-hot; backward: d soft
