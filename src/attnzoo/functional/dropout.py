"""Dropout that keeps a one-byte mask for backward, wherever it runs.

PyTorch's CPU dropout multiplies the input by a float noise tensor and keeps that tensor for
backward: four bytes per element (CUDA's fused kernel keeps a one-byte mask). In a long-sequence
Transformer the dropout masks are a large share of what training keeps — at 4K tokens, a quarter
of the LRA text model's activations. :func:`dropout` draws the same noise with the same random
numbers, so its outputs and gradients are bit-identical to :func:`torch.nn.functional.dropout`,
but it keeps only the boolean mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dropout"]


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale`` keeping only the boolean ``keep`` for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale  # a () tensor, not an input: kept on ctx, outside the saved bytes
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


def dropout(
    x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> torch.Tensor:
    """:func:`torch.nn.functional.dropout` that keeps a one-byte mask for backward.

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to Prevent
    Neural Networks from Overfitting", JMLR 2014. Each element is zeroed with probability ``p``
    and the others are scaled by ``1 / (1 - p)``.

    The noise is drawn exactly as PyTorch's CPU kernel draws it (``bernoulli_(1 - p)``, then
    ``div_(1 - p)``), so outputs and gradients equal ``F.dropout``'s bit for bit under the same
    random state. Only the boolean mask is kept for backward (1 byte per element instead of 4).
    Where this saves nothing — no gradient needed, CUDA (whose fused kernel already keeps a
    boolean mask), ``p`` of 0 or 1, ``inplace=True``, or inside ``torch.compile`` —
    ``F.dropout`` itself runs.

    Args:
        x: Any tensor.
        p: Probability of zeroing an element, in ``[0, 1]``.
        training: Identity unless True.
        inplace: Overwrite ``x`` (``F.dropout``'s in-place form).

    Shape:
        - any -> same shape

    Example:
        >>> dropout(torch.ones(2, 3), 0.5, training=False)
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    if not training or p == 0.0:
        return x
    lean = (
        x.requires_grad
        and torch.is_grad_enabled()
        and x.device.type != "cuda"
        and x.is_floating_point()
        and 0.0 < p < 1.0
        and not inplace
        and not torch.compiler.is_compiling()
    )
    if not lean:
        return F.dropout(x, p=p, training=True, inplace=inplace)
    keep_prob = 1.0 - p
    # the kernel's bernoulli_ draws the same numbers into a bool tensor as into a float one
    keep = torch.empty_like(x, dtype=torch.bool).bernoulli_(keep_prob)  # layout of x
    # the kept elements' factor as the kernel's noise holds it: 1 / (1 - p) rounded to x's dtype;
    # x * keep * scale then equals x * noise bit for bit (dropped: x * 0, so inf gives NaN too)
    scale = x.new_ones(()).div_(keep_prob)  # () tensor
    return _MaskedScale.apply(x, keep, scale)
