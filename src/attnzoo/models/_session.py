"""Decoding sessions: the per-layer caches (KV cache or recurrent state) of one ``generate``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo.efficient._kernel import KernelAttentionBase, RecurrentState
from attnzoo.sequence.cache import KVCache
from attnzoo.sequence.multihead import MultiHeadAttention

__all__ = ["LayerCaches", "make_decode_cache", "resolve_use_cache"]


def make_decode_cache(attn: nn.Module) -> KVCache | RecurrentState | None:
    """A fresh incremental-decoding cache for ``attn``, or None if it has none.

    ``mha`` (and anything with its forward) keeps keys and values (:class:`KVCache`); the kernel
    mechanisms ``linear`` and ``performer`` keep their constant-size :class:`RecurrentState`.
    Other mechanisms recompute the whole prefix at each step.
    """
    if type(attn).forward is MultiHeadAttention.forward:
        return KVCache()
    if isinstance(attn, KernelAttentionBase):
        return RecurrentState()
    return None


def resolve_use_cache(attns: Sequence[nn.Module], use_cache: bool | None) -> bool:
    """Decide ``use_cache``: None caches when every layer can; True must (else ``ValueError``)."""
    if use_cache is not None and not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be a bool or None, got {use_cache!r}")
    able = all(make_decode_cache(a) is not None for a in attns)
    if use_cache and not able:
        names = sorted({type(a).__name__ for a in attns if make_decode_cache(a) is None})
        raise ValueError(
            f"use_cache=True needs incremental decoding, which {', '.join(names)} does not "
            "have (mha keeps a KVCache, linear and performer a RecurrentState); pass "
            "use_cache=False or None to recompute the prefix at each step"
        )
    return able if use_cache is None else use_cache


class LayerCaches:
    """One decoding session: ``step`` runs ``forward_last`` on the tokens, with or without caches.

    Args:
        attns: The self-attention modules, one per layer, in order.
        use_cache: Keep caches (feed the last token only) or recompute the prefix each step.
        forward: ``forward(tokens (N, t), caches or None, offset) -> logits (N, t, V)``.
        static: Caches the forward manages itself (cross-attention keys of the encoder
            output); they are only reordered with the others.
    """

    def __init__(
        self,
        attns: Sequence[nn.Module],
        use_cache: bool,
        forward: Callable[[torch.Tensor, list | None, int], torch.Tensor],
        static: Sequence[KVCache | None] = (),
    ) -> None:
        self.caches = [make_decode_cache(a) for a in attns] if use_cache else None
        self.static = [cache for cache in static if cache is not None]
        self.forward = forward
        self.fed = 0  # tokens already in the caches

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.caches is None:
            logits = self.forward(tokens, None, 0)
        else:
            logits = self.forward(tokens[:, self.fed :], self.caches, self.fed)
            self.fed = tokens.shape[1]
        return F.log_softmax(logits[:, -1].float(), dim=-1)  # (N, V)

    def reorder(self, index: torch.Tensor) -> None:
        for cache in [*(self.caches or ()), *self.static]:
            cache.reorder(index)
