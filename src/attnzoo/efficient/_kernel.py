"""Kernelised (linear) attention: the core shared by ``linear`` and ``performer``.

With a feature map ``phi`` that has non-negative outputs, attention becomes

``out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))``

and costs ``O(L m d)`` instead of ``O(L S d)`` (``m`` features). Appending a column of ones to
``v`` makes numerator and denominator one product. The causal form sums only keys ``j <= i``
(bottom-right aligned when ``L != S``); it runs in chunks of ``chunk_size`` tokens: inside a
chunk the masked ``(C, C)`` products, across chunks an exclusive prefix sum (``cumsum``) of the
per-chunk states ``phi(K_c)^T [V_c, 1]`` — a handful of large tensor ops, no Python loop, no
``L x S`` tensor. The state after the last key is what a :class:`RecurrentState` carries between
calls, so token-by-token (RNN-mode) decoding equals one causal call.

The non-causal form streams: keys are projected, mapped and summed into the state block by
block (``block_size`` tokens), then queries are projected, mapped, normalised and sent through
``out_proj`` block by block, so every temporary is a small, cache-resident ``(B, Lb, nh, m)``
block in the projection's own ``(B, L, nh, hd)`` layout (no transposing copies, no
``(B, nh, L, m)`` feature tensor, whose fresh pages alone cost as much as the maths).

:class:`KernelAttentionBase` is the module both mechanisms subclass; they only define their
feature maps. The feature maps themselves (``elu + 1``, and Performer's orthogonal random
features, positive softmax features and ReLU features) live in ``_kernel_features`` and are
re-exported here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int, type_name
from attnzoo.efficient._kernel_features import (
    elu_features,
    orthogonal_gaussian,
    relu_kernel_features,
    softmax_kernel_features,
)
from attnzoo.layers.attention_base import AttentionBase

__all__ = [
    "KernelAttentionBase",
    "RecurrentState",
    "elu_features",
    "kernel_attention",
    "kernel_weights",
    "mask_keys",
    "orthogonal_gaussian",
    "relu_kernel_features",
    "softmax_kernel_features",
]

HALF = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- core
def mask_keys(
    phi_k: torch.Tensor, v: torch.Tensor, gone: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero padded keys and apply weight dropout, in any ``(..., token, head, ...)`` layout.

    Padded keys (``gone``, a bool tensor broadcastable to ``phi_k[..., :1]``) get zero features
    and zero values (``masked_fill``, so NaN stored there cannot leak). Dropout drops whole key
    columns of the implicit weight matrix (one Bernoulli mask per ``(b, head, key)``, shared by
    every query, rescaled by ``1 / (1 - p)``) in the numerator only (``v``; the normaliser's
    ``phi(k)`` keeps every key), so it is applied once and stays ``O(L)``.

    Returns:
        ``phi_k`` and ``v`` with the shapes they came in.
    """
    if gone is not None:
        phi_k = phi_k.masked_fill(gone, 0.0)
        v = v.masked_fill(gone, 0.0)
    if dropout_p > 0:
        v = v * F.dropout(v.new_ones(*v.shape[:-1], 1), p=dropout_p)
    return phi_k, v


def _normalise(num_den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)`` from ``(..., dv + 1)``; rows that see no key give exact zeros."""
    return _divide(num_den[..., :-1], num_den[..., -1:], eps)


def _divide(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)``, exact zeros where ``den + eps`` is zero (no key seen)."""
    den = den + eps
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _state(phi_k: torch.Tensor, v_ext: torch.Tensor) -> torch.Tensor:
    return phi_k.transpose(-2, -1) @ v_ext  # (..., m, dv + 1)


def _causal_square(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    prefix: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal core for ``n`` queries and ``n`` keys: query ``i`` sees ``prefix`` and ``j <= i``.

    Returns ``(num_den, state after the last key, prefix included)``.
    """
    batch, heads, n, m = phi_q.shape
    width = v_ext.shape[-1]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    if pad:
        phi_q, phi_k = F.pad(phi_q, (0, 0, 0, pad)), F.pad(phi_k, (0, 0, 0, pad))
        v_ext = F.pad(v_ext, (0, 0, 0, pad))
    blocks = (n + pad) // chunk
    qc = phi_q.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    kc = phi_k.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    vc = v_ext.reshape(batch, heads, blocks, chunk, width)  # (B, nh, nc, C, dv + 1)
    per_chunk = _state(kc, vc)  # (B, nh, nc, m, dv + 1)
    running = per_chunk.cumsum(dim=2)  # inclusive prefix over chunks
    if prefix is not None:
        running = running + prefix[:, :, None]
        first = prefix[:, :, None]
    else:
        first = torch.zeros_like(running[:, :, :1])
    before = torch.cat([first, running[:, :, :-1]], dim=2)  # exclusive prefix
    inner = (qc @ kc.transpose(-2, -1)).tril()  # (B, nh, nc, C, C)
    out = qc @ before + inner @ vc  # (B, nh, nc, C, dv + 1)
    out = out.reshape(batch, heads, blocks * chunk, width)[:, :, :n]  # (B, nh, n, dv + 1)
    return out, running[:, :, -1]


def kernel_attention(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    *,
    is_causal: bool = False,
    eps: float = 0.0,
    prefix: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear-time kernel attention from non-negative features.

    Args:
        phi_q: ``(B, nh, L, m)`` query features.
        phi_k: ``(B, nh, S, m)`` key features (padded keys already zero, see
            :func:`mask_keys`).
        v_ext: ``(B, nh, S, dv + 1)`` values with a last column of ones.
        is_causal: Query ``i`` sees keys ``j <= i + S - L`` (bottom-right aligned).
        eps: Added to the denominator (rows that see no key give zeros either way).
        prefix: ``(B, nh, m, dv + 1)`` state of earlier keys seen by every query (a
            :class:`RecurrentState`), or None.
        chunk_size: Chunk length of the causal prefix sums.

    Returns:
        ``(out (B, nh, L, dv), state (B, nh, m, dv + 1))``: the state includes ``prefix`` and
        every key of this call.

    Shape:
        - phi_q ``(B, nh, L, m)``, phi_k ``(B, nh, S, m)``, v_ext ``(B, nh, S, dv + 1)``
    """
    batch, heads, q_len, _ = phi_q.shape
    kv_len = phi_k.shape[2]
    if not is_causal:
        state = _state(phi_k, v_ext)  # (B, nh, m, dv + 1)
        if prefix is not None:
            state = state + prefix
        return _normalise(phi_q @ state, eps), state
    offset = kv_len - q_len
    if offset > 0:  # keys before the first query's diagonal: seen by every query
        head = _state(phi_k[:, :, :offset], v_ext[:, :, :offset])
        prefix = head if prefix is None else prefix + head
        phi_k, v_ext = phi_k[:, :, offset:], v_ext[:, :, offset:]
    blind = max(-offset, 0)  # queries before the first key: they see nothing
    seen = phi_q[:, :, blind:]
    if seen.shape[2] == 0:
        state = _state(phi_k, v_ext)
        state = state if prefix is None else state + prefix
        num_den = phi_q.new_zeros(batch, heads, q_len, v_ext.shape[-1])
    else:
        num_den, state = _causal_square(seen, phi_k, v_ext, prefix, chunk_size)
        if blind:
            num_den = F.pad(num_den, (0, 0, blind, 0))
    return _normalise(num_den, eps), state


def kernel_weights(
    phi_q: torch.Tensor, phi_k: torch.Tensor, *, is_causal: bool = False, eps: float = 0.0
) -> torch.Tensor:
    """The explicit ``(B, nh, L, S)`` weights ``phi(q_i)^T phi(k_j) / sum_j' ...`` (O(L S)).

    The closed form of :func:`kernel_attention`, used while a probe records. Padded keys must
    already have zero features; rows that see no key are exact zeros.
    """
    scores = phi_q @ phi_k.transpose(-2, -1)  # (B, nh, L, S)
    if is_causal:
        scores = scores.tril(diagonal=phi_k.shape[2] - phi_q.shape[2])
    den = scores.sum(-1, keepdim=True) + eps
    return scores / torch.where(den > 0, den, torch.ones_like(den))


# ----------------------------------------------------------------------------- state + module
class RecurrentState:
    """Running state of causal kernel attention for RNN-mode (token-by-token) decoding.

    Holds ``S = sum_j phi(k_j) [v_j, 1]^T`` of shape ``(B, nh, m, dv + 1)`` over every token fed
    so far — constant memory, whatever the length. Pass the same object as ``cache=`` to
    successive causal calls of ``linear`` or ``performer`` (self-attention); the outputs equal
    one causal call on the concatenated sequence. The state keeps the autograd graph when the
    inputs carry gradients; decode under ``torch.no_grad()`` to keep it flat.

    Shape:
        - state: ``(B, nh, m, dv + 1)`` or None before the first call

    Example:
        >>> state = RecurrentState()
        >>> len(state), state.state is None
        (0, True)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every token seen so far."""
        self.state: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (a ``(B',)`` long tensor), in that order: beam search."""
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point():
            raise TypeError(f"index must be a 1-D integer tensor, got {type_name(index)}")
        if self.state is not None:
            self.state = self.state.index_select(
                0, index.to(self.state.device)
            )  # (B', nh, m, dv+1)

    def check(self, batch: int, heads: int, features: int, width: int, dtype: torch.dtype) -> None:
        """Before any work (as ``KVCache`` does): ``ValueError`` if B, the shape or dtype differ.

        A batch-1 state would otherwise broadcast silently over every row of a larger batch.
        """
        if self.state is None:
            return
        want, got = tuple(self.state.shape), (batch, heads, features, width + 1)
        if want != got or dtype != self.state.dtype:
            raise ValueError(
                f"cache holds a RecurrentState of (B, nh, m, dv + 1) = {want} "
                f"({self.state.dtype}) but this call needs {got} ({dtype}): the batch size "
                "or the module differs; call cache.reset() to start a new sequence, or "
                "cache.reorder(index) to select batch rows (beam search)"
            )

    def update(self, state: torch.Tensor, new_tokens: int) -> None:
        """Replace the state by ``state`` (which already includes the old one)."""
        if self.state is not None and state.shape != self.state.shape:
            raise ValueError(
                f"the new state {tuple(state.shape)} does not match the cached "
                f"{tuple(self.state.shape)}; call reset() to start a new sequence"
            )
        self.state = state
        self._len += new_tokens


class KernelAttentionBase(AttentionBase):
    """Module shell of kernelised attention; subclasses define the two feature maps.

    Subclasses implement :meth:`query_features` and :meth:`key_features` (row-wise maps of the
    last dim, any leading dims) and may override :meth:`prepare_features`, run once per call.
    Non-causal calls stream in blocks of ``block_size`` tokens (:meth:`_forward_blocks`):
    projections -> features (in float32 for half inputs) -> :func:`mask_keys` -> state sums ->
    normalised outputs -> ``out_proj``. Causal calls (and a ``cache``) project everything and
    run :func:`kernel_attention`. While a probe records (and no cache is used), the explicit
    path of :func:`kernel_weights` passes those ``(B, nh, L, S)`` weights through ``probe``.
    """

    supports_mask = True
    supports_causal = True
    supports_cross = True
    eps = 0.0
    chunk_size = 64
    block_size = 1024  # tokens per block of the non-causal stream: a speed knob, not maths

    def prepare_features(self) -> None:
        """Run once per forward call before any feature map (Performer redraws ``W`` here)."""

    @property
    def feature_dim(self) -> int:
        """Number of features ``m`` of :meth:`query_features` and :meth:`key_features`."""
        raise NotImplementedError

    def query_features(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``phi(q)`` of ``(..., hd)`` rows: ``(..., m)``, non-negative.

        ``out``: a contiguous ``(..., m)`` tensor the result may be written into (memory reused
        between blocks when no autograd graph is recorded); implementations may ignore it.
        """
        raise NotImplementedError

    def key_features(self, k: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``phi(k)`` of ``(..., hd)`` rows: ``(..., m)``, non-negative (``out`` as above)."""
        raise NotImplementedError

    def feature_maps(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi(q) (B, nh, L, m), phi(k) (B, nh, S, m))``, non-negative."""
        return self.query_features(q), self.key_features(k)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: RecurrentState | None = None,
    ) -> torch.Tensor:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        if cache is not None:
            if not isinstance(cache, RecurrentState):
                raise TypeError(f"cache must be a RecurrentState, got {type_name(cache)}")
            if context is not None or not is_causal:
                raise ValueError(
                    "cache= is for causal self-attention decoding: call with is_causal=True "
                    f"and no context (got is_causal={is_causal}, context "
                    f"{'given' if context is not None else 'None'})"
                )
            compute = torch.float32 if x.dtype in HALF else x.dtype
            cache.check(x.shape[0], self.num_heads, self.feature_dim, self.head_dim, compute)
        source = x if context is None else context
        keep = self.padding_mask(mask, x.shape[0], x.shape[1], source.shape[1], x.dtype)
        self.prepare_features()
        if not is_causal and not self.probe.recording and x.shape[1] > 0:  # L = 0: below
            out = self._forward_blocks(x, source, keep)  # (B, L, C)
            return out.squeeze(0) if unbatched else out
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        compute = torch.float32 if q.dtype in HALF else q.dtype
        phi_q, phi_k = self.feature_maps(q.to(compute), k.to(compute))
        gone = None if keep is None else ~keep[:, None, :, None]  # (B, 1, S, 1)
        phi_k, v = mask_keys(phi_k, v.to(compute), gone, self.dropout_p)
        v_ext = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, nh, S, dv + 1)
        if self.probe.recording and cache is None:
            attn = self.probe(kernel_weights(phi_q, phi_k, is_causal=is_causal, eps=self.eps))
            out = attn @ v  # (B, nh, L, dv)
        else:
            out, state = kernel_attention(
                phi_q,
                phi_k,
                v_ext,
                is_causal=is_causal,
                eps=self.eps,
                prefix=None if cache is None else cache.state,
                chunk_size=self.chunk_size,
            )
            if cache is not None:
                cache.update(state, x.shape[1])
        return self.finish(out.to(q.dtype), unbatched)

    def _split_heads(self, y: torch.Tensor) -> torch.Tensor:
        return y.view(*y.shape[:-1], self.num_heads, self.head_dim)  # (B, Lb, nh, hd)

    def _forward_blocks(
        self, x: torch.Tensor, source: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """Non-causal attention streamed in blocks of ``Lb = block_size`` tokens: ``(B, L, C)``.

        Keys: ``state = sum_j phi(k_j) [v_j, 1]^T`` accumulates block by block. Queries:
        ``phi(q_i)^T state``, normalised, then ``out_proj``, block by block into the output —
        the sums of :func:`kernel_attention`, grouped by block. When no autograd graph is
        recorded, every block's features overwrite one buffer: a fresh ``(B, Lb, nh, m)``
        tensor per block costs more in page faults than its ``exp``.
        """
        compute = torch.float32 if x.dtype in HALF else x.dtype
        batch, block, m = x.shape[0], self.block_size, self.feature_dim
        graph = torch.is_grad_enabled() and (
            x.requires_grad
            or source.requires_grad
            or any(p.requires_grad for p in self.parameters())
        )
        work = None  # out= takes no autograd: reuse memory only without a graph
        if not graph:
            tokens = min(block, max(x.shape[1], source.shape[1]))
            work = x.new_empty(batch * tokens * self.num_heads * m, dtype=compute)

        def features(feature_map, y: torch.Tensor) -> torch.Tensor:
            shape = (*y.shape[:-1], m)
            out = None if work is None else work[: math.prod(shape)].view(shape)  # (B, Lb, nh, m)
            return feature_map(y.to(compute), out=out)

        num = den = None
        for start in range(0, max(source.shape[1], 1), block):  # one empty block if S = 0
            src = source[:, start : start + block]  # (B, Lb, C_ctx)
            k = self._split_heads(self.k_proj(src))  # (B, Lb, nh, hd)
            v = self._split_heads(self.v_proj(src))  # (B, Lb, nh, dv)
            gone = None if keep is None else ~keep[:, start : start + block, None, None]
            phi_k = features(self.key_features, k)  # (B, Lb, nh, m)
            phi_k, v = mask_keys(phi_k, v.to(compute), gone, self.dropout_p)
            part = phi_k.permute(0, 2, 3, 1) @ v.transpose(1, 2)  # (B, nh, m, dv)
            total = phi_k.sum(1).unsqueeze(-1)  # (B, nh, m, 1)
            num = part if num is None else num + part
            den = total if den is None else den + total
        state = torch.cat([num, den], dim=-1)  # (B, nh, m, dv + 1)
        out = x.new_empty(batch, x.shape[1], self.dim)  # (B, L, C)
        for start in range(0, x.shape[1], block):
            q = self._split_heads(self.q_proj(x[:, start : start + block]))  # (B, Lb, nh, hd)
            phi_q = features(self.query_features, q).transpose(1, 2)  # (B, nh, Lb, m)
            heads_out = _normalise(phi_q @ state, self.eps)  # (B, nh, Lb, dv)
            out[:, start : start + block] = self.finish(heads_out.to(x.dtype), False)
        return out

    @staticmethod
    def _check_chunk(chunk_size: int) -> int:
        return check_positive_int("chunk_size", chunk_size)
