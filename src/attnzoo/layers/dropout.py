"""Dropout that keeps a one-byte mask for backward (module form of the functional dropout)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_probability
from attnzoo.functional.dropout import dropout

__all__ = ["Dropout"]


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that keeps a one-byte mask for backward (see :func:`dropout`).

    A drop-in replacement: same arguments, same outputs and gradients under the same random
    state, same ``state_dict`` and ``repr``; ``isinstance(module, nn.Dropout)`` holds.

    Args:
        p: Probability of zeroing an element, in ``[0, 1]``.
        inplace: Overwrite the input.

    Shape:
        - any -> same shape

    Example:
        >>> Dropout(0.1).eval()(torch.ones(2, 4)).sum().item()
        8.0
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(check_probability("p", p), inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.inplace)
