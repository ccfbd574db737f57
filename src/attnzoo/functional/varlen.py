"""Packed variable-length attention: sequences of different lengths in one tensor, no padding.

The convention of FlashAttention's ``flash_attn_varlen_func`` and PyTorch's varlen API: the
sequences are concatenated along the token axis, ``(T, nh, hd)`` with ``T = sum(L_i)``, and
``cu_seqlens`` holds the ``N + 1`` cumulative offsets ``[0, L_0, L_0 + L_1, ..., T]``. Each
sequence attends only to itself, so the cost is ``sum(L_i^2)``, not ``T^2``, and no padding
token is ever computed.
"""

from __future__ import annotations

import itertools

import torch

from attnzoo._checks import type_name
from attnzoo.functional.attention import attention

__all__ = ["check_cu_seqlens", "varlen_attention"]


def check_cu_seqlens(cu_seqlens: object, total: int, name: str = "cu_seqlens") -> list[int]:
    """The offsets as a list of ints: 1-D integer, starting at 0, non-decreasing, ending at T."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1:
        raise TypeError(
            f"{name} must be a 1-D integer tensor (N + 1,), got {type_name(cu_seqlens)}"
        )
    if cu_seqlens.is_floating_point() or cu_seqlens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {cu_seqlens.dtype}")
    offsets = cu_seqlens.tolist()
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != total:
        raise ValueError(
            f"{name} must start at 0 and end at the number of packed tokens ({total}), got "
            f"{offsets}"
        )
    if any(b < a for a, b in itertools.pairwise(offsets)):
        raise ValueError(f"{name} must be non-decreasing (lengths >= 0), got {offsets}")
    return offsets


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention within each packed sequence: ``out[seq i] = attention(q_i, k_i, v_i)``.

    Args:
        q: ``(T_q, nh, hd)`` queries of every sequence, concatenated.
        k: ``(T_k, nkv, hd)`` keys (GQA: ``nh`` a multiple of ``nkv``).
        v: ``(T_k, nkv, hd_v)`` values.
        cu_seqlens_q: ``(N + 1,)`` cumulative query lengths ``[0, ..., T_q]``.
        cu_seqlens_k: ``(N + 1,)`` cumulative key lengths; default ``cu_seqlens_q``.
        is_causal: Causal within each sequence (bottom-right aligned when ``L_i != S_i``).
        scale: Default ``1 / sqrt(hd)``.
        dropout_p: Dropout on the weights whenever ``> 0``.

    Returns:
        ``(T_q, nh, hd_v)``: each sequence's attention, in the packed layout.

    Example:
        >>> q = torch.randn(7, 2, 4)  # two sequences of 3 and 4 tokens
        >>> cu = torch.tensor([0, 3, 7])
        >>> out = varlen_attention(q, q, q, cu, is_causal=True)
        >>> torch.allclose(out[:3], attention(*(q[None, :3].transpose(1, 2),) * 3,
        ...                is_causal=True)[0].transpose(0, 1))
        True
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            raise ValueError(f"{name} must be a packed (T, heads, hd) tensor, got {type_name(t)}")
    starts_q = check_cu_seqlens(cu_seqlens_q, q.shape[0], "cu_seqlens_q")
    starts_k = starts_q
    if cu_seqlens_k is not None:
        starts_k = check_cu_seqlens(cu_seqlens_k, k.shape[0], "cu_seqlens_k")
    elif k.shape[0] != q.shape[0]:
        raise ValueError(f"k has {k.shape[0]} packed tokens and q {q.shape[0]}: pass cu_seqlens_k")
    if len(starts_k) != len(starts_q):
        raise ValueError(
            f"cu_seqlens_q and cu_seqlens_k must describe the same number of sequences, got "
            f"{len(starts_q) - 1} and {len(starts_k) - 1}"
        )
    out = q.new_zeros(q.shape[0], q.shape[1], v.shape[-1])  # (T_q, nh, hd_v)
    for (a, b), (c, d) in zip(
        itertools.pairwise(starts_q),
        itertools.pairwise(starts_k),
        strict=True,
    ):
        if b == a:
            continue  # an empty sequence has no query
        heads = [t.transpose(0, 1)[None] for t in (q[a:b], k[c:d], v[c:d])]  # (1, heads, L, hd)
        part = attention(*heads, is_causal=is_causal, scale=scale, dropout_p=dropout_p)
        out[a:b] = part[0].transpose(0, 1)  # (L_i, nh, hd_v)
    return out
