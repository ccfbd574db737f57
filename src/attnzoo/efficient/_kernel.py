"""Kernelised (linear) attention: the module shared by ``linear`` and ``performer``.

The maths (``out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j)``, causal by
chunked prefix sums, log-scaled keys rescaled online) is the functional core in
``_kernel_core``; the feature maps (``elu + 1``, and Performer's orthogonal random features,
positive softmax features and ReLU features) live in ``_kernel_features``; the decoding state
in ``_recurrent``. All are re-exported here.

The non-causal form streams: keys are projected, mapped and summed into the state block by
block (``block_size`` tokens), then queries are projected, mapped, normalised and sent through
``out_proj`` block by block, so every temporary is a small, cache-resident ``(B, Lb, nh, m)``
block in the projection's own ``(B, L, nh, hd)`` layout (no transposing copies, no
``(B, nh, L, m)`` feature tensor, whose fresh pages alone cost as much as the maths). In
training each block keeps only its input for backward and is recomputed there, so the features
of the whole sequence are never held at once (``recompute = False``, an attribute, keeps them).
"""

from __future__ import annotations

import math

import torch

from attnzoo._checks import check_positive_int, type_name
from attnzoo._recompute import needs_grad, recomputed
from attnzoo.efficient._kernel_core import (
    kernel_attention,
    kernel_weights,
    largest_log_scale,
    log_weight,
    mask_keys,
    normalise,
)
from attnzoo.efficient._kernel_features import (
    elu_features,
    orthogonal_gaussian,
    relu_kernel_features,
    softmax_kernel_features,
)
from attnzoo.efficient._recurrent import RecurrentState
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
    recompute = True  # training: recompute in backward instead of keeping activations
    no_weights_reason = (
        "kernel attention never forms one; its output is phi(q)^T sum_j phi(k_j) v_j^T "
        "(attnzoo.viz.record_attention builds the equivalent normalised phi(q) phi(k)^T, O(L S))"
    )
    eps = 0.0
    chunk_size = 64
    block_size = 1024  # tokens per block of the non-causal stream: a speed knob, not maths

    def prepare_features(self) -> None:
        """Run once per forward call before any feature map (Performer redraws ``W`` here)."""

    def check_decoding(self) -> None:
        """Before a call with ``cache=``: raise if the features could change between steps."""

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

    def scaled_key_features(
        self, k: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(f (..., m), log_scale (..., 1) or None)`` with ``phi(k) = f * exp(log_scale)``.

        What the attention computes with. Features whose range overflows (Performer's softmax
        kernel) return each key's largest feature as a log-scale and ``f <= 1``; the sums stay
        relative to running maxima of the log-scales. The default: ``(phi(k), None)``.
        """
        return self.key_features(k, out=out), None

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
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # refused: see no_weights_reason
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
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
            self.check_decoding()
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
        phi_q = self.query_features(q.to(compute))  # (B, nh, L, m)
        phi_k, log_k = self.scaled_key_features(k.to(compute))  # (B, nh, S, m), (B, nh, S, 1)
        gone = None if keep is None else ~keep[:, None, :, None]  # (B, 1, S, 1)
        phi_k, v = mask_keys(phi_k, v.to(compute), gone, self.dropout_p)
        if log_k is not None and gone is not None:
            log_k = log_k.masked_fill(gone, -math.inf)
        v_ext = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, nh, S, dv + 1)
        if self.probe.recording and cache is None:
            weights = kernel_weights(phi_q, phi_k, is_causal=is_causal, eps=self.eps, log_k=log_k)
            out = self.probe(weights) @ v  # (B, nh, L, dv)
        else:
            out, state, state_log = kernel_attention(
                phi_q,
                phi_k,
                v_ext,
                is_causal=is_causal,
                eps=self.eps,
                prefix=None if cache is None else cache.state,
                chunk_size=self.chunk_size,
                log_k=log_k,
                prefix_log_scale=None if cache is None else cache.log_scale,
            )
            if cache is not None:
                cache.update(state, x.shape[1], state_log)
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
        graph = needs_grad(x, source, module=self)
        work = None  # out= takes no autograd: reuse memory only without a graph
        if not graph:
            tokens = min(block, max(x.shape[1], source.shape[1]))
            work = x.new_empty(batch * tokens * self.num_heads * m, dtype=compute)

        def features(feature_map, y: torch.Tensor):
            """Features of ``y (B, Lb, nh, hd)`` laid out head-major: ``(B, nh, Lb, m)``.

            Head-major features feed the per-head products directly, and their gradients
            come back contiguous: the copy is of the ``hd``-wide input, not of the ``m``-wide
            features (their gradient's copy in backward was 6% of a training step).
            """
            heads_first = y.transpose(1, 2).to(compute)  # (B, nh, Lb, hd)
            shape = (*heads_first.shape[:-1], m)
            out = None if work is None else work[: math.prod(shape)].view(shape)  # (B, nh, Lb, m)
            return feature_map(heads_first, out=out)

        def key_block(src, gone, reference):
            """``phi(K)^T [V, 1]`` of one block, relative to its log-scale: ``(part, log)``."""
            k = self._split_heads(self.k_proj(src))  # (B, Lb, nh, hd)
            v = self._split_heads(self.v_proj(src)).transpose(1, 2)  # (B, nh, Lb, dv)
            phi_k, log_k = features(self.scaled_key_features, k)  # (B, nh, Lb, m), (.., 1)
            phi_k, v = mask_keys(phi_k, v.to(compute), gone, self.dropout_p)
            # (V^T phi(K))^T rather than phi(K)^T V: the gradient of phi(K) comes back
            # contiguous, where the other order returns it transposed (a copy in backward)
            if log_k is None:
                part = (v.transpose(-2, -1) @ phi_k).transpose(-2, -1)  # (B, nh, m, dv)
                return torch.cat([part, phi_k.sum(2).unsqueeze(-1)], -1), None  # (.., dv + 1)
            if gone is not None:  # online rescaling to the largest log-scale so far
                log_k = log_k.masked_fill(gone, -math.inf)
            block_log = largest_log_scale(log_k, reference)  # (B, nh, 1, 1)
            v_ext = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, nh, Lb, dv + 1)
            v_ext = v_ext * log_weight(log_k, block_log)
            part = (v_ext.transpose(-2, -1) @ phi_k).transpose(-2, -1)  # (B, nh, m, dv + 1)
            return part, block_log

        def query_block(queries, state):
            """The layer's output ``(B, Lb, C)`` for one block of queries."""
            q = self._split_heads(self.q_proj(queries))  # (B, Lb, nh, hd)
            phi_q = features(self.query_features, q)  # (B, nh, Lb, m)
            heads_out = normalise(phi_q @ state, self.eps)  # (B, nh, Lb, dv)
            return self.finish(heads_out.to(q.dtype), False)  # (B, Lb, C)

        # with autograd, every block keeps only its inputs and is recomputed in backward: the
        # features of the whole sequence are never held at once
        state = reference = None  # reference: log-scale of state, (B, nh, 1, 1)
        for start in range(0, max(source.shape[1], 1), block):  # one empty block if S = 0
            src = source[:, start : start + block]  # (B, Lb, C_ctx)
            gone = None if keep is None else ~keep[:, None, start : start + block, None]
            part, block_log = recomputed(key_block, src, gone, reference, module=self)
            if block_log is not None and state is not None:
                state = state * log_weight(reference, block_log)
            reference = block_log if block_log is not None else reference
            state = part if state is None else state + part
        out = None  # (B, L, C) in out_proj's dtype (the autocast dtype under autocast)
        for start in range(0, x.shape[1], block):
            part = recomputed(query_block, x[:, start : start + block], state, module=self)
            if out is None:
                out = part.new_empty(batch, x.shape[1], self.dim)
            out[:, start : start + block] = part
        return out

    @staticmethod
    def _check_chunk(chunk_size: int) -> int:
        return check_positive_int("chunk_size", chunk_size)
