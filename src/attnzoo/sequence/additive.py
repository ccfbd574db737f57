"""Additive (Bahdanau) attention as a multi-head module."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo.functional.scoring import additive_score
from attnzoo.functional.softmax import lengths_to_mask, merge_masks
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.papers import BAHDANAU_2015
from attnzoo.registry import SEQUENCE

__all__ = ["AdditiveAttention"]


@SEQUENCE.register(
    "additive_attention",
    paper=BAHDANAU_2015,
    tags=("dense", "self", "cross", "additive"),
    complexity="O(L S hd) time and memory",
)
class AdditiveAttention(AttentionBase):
    r"""Additive attention: ``score(q, k) = w_v^T tanh(W_q q + W_k k)``.

    Bahdanau, Cho, Bengio, "Neural Machine Translation by Jointly Learning to Align and
    Translate", 2015, https://arxiv.org/abs/1409.0473 (the survey's "additive attention", d2l's
    ``AdditiveAttention``). ``q_proj`` and ``k_proj`` are ``W_q`` and ``W_k`` (no bias, as in the
    paper), ``score_vector`` is ``w_v`` — one per head. Queries and context may have different
    widths (``context_dim``). Supports d2l-style ``valid_lens`` as well as masks.

    Deviations from the paper: Bahdanau uses one head and feeds the context vectors on directly;
    this module defaults to one head (``num_heads=1``, unlike ``mha``'s 8) and, to meet the
    sequence contract ``(B, L, C) -> (B, L, C)``, adds ``v_proj`` and ``out_proj``. The score
    broadcasts every query against every key, so memory is ``O(B nh L S hd)``.

    Formula:
        $$
        a(q_i, k_j) = w_v^\top \tanh(W_q q_i + W_k k_j), \qquad
        \mathrm{out}_i = \sum_j \mathrm{softmax}_j\big(a(q_i, k_j)\big)\, v_j
        $$

        per head, with $v_j = W_v c_j$ and the heads joined by `out_proj`.

    Args:
        dim: Query width ``C`` (and output width).
        num_heads: Heads; each has its own ``w_v``.
        head_dim: Hidden size ``h`` of the tanh layer per head, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj`` (Bahdanau: none).
        attn_drop: Dropout on the weights (training only).
        proj_drop: Dropout after ``out_proj``.
        context_dim: Key/value width, default ``dim``.

    Shape:
        - x: ``(B, L, C)``; context: ``(B, S, C_ctx)``; valid_lens: ``(B,)`` or ``(B, L)``
        - output: ``(B, L, C)``; weights ``(B, nh, L, S)`` with ``need_weights``

    Example:
        >>> attn = AdditiveAttention(20, context_dim=2, head_dim=8)
        >>> q, keys = torch.randn(2, 1, 20), torch.randn(2, 10, 2)
        >>> out, w = attn(q, keys, valid_lens=torch.tensor([2, 6]), need_weights=True)
        >>> w[0, 0, 0, 2:].abs().sum().item(), out.shape
        (0.0, torch.Size([2, 1, 20]))
    """

    backend = "reference: additive scores w_v^T tanh(W_q q + W_k k), masked softmax"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        context_dim: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            context_dim=context_dim,
        )
        self.score_vector = nn.Parameter(torch.empty(self.num_heads, self.head_dim))
        nn.init.uniform_(self.score_vector, -(self.head_dim**-0.5), self.head_dim**-0.5)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        valid_lens: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        batch, heads, q_len, _ = q.shape
        mask = self.check_mask(mask, batch, q_len, k.shape[2], q.dtype)
        if valid_lens is not None:
            lens = lengths_to_mask(valid_lens.to(x.device), (batch, heads, q_len, k.shape[2]))
            mask = merge_masks(mask, lens)
        w_v = self.score_vector.to(q.dtype)  # under autocast q is half, the parameter is not
        scores = additive_score(q, k, None, None, w_v)  # (B, nh, L, S)
        out, attn = self.attend_scores(scores, v, mask, is_causal)
        y = self.finish(out, unbatched)
        return (y, attn.squeeze(0) if unbatched else attn) if need_weights else y
