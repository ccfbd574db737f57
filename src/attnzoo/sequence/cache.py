"""``KVCache`` (and ``PackedKVCache``, one per packed sequence): past keys and values."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int, type_name

__all__ = ["KVCache", "PackedKVCache"]


class KVCache:
    """Growing (or preallocated) store of past keys and values, ``(B, nkv, S, hd)``.

    Feed a sequence token by token through ``mha(x_t, cache=cache, is_causal=True)``: each call
    appends its keys and values and attends to everything cached; the outputs equal one causal
    call on the whole sequence. Without gradients (``torch.no_grad()`` / ``inference_mode``) the
    tensors live in a buffer that doubles when full (amortised O(1) appends, no copy per step,
    nothing kept for autograd); when the new keys carry gradients the cache concatenates instead,
    so backpropagation through the cache stays correct.

    Args:
        max_len: Preallocate room for ``max_len`` tokens; appending beyond it raises
            ``ValueError``. ``None`` grows as tokens arrive.

    Shape:
        - update(k, v): ``(B, nkv, T, hd)`` each -> all keys and values ``(B, nkv, S, hd)``

    Example:
        >>> cache = KVCache(max_len=4)
        >>> k, v = cache.update(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8))
        >>> len(cache), k.shape
        (3, torch.Size([1, 2, 3, 8]))
    """

    def __init__(self, max_len: int | None = None) -> None:
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)
        self.reset()

    def reset(self) -> None:
        """Forget every cached token (buffers are released)."""
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def k(self) -> torch.Tensor | None:
        """Cached keys ``(B, nkv, S, hd)`` or None when empty."""
        return None if self._k is None else self._k[:, :, : self._len]

    @property
    def v(self) -> torch.Tensor | None:
        """Cached values ``(B, nkv, S, hd_v)`` or None when empty."""
        return None if self._v is None else self._v[:, :, : self._len]

    def _check(self, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4:
                raise ValueError(f"{name} must be (B, nkv, T, hd), got {type_name(t)}")
        if k.shape[:3] != v.shape[:3]:
            raise ValueError(
                f"k and v must agree in (B, nkv, T), got {tuple(k.shape)} and {tuple(v.shape)}"
            )
        if self._k is not None:
            want_k = (self._k.shape[0], self._k.shape[1], self._k.shape[3])
            got_k = (k.shape[0], k.shape[1], k.shape[3])
            if want_k != got_k or v.shape[3] != self._v.shape[3] or k.dtype != self._k.dtype:
                raise ValueError(
                    f"new keys (B, nkv, hd) = {got_k} ({k.dtype}) do not match the cache's "
                    f"{want_k} ({self._k.dtype}); call reset() to start a new sequence"
                )
        if self.max_len is not None and self._len + k.shape[2] > self.max_len:
            raise ValueError(
                f"KVCache is full: max_len={self.max_len}, holds {self._len} tokens, "
                f"got {k.shape[2]} more; create it with a larger max_len or reset() it"
            )

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k, v`` (``(B, nkv, T, hd)``) and return all cached keys and values."""
        self._check(k, v)
        new_len = self._len + k.shape[2]
        tracking = torch.is_grad_enabled() and (k.requires_grad or v.requires_grad)
        if tracking:
            if self._k is None:
                self._k, self._v = k, v
            else:
                self._k = torch.cat([self.k, k], dim=2)  # (B, nkv, S, hd)
                self._v = torch.cat([self.v, v], dim=2)  # (B, nkv, S, hd_v)
            self._len = new_len
            return self.k, self.v
        capacity = 0 if self._k is None else self._k.shape[2]
        if new_len > capacity:
            capacity = self.max_len or max(new_len, 2 * capacity, 16)
            self._k = self._grow(self._k, k, capacity)
            self._v = self._grow(self._v, v, capacity)
        with torch.no_grad():
            self._k[:, :, self._len : new_len] = k
            self._v[:, :, self._len : new_len] = v
        self._len = new_len
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (a ``(B',)`` long tensor), in that order: beam search.

        Example:
            >>> cache = KVCache()
            >>> _ = cache.update(torch.arange(2.0).view(2, 1, 1, 1), torch.zeros(2, 1, 1, 1))
            >>> cache.reorder(torch.tensor([1, 1, 0]))
            >>> cache.k.flatten().tolist()
            [1.0, 1.0, 0.0]
        """
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point():
            raise TypeError(f"index must be a 1-D integer tensor, got {type_name(index)}")
        if self._k is not None:
            self._k = self._k.index_select(0, index.to(self._k.device))  # (B', nkv, cap, hd)
            self._v = self._v.index_select(0, index.to(self._v.device))  # (B', nkv, cap, hd_v)

    def _grow(self, old: torch.Tensor | None, like: torch.Tensor, capacity: int) -> torch.Tensor:
        batch, heads, _, width = like.shape
        buffer = like.new_empty(batch, heads, capacity, width)  # (B, nkv, capacity, hd)
        if old is not None and self._len:
            buffer[:, :, : self._len] = old[:, :, : self._len].detach()
        return buffer

    def __repr__(self) -> str:
        return f"KVCache(len={self._len}, max_len={self.max_len})"


class PackedKVCache:
    """One :class:`KVCache` per packed sequence: incremental decoding of variable lengths.

    For ``mha(x, cu_seqlens=..., cache=...)`` on sequences packed as ``(1, T, C)`` (the layout
    of :func:`~attnzoo.functional.varlen_attention`). Each call appends every sequence's new
    tokens to that sequence's own cache and returns all keys and values packed again, with
    their offsets; with ``is_causal=True`` the queries attend bottom-right within their own
    sequence. Prefill the prompts of different lengths in one call, then decode one token per
    sequence (``cu_seqlens = arange(N + 1)``): every output equals running that sequence alone.
    The number of sequences is fixed by the first call.

    Args:
        max_len: Passed to every sequence's :class:`KVCache` (``None``: grow).

    Shape:
        - update(k, v, cu_seqlens): ``(T_new, nkv, hd)`` each, ``(N + 1,)`` offsets ->
          ``(T_all, nkv, hd)`` keys, values and their ``(N + 1,)`` offsets

    Example:
        >>> cache = PackedKVCache()
        >>> k = torch.zeros(5, 2, 8)  # prompts of 2 and 3 tokens
        >>> _, _, cu = cache.update(k, k, torch.tensor([0, 2, 5]))
        >>> _, _, cu = cache.update(k[:2], k[:2], torch.tensor([0, 1, 2]))  # one token each
        >>> cu.tolist(), cache.lengths()
        ([0, 3, 7], [3, 4])
    """

    def __init__(self, max_len: int | None = None) -> None:
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)
        self.caches: list[KVCache] = []

    def reset(self) -> None:
        """Forget every sequence."""
        self.caches = []

    def __len__(self) -> int:
        """Number of sequences (0 before the first call)."""
        return len(self.caches)

    def lengths(self) -> list[int]:
        """Cached tokens of each sequence."""
        return [len(cache) for cache in self.caches]

    def update(
        self, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append each sequence's ``k, v`` rows and return everything packed, with offsets."""
        from attnzoo.functional.varlen import check_cu_seqlens

        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ValueError(f"{name} must be packed (T, nkv, hd), got {type_name(t)}")
        offsets = check_cu_seqlens(cu_seqlens, k.shape[0])
        count = len(offsets) - 1
        if not self.caches:
            self.caches = [KVCache(self.max_len) for _ in range(count)]
        elif count != len(self.caches):
            raise ValueError(
                f"this cache decodes {len(self.caches)} packed sequences, but cu_seqlens "
                f"describes {count}; reset() it to start another batch"
            )
        keys, values = [], []
        for cache, start, stop in zip(self.caches, offsets[:-1], offsets[1:], strict=True):
            # (T_i, nkv, hd) -> (1, nkv, T_i, hd): one KVCache row per sequence
            k_i, v_i = (t[start:stop].transpose(0, 1)[None] for t in (k, v))
            k_all, v_all = cache.update(k_i, v_i)  # (1, nkv, S_i, hd)
            keys.append(k_all[0].transpose(0, 1))  # (S_i, nkv, hd)
            values.append(v_all[0].transpose(0, 1))
        total = torch.tensor([0, *self.lengths()], device=k.device).cumsum(0)  # (N + 1,)
        return torch.cat(keys), torch.cat(values), total
