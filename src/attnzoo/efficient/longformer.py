"""Longformer attention: a (dilated) sliding window plus global tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnzoo._checks import check_positive_int
from attnzoo.efficient._blocks import band_attention, band_plan, pattern_keep, with_dense_rows
from attnzoo.efficient._pattern import (
    PatternAttention,
    engine_block,
    global_options,
    global_positions,
)
from attnzoo.efficient.global_tokens import LONGFORMER_2020
from attnzoo.efficient.local import band_block
from attnzoo.functional.mask_ops import MaskMod
from attnzoo.functional.mask_sparse import longformer
from attnzoo.registry import EFFICIENT

__all__ = ["LongformerAttention"]


@EFFICIENT.register(
    "longformer",
    paper=LONGFORMER_2020,
    tags=("pattern", "local", "global", "self"),
    complexity="O(L (w + G) d)",
)
class LongformerAttention(PatternAttention):
    r"""Longformer self-attention: dilated sliding window united with global tokens.

    Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", 2020,
    https://arxiv.org/abs/2004.05150. Query ``i`` attends key ``j`` when
    ``j = i + m * dilation`` with ``|m| <= window`` (the window part), or when ``i`` or ``j`` is
    global. Defined by ``attnzoo.masks.longformer(window, dilation=..., ...)``; equal to dense
    attention with that mask materialised (merged with the call's padding mask and causality).
    With ``is_causal`` every part keeps ``j <= i`` (the window becomes one-sided, as in the
    paper's autoregressive language model; global tokens see only their past).

    Fast path: the sequence is split into its ``dilation`` residue classes (``i mod d``), in
    which the dilated window is a plain window; each block of queries attends its key window
    (an ``unfold`` view) plus the ``G`` global keys, and the ``G`` global query rows attend all
    keys densely. Time ``O(L (w + G) d)``, memory ``O(L (w + G))``; no ``L x L`` tensor.
    Without dilation the block-sparse engine
    (:func:`~attnzoo.functional.block_sparse_attention`) runs instead on the pattern's block
    mask, as fast forward and faster backward (``docs/benchmarks.md``); a dilated window
    touches every key block, so it stays banded.

    Can: padding masks ``(B, S)``, causality. Cannot: cross-attention (``NotImplementedError``).
    Per-query or float masks and weight recording take the dense reference path.

    Defaults and deviations: ``window=256`` on each side is the paper's pretraining window
    (``w = 512`` keys in total, no dilation); ``num_global=1`` (the ``[CLS]`` token used for
    classification) when neither global option is given. The paper uses separate projections
    ``Q_g, K_g, V_g`` for global attention; this layer uses one set, so that it is exactly dense
    attention under its mask. The paper's per-layer window sizes and per-head dilation are left
    to the model that stacks these layers.

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in N(i)} \mathrm{softmax}_{j \in N(i)}\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j, \qquad
        N(i) = \{ i + m\delta : |m| \le w \} \cup G \;\; (\text{all } j \text{ if } i \in G)
        $$

        with $w$ = `window`, $\delta$ = `dilation` and $G$ the global positions.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        window: Window keys on each side of the query (in steps of ``dilation``), ``>= 0``.
        dilation: Gap between window keys, ``>= 1``.
        global_tokens: Positions of the global tokens.
        num_global: Alternatively, the first ``num_global`` positions (``0``: no global token).

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; mask: ``(B, L)`` padding
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("longformer", 64, num_heads=4, window=4, dilation=2)
        >>> attn(torch.randn(2, 50, 64), mask=torch.ones(2, 50, dtype=torch.bool)).shape
        torch.Size([2, 50, 64])
    """

    backend = (
        "block_sparse engine (banded blocks by residue class when dilated) + dense global rows"
    )

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        window: int = 256,
        dilation: int = 1,
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
        self.window = check_positive_int("window", window, minimum=0)
        self.dilation = check_positive_int("dilation", dilation)
        self.global_tokens, self.num_global = global_options(global_tokens, num_global)

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:
        """``attnzoo.masks.longformer(window, dilation=..., global ...)`` (non-causal)."""
        return longformer(
            self.window,
            dilation=self.dilation,
            global_indices=self.global_tokens,
            num_global=self.num_global,
        )

    def fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        length, d = q.shape[2], self.dilation
        if d == 1:  # the block-sparse engine: as fast forward, faster backward
            return self.engine(q, k, v, key_padding, is_causal, engine_block(self.window))
        keep_fn = pattern_keep(self.pattern(length, length), length, length, is_causal)
        glob = global_positions(self.global_tokens, self.num_global, length, q.device)

        def build():
            per_class = -(-length // d)
            w = min(self.window, per_class)  # keys further away do not exist
            return band_plan(
                keep_fn,
                length,
                length,
                block=min(band_block(w), per_class),
                before=w,
                after=0 if is_causal else w,
                dtype=q.dtype,
                device=q.device,
                dilation=d,
                extra=glob if glob.numel() else None,
            )

        plan = self.cached((length, is_causal, q.device, q.dtype), build)
        out = band_attention(q, k, v, plan, key_padding=key_padding, dropout_p=self.dropout_p)
        out = with_dense_rows(
            out, q, k, v, glob, keep_fn, key_padding=key_padding, dropout_p=self.dropout_p
        )
        return out

    def extra_repr(self) -> str:
        which = (
            f"global_tokens={list(self.global_tokens)}"
            if self.global_tokens is not None
            else f"num_global={self.num_global}"
        )
        return (
            f"{super().extra_repr()}, window={self.window}, dilation={self.dilation}{', ' + which}"
        )
