"""Sparse Transformer fixed factorised attention: own block plus summary columns."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int
from attnzoo.efficient._blocks import band_attention, band_plan, pattern_keep
from attnzoo.efficient._pattern import PatternAttention
from attnzoo.functional.attention import attention
from attnzoo.functional.mask_basic import fixed
from attnzoo.functional.mask_ops import MaskMod
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["SPARSE_TRANSFORMER_2019", "SparseTransformerAttention"]

SPARSE_TRANSFORMER_2019 = Paper(
    title="Generating Long Sequences with Sparse Transformers",
    authors="Child, Gray, Radford, Sutskever",
    year=2019,
    url="https://arxiv.org/abs/1904.10509",
)


@EFFICIENT.register(
    "sparse_transformer",
    paper=SPARSE_TRANSFORMER_2019,
    tags=("pattern", "local", "summary", "self"),
    complexity="O(L (l + c L / l) d)",
)
class SparseTransformerAttention(PatternAttention):
    r"""Sparse Transformer *fixed* attention: own block united with every block's summary keys.

    Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse Transformers", 2019,
    https://arxiv.org/abs/1904.10509, section 4.3: ``A(1) = {j : floor(j / l) = floor(i / l)}``
    and ``A(2) = {j : j mod l >= l - c}``; this layer attends ``A(1) ∪ A(2)`` in one head (the
    paper's merged variant). Defined by ``attnzoo.masks.fixed(block, num_summary)`` and equal to
    dense attention with that mask materialised (merged with the padding mask and causality;
    with ``is_causal`` it is the paper's autoregressive pattern, ``j <= i``).

    Fast path: each block of ``l`` queries attends its own block plus the ``c`` summary keys of
    every other block (gathered once); no ``L x L`` tensor. Time ``O(L (l + c L / l) d)``,
    memory ``O(L (l + c L / l))`` (with ``l ~ sqrt(L)`` the paper's ``O(L sqrt(L))``).
    ``L <= block`` is a single block, i.e. dense attention, and runs through SDPA.

    Can: padding masks ``(B, L)``, causality. Cannot: cross-attention
    (``NotImplementedError``). Per-query or float masks and weight recording take the dense
    reference path.

    Defaults and deviations: ``block=128``, ``num_summary=8`` (the paper uses ``l`` in 128,
    256 and ``c`` in 8, 16, 32). The paper splits ``A(1)`` and ``A(2)`` over heads or
    interleaves them over layers; the merged head is used here, and the paper's fused GPU
    kernels and recomputation are not.

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in N(i)} \mathrm{softmax}_{j \in N(i)}\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j, \qquad
        N(i) = \{ j : \lfloor j / l \rfloor = \lfloor i / l \rfloor \} \cup \{ j : j \bmod l \ge l
        - c \}
        $$

        with $l$ = `block` and $c$ = `num_summary`; causal calls keep $j \le i$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        block: Block length ``l``.
        num_summary: Summary positions ``c`` at the end of each block (``0 <= c <= block``).

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; mask: ``(B, L)`` padding
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("sparse_transformer", 64, num_heads=4, block=16, num_summary=2)
        >>> attn(torch.randn(2, 100, 64), is_causal=True).shape
        torch.Size([2, 100, 64])
    """

    backend = "banded blocks + gathered summary columns (its pattern touches every block)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        block: int = 128,
        num_summary: int = 8,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.block = check_positive_int("block", block)
        self.num_summary = check_positive_int("num_summary", num_summary, minimum=0)
        fixed(self.block, self.num_summary)  # validates num_summary <= block

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:
        """``attnzoo.masks.fixed(block, num_summary)`` (non-causal)."""
        return fixed(self.block, self.num_summary)

    def dense_reason(self, q_len: int, kv_len: int) -> str | None:
        """Dense SDPA when the sequence is a single block: ``L <= block``."""
        if q_len <= self.block:
            return f"L = {q_len} <= block={self.block}: one block"
        return None

    def fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        length, size, c = q.shape[2], self.block, self.num_summary
        if self.dense_reason(length, length) is not None:  # one block holds every key
            mask = None if key_padding is None else key_padding[:, None, None, :]  # (B, 1, 1, S)
            return attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.dropout_p)

        def build():
            starts = torch.arange(0, length, size, device=q.device)  # (nb,)
            ends = torch.arange(size - c, size, device=q.device)  # (c,) summary offsets
            summary = (starts.unsqueeze(-1) + ends).flatten()  # (nb * c,)
            return band_plan(
                pattern_keep(self.pattern(length, length), length, length, is_causal),
                length,
                length,
                block=size,
                before=0,
                after=0,
                dtype=q.dtype,
                device=q.device,
                extra=summary[summary < length] if c else None,  # (nb * c,)
            )

        plan = self.cached((length, is_causal, q.device, q.dtype), build)
        return band_attention(q, k, v, plan, key_padding=key_padding, dropout_p=self.dropout_p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block={self.block}, num_summary={self.num_summary}"
