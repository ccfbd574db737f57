"""Base class of the pattern mechanisms and their global-token options.

:class:`PatternAttention` gives every pattern mechanism the same dispatch: the dense reference
(``attention_reference`` with the materialised mask function) while weights are recorded or
for masks that are not key-padding masks, otherwise the mechanism's fast path: its banded block
path (:mod:`attnzoo.efficient._blocks`, one-entry plan cache) or, where that is no faster, the
block-sparse engine on the mechanism's own pattern (:meth:`PatternAttention.engine`, one-entry
block-mask cache).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attnzoo._checks import check_positive_int, type_name
from attnzoo._recompute import recomputed
from attnzoo.functional.attention import attention_reference
from attnzoo.functional.block_mask import BlockMask, pattern_block_mask
from attnzoo.functional.block_sparse import block_sparse_attention
from attnzoo.functional.mask_ops import MaskMod, materialize
from attnzoo.functional.softmax import merge_masks
from attnzoo.layers.attention_base import AttentionBase

__all__ = ["PatternAttention", "engine_block", "global_options", "global_positions"]


def engine_block(window: int) -> int:
    """Engine block size for a window of half width ``window``.

    A power of two near ``window / 2``, clamped to ``[16, 128]``: 128 for Longformer's 256
    (measured fastest), smaller for smaller windows so that the blocks at the window's edges
    waste little.
    """
    return min(128, max(16, 1 << max(0, (window // 2) - 1).bit_length()))


def global_options(
    global_tokens: Sequence[int] | None, num_global: int | None
) -> tuple[tuple[int, ...] | None, int | None]:
    """Validated ``(global_tokens, num_global)``: at most one; neither means ``num_global=1``."""
    if global_tokens is not None and num_global is not None:
        raise ValueError(
            f"give global_tokens or num_global, not both; got global_tokens={global_tokens!r} "
            f"and num_global={num_global!r}"
        )
    if global_tokens is None:
        return None, check_positive_int(
            "num_global", 1 if num_global is None else num_global, minimum=0
        )
    if isinstance(global_tokens, torch.Tensor):
        global_tokens = global_tokens.flatten().tolist()  # (G,) as a list
    if isinstance(global_tokens, str | bytes) or not isinstance(global_tokens, Sequence):
        raise TypeError(f"global_tokens must be a sequence of ints, got {type_name(global_tokens)}")
    for index in global_tokens:
        check_positive_int("global_tokens entries", index, minimum=0)
    return tuple(sorted(set(global_tokens))), None


def global_positions(
    global_tokens: tuple[int, ...] | None, num_global: int | None, length: int, device
) -> torch.Tensor:
    """Sorted global positions below ``length`` as a ``(G,)`` long tensor."""
    if global_tokens is None:
        return torch.arange(min(num_global or 0, length), device=device)
    return torch.tensor([i for i in global_tokens if i < length], dtype=torch.long, device=device)


class PatternAttention(AttentionBase):
    """Base of the pattern mechanisms: reference path, dispatch and a one-entry plan cache.

    Subclasses define :meth:`pattern` (the mask function for given lengths) and :meth:`fast`
    (the block path for an optional ``(B, S)`` key-padding mask). ``forward`` takes the fast
    path unless the probe is recording (weights are then built densely and recorded), a mask
    other than a boolean key-padding mask is given (it is already ``L x S``), a size is 0, or
    the attribute ``fast_path`` is set to False.

    Training memory: on the fast path, when autograd records the call, the whole layer
    (projections, fast path, output projection) keeps only its input for backward and is
    recomputed there (activation checkpointing; dropout masks and random blocks replayed
    exactly), so a layer's activations are ``O(L d)`` whatever the pattern, for one more
    forward of the layer in backward. Set the attribute ``recompute = False`` to keep the
    activations instead (faster training, more memory).
    """

    recompute = True  # training: recompute the layer in backward (see the class docstring)

    supports_cross = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.fast_path = True
        self._cache: tuple[tuple, object] | None = None
        self._block_mask: tuple[tuple, BlockMask] | None = None

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:  # pragma: no cover - abstract
        """The mask function of this mechanism for these lengths."""
        raise NotImplementedError

    def dense_reason(self, q_len: int, kv_len: int) -> str | None:
        """Why the fast path runs plain dense SDPA at these lengths, or None when it does not.

        When the pattern allows every pair (a window covering the whole sequence, a single
        block ...), the fast path calls dense attention: same result, faster. Benchmarks print
        this reason, so that such a time is not read as the pattern's. ``fast`` decides with it.
        """
        return None

    def fast(self, q, k, v, key_padding, is_causal):  # pragma: no cover - abstract
        """Block path: ``(B, nh, L, hd)`` from projected ``q, k, v``."""
        raise NotImplementedError

    def cached(self, key: tuple, build: Callable[[], object]) -> object:
        """``build()`` memoised for the last ``key`` (lengths, causality, device, dtype).

        The options (``extra_repr``) are part of the key, so changing e.g. ``window`` on a
        module invalidates its plan.
        """
        key = (self.extra_repr(), *key)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, build())
        return self._cache[1]

    def engine(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
        block_size: int | None = None,
    ) -> torch.Tensor:
        """The block-sparse engine on :meth:`pattern` (and bottom-right causality).

        Mechanisms call it where their banded path is no faster (measured in
        ``docs/benchmarks.md``). The block mask is kept for the last lengths and options.
        """
        q_len, kv_len = q.shape[2], k.shape[2]
        key = (self.extra_repr(), q_len, kv_len, is_causal, str(q.device), block_size)
        if self._block_mask is None or self._block_mask[0] != key:
            block_mask = pattern_block_mask(
                self.pattern(q_len, kv_len),
                q_len,
                kv_len,
                is_causal=is_causal,
                block_size=block_size,
                device=q.device,
            )
            self._block_mask = (key, block_mask)
        return block_sparse_attention(
            q,
            k,
            v,
            self._block_mask[1],
            key_padding_mask=key_padding,
            dropout_p=self.dropout_p,
            # the layer is recomputed as a whole (or keeps everything, recompute = False):
            # recomputing each chunk again inside it would run the core a third time
            recompute=False,
        )

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # the reference path, weights from the probe (or a clear refusal)
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, q_len = x.shape[:2]
        kv_len = (x if context is None else context).shape[1]
        checked = self.check_mask(mask, batch, q_len, kv_len, x.dtype)
        padding = None
        if checked is not None and checked.dtype == torch.bool and checked.shape[1:3] == (1, 1):
            padding = checked[:, 0, 0, :].expand(batch, kv_len)  # (B, S)
        dense = checked is not None and padding is None
        if self.probe.recording or dense or not self.fast_path or 0 in (batch, q_len, kv_len):
            q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
            mask = self.check_mask(mask, batch, q_len, kv_len, q.dtype)
            if padding is not None:
                real = padding[:, None, :, None]  # (B, 1, S, 1)
                k, v = k.masked_fill(~real, 0.0), v.masked_fill(~real, 0.0)  # NaN cannot leak
            pattern = materialize(self.pattern(q_len, kv_len), q_len, kv_len, device=q.device)
            out, attn = attention_reference(
                q,
                k,
                v,
                mask=merge_masks(mask, pattern),
                is_causal=is_causal,
                dropout_p=self.dropout_p,
                need_weights=True,
            )
            self.probe(attn)
            return self.finish(out.to(q.dtype), unbatched)
        # in training the whole layer (projections included) is recomputed in backward
        out = recomputed(self._fast_layer, x, context, padding, is_causal, module=self)
        return out.squeeze(0) if unbatched else out

    def _fast_layer(self, x, context, padding, is_causal: bool) -> torch.Tensor:
        """Projections, :meth:`fast` and the output projection: ``(B, L, C)``."""
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        if padding is not None:
            real = padding[:, None, :, None]  # (B, 1, S, 1)
            k, v = k.masked_fill(~real, 0.0), v.masked_fill(~real, 0.0)  # NaN cannot leak
        return self.finish(self.fast(q, k, v, padding, is_causal).to(q.dtype), False)
