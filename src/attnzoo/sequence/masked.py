"""Dense multi-head attention restricted by any mask function (the reference for patterns)."""

from __future__ import annotations

import torch

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
    complexity="O(L S d); materialises the (B, nh, L, S) mask",
)
class MaskedAttention(MultiHeadAttention):
    """Multi-head attention with a fixed pattern given as a mask function.

    The pattern ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (see :mod:`attnzoo.masks`) is
    materialised for every call and intersected with the call's ``mask`` and ``is_causal``; the
    result runs through ``mha``'s dense paths. This is the plain reference for pattern
    mechanisms (``local``, ``longformer``, ``bigbird`` ...): their block-sparse fast paths must
    equal it. Memory is that of dense attention with a mask, ``O(B nh L S)``. The attention is
    that of Vaswani et al., "Attention Is All You Need", 2017, https://arxiv.org/abs/1706.03762.

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

    Shape:
        - x: ``(B, L, C)``; output ``(B, L, C)``; weights ``(B, nh, L, S)``

    Example:
        >>> from attnzoo import masks
        >>> attn = MaskedAttention(32, num_heads=4, mask_mod=masks.sliding_window(2))
        >>> attn(torch.randn(2, 16, 32)).shape
        torch.Size([2, 16, 32])
    """

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
        if self.mask_mod is not None:
            batch, q_len, _ = x.shape
            kv_len = q_len if context is None else context.shape[1]
            pattern = materialize(
                self.mask_mod, q_len, kv_len, batch=batch, heads=self.num_heads, device=x.device
            )  # (B, nh, L, S)
            mask = merge_masks(self.check_mask(mask, batch, q_len, kv_len, x.dtype), pattern)
        result = super().forward(
            x, context, mask=mask, is_causal=is_causal, need_weights=need_weights
        )
        if not unbatched:
            return result
        if need_weights:
            return result[0].squeeze(0), result[1].squeeze(0)
        return result.squeeze(0)
