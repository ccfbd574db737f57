"""Activation checkpointing of an attention core: keep its inputs, recompute it in backward.

The cores of the long-sequence mechanisms (the block-sparse engine's chunks, Sinkhorn's sorted
blocks, Reformer's buckets) hold scores and weights of size ``L x (a few blocks)`` per head for
the backward pass. Recomputing them there, as FlashAttention recomputes its tiles, leaves the
training memory of a layer at that of its projections and output, for one more forward of the
core. Random numbers drawn inside the core (dropout masks, Reformer's rotations, Sinkhorn's
Gumbel noise) are replayed exactly: the recomputation restores the RNG state of the forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["needs_grad", "recomputed"]


def needs_grad(*tensors: Any, module: torch.nn.Module | None = None) -> bool:
    """Whether autograd records a call on ``tensors`` (and ``module``'s parameters)."""
    if not torch.is_grad_enabled():
        return False
    if any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
        return True
    return module is not None and any(p.requires_grad for p in module.parameters())


def recomputed(fn: Callable[..., Any], *args: Any, module: torch.nn.Module | None = None) -> Any:
    """``fn(*args)``, recomputed in the backward pass when autograd records it.

    Without gradients (inference, ``torch.no_grad()``) this is a plain call. Non-tensor
    arguments are passed through; ``fn`` must be deterministic given ``args`` and the RNG state.
    ``module``: the module whose parameters ``fn`` uses (they count as requiring gradients);
    its attribute ``recompute = False`` makes this a plain call too (activations kept).
    """
    if not getattr(module, "recompute", True) or not needs_grad(*args, module=module):
        return fn(*args)
    return checkpoint(fn, *args, use_reentrant=False)
