"""Stochastic depth: drop whole residual branches per sample (Huang et al. 2016)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_probability

__all__ = ["DropPath", "drop_path"]


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero the residual branch ``x`` of random samples; rescale the others by ``1 / (1 - p)``.

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", 2016,
    https://arxiv.org/abs/1603.09382 (the per-sample form used by ViT/DeiT and timm).

    Args:
        x: ``(B, ...)`` output of a residual branch.
        p: Probability of dropping a sample's branch, in ``[0, 1)``.
        training: Identity unless True.

    Example:
        >>> drop_path(torch.ones(2, 3), 0.5, training=False)
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    check_probability("p", p)
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # (B, 1, ..., 1)
    return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`.

    Args:
        p: Drop probability (0 disables it).

    Shape:
        - ``(B, ...) -> (B, ...)``

    Example:
        >>> DropPath(0.1).eval()(torch.ones(2, 4)).sum().item()
        8.0
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = check_probability("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
