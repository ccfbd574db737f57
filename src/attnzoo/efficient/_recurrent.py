"""The running state of causal kernel attention for RNN-mode decoding (linear, performer)."""

from __future__ import annotations

import torch

from attnzoo._checks import type_name

__all__ = ["RecurrentState"]


class RecurrentState:
    """Running state of causal kernel attention for RNN-mode (token-by-token) decoding.

    Holds ``S = sum_j phi(k_j) [v_j, 1]^T`` of shape ``(B, nh, m, dv + 1)`` over every token fed
    so far — constant memory, whatever the length. Pass the same object as ``cache=`` to
    successive causal calls of ``linear`` or ``performer`` (self-attention); the outputs equal
    one causal call on the concatenated sequence. Mechanisms whose key features carry a
    per-key log-scale (Performer's softmax kernel) store ``S`` relative to the largest
    log-scale seen so far, ``log_scale`` (``(B, nh, 1, 1)``; ``-inf`` before any real key):
    the true sum is ``S * exp(log_scale)``, which may lie far outside the float range. The state
    keeps the autograd graph when the inputs carry gradients; decode under ``torch.no_grad()``
    to keep it flat.

    Shape:
        - state: ``(B, nh, m, dv + 1)`` or None before the first call
        - log_scale: ``(B, nh, 1, 1)`` or None (features without a log-scale)

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
        self.log_scale: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (a ``(B',)`` long tensor), in that order: beam search."""
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point():
            raise TypeError(f"index must be a 1-D integer tensor, got {type_name(index)}")
        if self.state is not None:
            index = index.to(self.state.device)
            self.state = self.state.index_select(0, index)  # (B', nh, m, dv + 1)
            if self.log_scale is not None:
                self.log_scale = self.log_scale.index_select(0, index)  # (B', nh, 1, 1)

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

    def update(
        self, state: torch.Tensor, new_tokens: int, log_scale: torch.Tensor | None = None
    ) -> None:
        """Replace the state (and its ``log_scale``) by new ones that include the old state."""
        if self.state is not None and state.shape != self.state.shape:
            raise ValueError(
                f"the new state {tuple(state.shape)} does not match the cached "
                f"{tuple(self.state.shape)}; call reset() to start a new sequence"
            )
        self.state, self.log_scale = state, log_scale
        self._len += new_tokens
