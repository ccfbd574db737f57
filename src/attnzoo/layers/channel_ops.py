"""Channel-gating primitives: pool a map to one value per channel, scale a map per channel.

Used by the channel-attention modules (SE, ECA, GCT, GSoP, FcaNet, SRM, ...). Both work on
channels-first maps of any spatial rank: ``(B, C, L)``, ``(B, C, H, W)``, ``(B, C, D, H, W)``.
"""

from __future__ import annotations

import torch

__all__ = ["scale_channels", "spatial_mean"]


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: the mean of ``x`` over every dim after the channel dim.

    Args:
        x: ``(B, C, *spatial)`` map.

    Returns:
        ``(B, C)`` channel descriptors.

    Example:
        >>> spatial_mean(torch.ones(2, 3, 4, 5)).shape
        torch.Size([2, 3])
    """
    return x.mean(dim=tuple(range(2, x.dim())))


def scale_channels(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``x * weights`` with one weight per (sample, channel), broadcast over the spatial dims.

    Args:
        x: ``(B, C, *spatial)`` map.
        weights: ``(B, C)`` gates.

    Returns:
        ``(B, C, *spatial)``.

    Example:
        >>> scale_channels(torch.ones(1, 2, 3), torch.tensor([[2.0, 3.0]]))[0, :, 0]
        tensor([2., 3.])
    """
    return x * weights.view(*weights.shape, *([1] * (x.dim() - 2)))  # (B, C, 1, ..., 1)
