"""Sparse Transformer strided attention: a local band united with every ``stride``-th key."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int
from attnzoo.efficient._blocks import band_attention, band_plan, merge_lse, pattern_keep
from attnzoo.efficient._pattern import PatternAttention
from attnzoo.efficient.sparse_transformer import SPARSE_TRANSFORMER_2019
from attnzoo.functional.attention import attention
from attnzoo.functional.mask_basic import strided
from attnzoo.functional.mask_ops import MaskMod
from attnzoo.registry import EFFICIENT

__all__ = ["StridedAttention"]


@EFFICIENT.register(
    "strided",
    paper=SPARSE_TRANSFORMER_2019,
    tags=("pattern", "local", "dilated", "self"),
    complexity="O(L (s + L / s) d)",
)
class StridedAttention(PatternAttention):
    r"""Sparse Transformer *strided* attention: the band ``|i - j| <= s`` plus every ``s``-th key.

    Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse Transformers", 2019,
    https://arxiv.org/abs/1904.10509, section 4.2: ``A(1) = {j : |i - j| <= l}`` (``t = i - j
    <= l`` in the causal paper) and ``A(2) = {j : (i - j) mod l = 0}`` with stride ``l = s``;
    this layer attends ``A(1) ∪ A(2)`` in one head. Defined by ``attnzoo.masks.strided(stride)``
    and equal to dense attention with that mask materialised (merged with the padding mask and
    causality; with ``is_causal`` it is the paper's autoregressive pattern).

    Fast path: two disjoint key sets, each computed from blocks, merged exactly through their
    log-sum-exps: (1) blocks of ``s`` queries attend their ``3s`` surrounding keys (an
    ``unfold`` view); (2) within each residue class ``i mod s`` the queries attend the class's
    keys outside set (1). Time ``O(L (s + L / s) d)``, memory ``O(L (s + L / s))``, i.e. the
    paper's ``O(L sqrt(L))`` for ``s ~ sqrt(L)``; no ``L x L`` tensor. When ``s >= L - 1`` the
    band covers everything and the layer runs dense SDPA.

    Can: padding masks ``(B, L)``, causality. Cannot: cross-attention
    (``NotImplementedError``). Per-query or float masks and weight recording take the dense
    reference path.

    Defaults and deviations: ``stride=128``, the paper's ``l ~ sqrt(L)`` for ``L = 16384``
    (use the image width for images). The paper splits ``A(1)`` and ``A(2)`` over two heads or
    interleaves them over layers; the merged head is used here.

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in N(i)} \mathrm{softmax}_{j \in N(i)}\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j, \qquad
        N(i) = \{ j : |i - j| \le s \} \cup \{ j : (i - j) \bmod s = 0 \}
        $$

        with $s$ = `stride`; causal calls keep $j \le i$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        stride: The stride ``s >= 1``.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; mask: ``(B, L)`` padding
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("strided", 64, num_heads=4, stride=10)
        >>> attn(torch.randn(2, 100, 64), is_causal=True).shape
        torch.Size([2, 100, 64])
    """

    backend = "banded window + strided columns merged by log-sum-exp"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        stride: int = 128,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.stride = check_positive_int("stride", stride)

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:
        """``attnzoo.masks.strided(stride)`` (non-causal)."""
        return strided(self.stride)

    def _plans(self, length: int, is_causal: bool, dtype: torch.dtype, device: torch.device):
        s = self.stride
        after = 0 if is_causal else s
        keep_fn = pattern_keep(self.pattern(length, length), length, length, is_causal)

        def outside_band(q_pos: torch.Tensor, kv_pos: torch.Tensor) -> torch.Tensor:
            start = torch.div(q_pos, s, rounding_mode="floor") * s - s  # band window of q's block
            return keep_fn(q_pos, kv_pos) & ((kv_pos < start) | (kv_pos >= start + 2 * s + after))

        options = {"dtype": dtype, "device": device}
        band = band_plan(keep_fn, length, length, block=s, before=s, after=after, **options)
        per_class = -(-length // s)
        columns = band_plan(
            outside_band, length, length, block=per_class, before=0, after=0, dilation=s, **options
        )
        return band, columns

    def dense_reason(self, q_len: int, kv_len: int) -> str | None:
        """Dense SDPA when the band alone covers every key: ``stride >= L - 1``."""
        if self.stride >= q_len - 1:
            return f"stride={self.stride} >= L - 1 = {q_len - 1}"
        return None

    def fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        length = q.shape[2]
        if self.dense_reason(length, length) is not None:  # the band alone covers every key
            mask = None if key_padding is None else key_padding[:, None, None, :]  # (B, 1, 1, S)
            return attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.dropout_p)
        band, columns = self.cached(
            (length, is_causal, q.device, q.dtype),
            lambda: self._plans(length, is_causal, q.dtype, q.device),
        )
        options = {"key_padding": key_padding, "dropout_p": self.dropout_p, "return_lse": True}
        out_band, lse_band = band_attention(q, k, v, band, **options)
        out_cols, lse_cols = band_attention(q, k, v, columns, **options)
        return merge_lse(out_band, lse_band, out_cols, lse_cols)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}"
