"""Landmark helpers of the Nystromformer: segment means and the iterative pseudo-inverse."""

from __future__ import annotations

import torch

from attnzoo.functional.softmax import safe_softmax

__all__ = ["iterative_pinv", "masked_weights", "segment_counts", "segment_ids", "segment_means"]


def iterative_pinv(a: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of each ``(..., m, m)`` matrix by Newton-Schulz iteration.

    ``Z_0 = A^T / (||A||_1 ||A||_inf)`` computed per matrix (the official code's first version
    took the maximum over the whole batch, so one sample's scale changed another's result,
    mlpen/Nystromformer#3), then ``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4``
    (Xiong et al. 2021, eq. 13). A zero matrix gives zeros; zero rows/columns stay zero.
    Without autograd the iterations reuse five buffers (fresh ``m x m`` products would each
    cost their page faults again).
    """
    m = a.shape[-1]
    flat = a.reshape(-1, m, m)  # (N, m, m)
    col = flat.abs().sum(-2).amax(-1)  # (N,) ||A||_1
    row = flat.abs().sum(-1).amax(-1)  # (N,) ||A||_inf
    norm = (col * row)[:, None, None]
    denom = torch.where(norm > 0, norm, torch.ones_like(norm))  # (N, 1, 1)
    reuse = not (torch.is_grad_enabled() and a.requires_grad)  # out= takes no autograd
    buf = [torch.empty_like(flat) for _ in range(5)] if reuse else [None] * 5
    z = torch.div(flat.transpose(-2, -1), denom, out=buf[0])  # (N, m, m)
    for step in range(iterations):  # four fused GEMMs (baddbmm folds every scalar, subtraction)
        az = torch.bmm(flat, z, out=buf[1])
        inner = torch.baddbmm(az, az, az, beta=7, alpha=-1, out=buf[2])  # A Z (7 I - A Z)
        inner = torch.baddbmm(az, az, inner, beta=15, alpha=-1, out=buf[3])  # A Z (15 I - .)
        # Z (13 I - inner) / 4, into the buffer that does not hold Z
        z = torch.baddbmm(z, z, inner, beta=13 / 4, alpha=-1 / 4, out=buf[4 - 4 * (step % 2)])
    return z.view(a.shape)  # (..., m, m)


def segment_means(
    x: torch.Tensor, segments: int, keep: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Means of ``segments`` contiguous segments of ``x (B, nh, L, hd)`` over real tokens.

    Token ``i`` belongs to segment ``floor(i * segments / L)``: sizes differ by at most one, so
    ``segments <= L`` never leaves one empty. With a ``(B, L)`` padding mask the means skip
    padded tokens; returns ``(means (B, nh, segments, hd), live (B, segments) or None)`` where
    ``live`` marks segments with at least one real token.
    """
    batch, heads, length, width = x.shape
    if keep is not None:
        x = x.masked_fill(~keep[:, None, :, None], 0.0)
    if length % segments == 0:  # equal segments: a view and one reduction
        size = length // segments
        sums = x.unflatten(2, (segments, size)).sum(3)  # (B, nh, m, hd)
        if keep is None:
            return sums / size, None
    else:
        seg = segment_ids(length, segments, x.device)  # (L,)
        sums = x.new_zeros(batch, heads, segments, width).index_add_(2, seg, x)  # (B, nh, m, hd)
    counts = segment_counts(length, segments, keep, x.dtype, x.device)  # (B | 1, m)
    means = sums / counts.clamp_min(1)[:, None, :, None]  # (B, nh, m, hd)
    return means, None if keep is None else counts > 0


def segment_ids(length: int, segments: int, device: torch.device) -> torch.Tensor:
    """The landmark segment of each of ``length`` tokens, ``(L,)``."""
    return torch.arange(length, device=device) * segments // length  # (L,) segment of each token


def segment_counts(
    length: int, segments: int, keep: torch.Tensor | None, dtype: torch.dtype, device
) -> torch.Tensor:
    """Real tokens per segment: ``(B, m)``, or ``(1, m)`` without a padding mask."""
    seg = segment_ids(length, segments, device)  # (L,)
    if keep is None:
        return torch.bincount(seg, minlength=segments).to(dtype)[None]  # (1, m)
    weight = keep.to(dtype)  # (B, L)
    return weight.new_zeros(keep.shape[0], segments).index_add_(1, seg, weight)  # (B, m)


def masked_weights(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim, the safe masked one when a mask is given."""
    return torch.softmax(scores, dim=-1) if mask is None else safe_softmax(scores, mask)
