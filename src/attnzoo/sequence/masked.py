"""Multi-head attention restricted by any mask function, on the block-sparse engine."""

from __future__ import annotations

import torch

from attnzoo.functional.block_mask import BlockMask, check_block_size, pattern_block_mask
from attnzoo.functional.block_sparse import block_sparse_attention
from attnzoo.functional.masks import MaskMod, materialize
from attnzoo.functional.softmax import merge_masks
from attnzoo.papers import VASWANI_2017
from attnzoo.registry import SEQUENCE
from attnzoo.sequence.multihead import MultiHeadAttention

__all__ = ["MaskedAttention"]


@SEQUENCE.register(
    "masked",
    paper=VASWANI_2017,
    tags=("dense", "self", "cross", "pattern"),
    complexity="O(non-empty blocks x bq x bk x d); no (L, S) tensor (block-sparse engine)",
)
class MaskedAttention(MultiHeadAttention):
    r"""Multi-head attention with a fixed pattern given as a mask function.

    The pattern ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (see :mod:`attnzoo.masks`) is
    intersected with the call's causality and runs on the block-sparse engine
    (:func:`~attnzoo.functional.block_sparse_attention`): its
    :class:`~attnzoo.functional.BlockMask` is built once per ``(L, S, is_causal)`` and kept,
    only non-empty ``block_size`` blocks are computed and no ``L x S`` tensor is formed. A
    ``(B, S)`` padding mask rides along as key padding. Weights (``need_weights=True`` or a
    recording probe) and a call mask that is more than padding take the dense path: the pattern
    is materialised ``(B, nh, L, S)`` and merged with the mask. Both paths equal dense masked
    attention, so this is also the plain reference for the pattern mechanisms (``local``,
    ``longformer``, ``bigbird`` ...). The attention is that of Vaswani et al., "Attention Is All
    You Need", 2017, https://arxiv.org/abs/1706.03762.

    Whether the pattern depends on the batch element or the head is read from the shape the
    mask function returns on broadcast index grids (FlexAttention's ``B=None`` / ``H=None``):
    a pattern that never looks at ``b`` or ``h`` is stored once.

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \,:\, M(b, h, i, j)} \mathrm{softmax}_j\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j
        $$

        where $M$ = `mask_mod` (intersected with causality and padding) and the softmax runs over
        the
        allowed keys only.

    Args:
        dim: Model width ``C``.
        mask_mod: The pattern; ``None`` allows everything (then this is ``mha``).
        num_heads: Query heads.
        num_kv_heads: Key/value heads (GQA).
        head_dim: Per-head width.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Dropout on the weights.
        proj_drop: Dropout after ``out_proj``.
        context_dim: Context width for cross-attention.
        proj_bias: Bias in ``out_proj``.
        block_size: Block size of the engine, an int or ``(bq, bk)``; default
            :data:`~attnzoo.functional.block_mask.DEFAULT_BLOCK_SIZE` (measured on CPU).

    Shape:
        - x: ``(B, L, C)``; output ``(B, L, C)``; weights ``(B, nh, L, S)``

    Example:
        >>> from attnzoo import masks
        >>> attn = MaskedAttention(32, num_heads=4, mask_mod=masks.sliding_window(2))
        >>> attn(torch.randn(2, 16, 32)).shape
        torch.Size([2, 16, 32])
    """

    backend = "block_sparse engine on the pattern's BlockMask (dense reference for weights)"

    def __init__(
        self,
        dim: int,
        *,
        mask_mod: MaskMod | None = None,
        num_heads: int = 8,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        context_dim: int | None = None,
        proj_bias: bool = True,
        block_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            context_dim=context_dim,
            proj_bias=proj_bias,
        )
        if mask_mod is not None and not callable(mask_mod):
            raise TypeError(f"mask_mod must be a mask function or None, got {type(mask_mod)}")
        self.mask_mod = mask_mod
        self.block_size = None if block_size is None else check_block_size(block_size)
        self._block_masks: dict[tuple, BlockMask] = {}

    def block_mask(
        self, batch: int, q_len: int, kv_len: int, is_causal: bool, device: torch.device
    ) -> BlockMask:
        """The engine's block mask of the pattern (and causality) for these sizes (cached)."""
        key = (q_len, kv_len, is_causal, str(device), batch)
        if key not in self._block_masks:
            probe = self.mask_mod(
                torch.arange(batch, device=device).view(batch, 1, 1, 1),  # (B, 1, 1, 1)
                torch.arange(self.num_heads, device=device).view(-1, 1, 1)[None],  # (1, nh, 1, 1)
                torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device),
                torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device),
            )  # the dims the pattern returns say whether it looks at b and h
            per_batch = probe.dim() == 4 and probe.shape[0] > 1
            per_head = probe.dim() == 4 and probe.shape[1] > 1
            if len(self._block_masks) >= 8:  # a handful of shapes: drop the oldest
                self._block_masks.pop(next(iter(self._block_masks)))
            self._block_masks[key] = pattern_block_mask(
                self.mask_mod,
                q_len,
                kv_len,
                is_causal=is_causal,
                batch=batch if per_batch else None,
                heads=self.num_heads if per_head else None,
                block_size=self.block_size,
                device=device,
            )
        return self._block_masks[key]

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, q_len, _ = x.shape
        kv_len = q_len if context is None else context.shape[1]
        if self.mask_mod is not None:
            mask = self.check_mask(mask, batch, q_len, kv_len, x.dtype)
            padding_only = mask is None or (
                mask.dtype == torch.bool and mask.shape[1] == 1 and mask.shape[2] == 1
            )
            if padding_only and not need_weights and not self.probe.recording:
                q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nkv, S, hd) x 2
                padding = None if mask is None else mask[:, 0, 0, :].expand(batch, kv_len)
                out = block_sparse_attention(
                    q,
                    k,
                    v,
                    self.block_mask(batch, q_len, kv_len, is_causal, x.device),
                    key_padding_mask=padding,
                    dropout_p=self.dropout_p,
                )  # (B, nh, L, hd)
                return self.finish(out, unbatched)
            pattern = materialize(
                self.mask_mod, q_len, kv_len, batch=batch, heads=self.num_heads, device=x.device
            )  # (B, nh, L, S)
            mask = merge_masks(mask, pattern)
        result = super().forward(
            x, context, mask=mask, is_causal=is_causal, need_weights=need_weights
        )
        if not unbatched:
            return result
        if need_weights:
            return result[0].squeeze(0), result[1].squeeze(0)
        return result.squeeze(0)
