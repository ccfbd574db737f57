"""Global-token attention: a few tokens attend to everything and everything attends to them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnzoo.efficient._blocks import pattern_keep, with_dense_rows
from attnzoo.efficient._pattern import PatternAttention, global_options, global_positions
from attnzoo.functional.attention import attention
from attnzoo.functional.mask_basic import global_tokens as global_tokens_mask
from attnzoo.functional.mask_ops import MaskMod
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["LONGFORMER_2020", "GlobalAttention"]

LONGFORMER_2020 = Paper(
    title="Longformer: The Long-Document Transformer",
    authors="Beltagy, Peters, Cohan",
    year=2020,
    url="https://arxiv.org/abs/2004.05150",
)


@EFFICIENT.register(
    "global",
    paper=LONGFORMER_2020,
    tags=("pattern", "global", "self", "cross"),
    complexity="O((L + S) G d)",
)
class GlobalAttention(PatternAttention):
    r"""Global-token attention: global tokens see every key, every query sees the global tokens.

    The global attention of Beltagy, Peters, Cohan, "Longformer: The Long-Document
    Transformer", 2020, https://arxiv.org/abs/2004.05150 (section 3.1), on its own: query ``i``
    may attend key ``j`` when ``i`` or ``j`` is a global position. Defined by
    ``attnzoo.masks.global_tokens`` and equal to dense attention with it materialised (merged
    with the call's padding mask and causality). Combine it with a window through
    ``longformer``; alone, ordinary tokens exchange information only through the global ones
    (a star graph).

    Fast path: ordinary rows attend the ``G`` global keys (one SDPA call over ``(L, G)``), the
    ``G`` global rows attend all keys (one SDPA call over ``(G, S)``), and the global rows are
    written over the first result. Time ``O((L + S) G d)``, memory ``O((L + S) G)``.

    Can: padding masks ``(B, S)``, causality (bottom-right; an ordinary query then sees only
    the global keys at or before it), cross-attention (global positions index the queries and
    the keys separately; those beyond a length are ignored). A query with no visible key (no
    global token before it under causality, or all global keys padded) returns zeros.
    Per-query or float masks and weight recording take the dense reference path.

    Defaults and deviations: ``num_global=1`` (the ``[CLS]`` token of Longformer's
    classification set-up) when neither option is given. Longformer computes global attention
    with separate projections ``Q_g, K_g, V_g``; this layer uses one set for all tokens, so that
    it is exactly dense attention under its mask.

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in N(i)} \mathrm{softmax}_{j \in N(i)}\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j, \qquad N(i) = \begin{cases} \{1, \dots, S\} & i
        \in G \\ G & i \notin G
        \end{cases}
        $$

        with $G$ the global positions (the first `num_global` by default).

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        global_tokens: Positions of the global tokens (duplicates ignored).
        num_global: Alternatively, the first ``num_global`` positions are global (``0``: none,
            then every query is a zero row).

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; context: ``(B, S, C)``; mask: ``(B, S)`` padding
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("global", 64, num_heads=4, global_tokens=[0, 5])
        >>> attn(torch.randn(2, 50, 64)).shape
        torch.Size([2, 50, 64])
    """

    backend = "global rows dense + every other row over the global keys (two products)"

    supports_cross = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        global_tokens: Sequence[int] | None = None,
        num_global: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.global_tokens, self.num_global = global_options(global_tokens, num_global)

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:
        """``attnzoo.masks.global_tokens(global_tokens)`` or ``(num_global=num_global)``."""
        return global_tokens_mask(self.global_tokens, num_global=self.num_global)

    def fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        batch, heads, q_len, _ = q.shape
        kv_len = k.shape[2]
        keep_fn = pattern_keep(self.pattern(q_len, kv_len), q_len, kv_len, is_causal)
        cols = global_positions(self.global_tokens, self.num_global, kv_len, q.device)
        rows = global_positions(self.global_tokens, self.num_global, q_len, q.device)
        if cols.numel() == 0:
            out = q.new_zeros(batch, heads, q_len, v.shape[-1])
        else:
            keep = keep_fn(torch.arange(q_len, device=q.device).unsqueeze(-1), cols)  # (L, G)
            if key_padding is not None:
                keep = keep & key_padding[:, None, None, cols]  # (B, 1, L, G)
            k_g, v_g = k.index_select(2, cols), v.index_select(2, cols)
            out = attention(q, k_g, v_g, mask=keep, dropout_p=self.dropout_p)
        out = with_dense_rows(
            out, q, k, v, rows, keep_fn, key_padding=key_padding, dropout_p=self.dropout_p
        )
        return out

    def extra_repr(self) -> str:
        which = (
            f"global_tokens={list(self.global_tokens)}"
            if self.global_tokens is not None
            else f"num_global={self.num_global}"
        )
        return f"{super().extra_repr()}, {which}"
