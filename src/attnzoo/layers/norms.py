"""Normalisation layers for channels-first maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (per pixel).

    Args:
        channels: ``C``.
        eps: Added to the variance (PyTorch's 1e-5 by default).

    Shape:
        - ``(B, C, H, W) -> (B, C, H, W)``

    Example:
        >>> LayerNorm2d(8)(torch.randn(2, 8, 3, 3)).shape
        torch.Size([2, 8, 3, 3])
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)
