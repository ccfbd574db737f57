"""Relative position representations (Shaw et al. 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnzoo._checks import (
    check_floating,
    check_module_dtype,
    check_positive_int,
    check_probability,
    type_name,
)
from attnzoo.functional.attention import validate_qkv
from attnzoo.functional.pooling import pool
from attnzoo.functional.softmax import causal_mask, check_mask, merge_masks
from attnzoo.positional.base import check_input, check_length
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["RelativePositionEmbedding", "relative_positions"]

SHAW_2018 = Paper(
    title="Self-Attention with Relative Position Representations",
    authors="Shaw, Uszkoreit, Vaswani",
    year=2018,
    url="https://arxiv.org/abs/1803.02155",
)


def relative_positions(q_len: int, kv_len: int, device: torch.device | None = None) -> torch.Tensor:
    """``(L, S)`` matrix of ``j - i`` with queries aligned to the end of the keys.

    Query ``i`` sits at position ``i + S - L`` (bottom-right, as for a KV cache).

    Example:
        >>> relative_positions(2, 3)
        tensor([[-1,  0,  1],
                [-2, -1,  0]])
    """
    query_pos = torch.arange(q_len, device=device) + (kv_len - q_len)
    key_pos = torch.arange(kv_len, device=device)
    return key_pos[None, :] - query_pos[:, None]


@POSITIONAL.register(
    "relative", paper=SHAW_2018, tags=("relative", "learned", "score_bias"), complexity="O(L S hd)"
)
class RelativePositionEmbedding(nn.Module):
    r"""Shaw et al. relative position representations with clipped distances.

    Shaw, Uszkoreit, Vaswani, "Self-Attention with Relative Position Representations", 2018,
    https://arxiv.org/abs/1803.02155. Two learned tables ``w^K, w^V`` of ``2k + 1`` vectors
    (``k = max_distance``) give ``a_ij = w[clip(j - i, -k, k)]``, and attention becomes
    ``e_ij = q_i . (k_j + a^K_ij) / sqrt(hd)``, ``z_i = sum_j alpha_ij (v_j + a^V_ij)``.
    The tables are shared across heads, as in the paper. When ``L != S`` queries are aligned to
    the end of the keys (bottom-right).

    Use :meth:`attention` for the whole computation, or :meth:`score_bias` (``q . a^K``, add it
    to ``q k^T`` before scaling) and :meth:`value_bias` to build your own.

    Formula:
        $$
        \begin{aligned}
        a^K_{ij} &= w^K_{\mathrm{clip}(j - i,\, -k,\, k)}, \qquad
        a^V_{ij} = w^V_{\mathrm{clip}(j - i,\, -k,\, k)} \\
        e_{ij} &= \frac{q_i (k_j + a^K_{ij})^\top}{\sqrt{d_h}}, \qquad
        z_i = \sum_j \mathrm{softmax}_j(e_{ij})\, (v_j + a^V_{ij})
        \end{aligned}
        $$

        with $k$ = `max_distance`.

    Args:
        dim: Per-head width ``hd``.
        max_distance: Clipping distance ``k`` (the paper finds 2 .. 16 equivalent; default 16).
        values: Also learn ``w^V`` (the paper's full model); ``False`` keeps only keys.
        max_len: Optional limit on sequence length (``None``: any length).

    Shape:
        - q, k: ``(B, nh, L|S, hd)``, v: ``(B, nh, S, hd)``
        - score_bias: ``(B, nh, L, S)``; value_bias: ``(B, nh, L, hd)``

    Example:
        >>> rel = RelativePositionEmbedding(8, max_distance=4)
        >>> q = k = v = torch.randn(2, 3, 10, 8)
        >>> rel.attention(q, k, v).shape
        torch.Size([2, 3, 10, 8])
    """

    def __init__(
        self,
        dim: int,
        *,
        max_distance: int = 16,
        values: bool = True,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.max_distance = check_positive_int("max_distance", max_distance, minimum=0)
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)
        size = 2 * self.max_distance + 1
        self.keys_table = nn.Parameter(torch.empty(size, self.dim))
        self.values_table = nn.Parameter(torch.empty(size, self.dim)) if values else None
        for table in (self.keys_table, self.values_table):
            if table is not None:
                nn.init.xavier_uniform_(table)

    def index(self, q_len: int, kv_len: int, device: torch.device | None = None) -> torch.Tensor:
        """``(L, S)`` table rows ``clip(j - i, -k, k) + k``."""
        check_length(type(self).__name__, max(q_len, kv_len), self.max_len)
        rel = relative_positions(q_len, kv_len, device)
        return rel.clamp(-self.max_distance, self.max_distance) + self.max_distance

    def score_bias(self, q: torch.Tensor, kv_len: int | None = None) -> torch.Tensor:
        """``q_i . a^K_ij`` of shape ``(B, nh, L, S)`` (unscaled)."""
        check_input(self, q, layout="(..., L, hd)", ndims=None, name="q")
        q_len = q.shape[-2]
        kv_len = q_len if kv_len is None else check_positive_int("kv_len", kv_len, minimum=0)
        emb = self.keys_table[self.index(q_len, kv_len, q.device)]  # (L, S, hd)
        return torch.einsum("...ld,lsd->...ls", q, emb.to(q.dtype))  # no-op outside autocast

    def value_bias(self, attn: torch.Tensor) -> torch.Tensor:
        """``sum_j alpha_ij a^V_ij`` of shape ``(B, nh, L, hd)``; zeros without a value table."""
        check_floating("attn", attn, "(..., L, S)")
        if attn.dim() < 2:
            raise ValueError(f"attn must be (..., L, S) weights, got shape {tuple(attn.shape)}")
        check_module_dtype("attn", attn, self)
        q_len, kv_len = attn.shape[-2:]
        if self.values_table is None:
            return attn.new_zeros(*attn.shape[:-1], self.dim)
        emb = self.values_table[self.index(q_len, kv_len, attn.device)]  # (L, S, hd)
        return torch.einsum("...ls,lsd->...ld", attn, emb.to(attn.dtype))

    def forward(self, q: torch.Tensor, kv_len: int | None = None) -> torch.Tensor:
        return self.score_bias(q, kv_len)

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        dropout_p: float = 0.0,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Shaw attention ``softmax((q k^T + q a^K) / sqrt(hd)) (v + a^V)``."""
        validate_qkv(q, k, v)
        check_input(self, q, layout="(B, nh, L, hd)", ndims=None, name="q")
        if not isinstance(is_causal, bool) or not isinstance(need_weights, bool):
            raise TypeError(
                f"is_causal and need_weights must be bools, got {type_name(is_causal)} and "
                f"{type_name(need_weights)}"
            )
        check_probability("dropout_p", dropout_p)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (
            q @ k.transpose(-2, -1) + self.score_bias(q, k.shape[-2])
        ) * scale  # (B, nh, L, S)
        if mask is not None:
            check_mask(mask, scores.shape, scores.dtype)
        merged = mask
        if is_causal:
            merged = merge_masks(mask, causal_mask(*scores.shape[-2:], device=q.device))
        out, attn = pool(scores, v, merged, dropout_p, padding=mask)
        out = out + self.value_bias(attn)
        return (out, attn) if need_weights else out
