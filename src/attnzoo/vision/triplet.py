"""Triplet attention (Misra et al. 2021): three Z-pool + 7x7 conv gates on rotated views."""

from __future__ import annotations

import torch

from attnzoo.layers.vision_utils import LayerType
from attnzoo.layers.zpool import ZPoolGate
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["TripletAttention"]

MISRA_2021 = Paper(
    title="Rotate to Attend: Convolutional Triplet Attention Module",
    authors="Misra, Nalamada, Arasanipalai, Hou",
    year=2021,
    url="https://arxiv.org/abs/2010.03045",
)


@VISION.register(
    "triplet",
    paper=MISRA_2021,
    tags=("mixed", "gating"),
    complexity="O(HWC + k^2 (HW + HC + CW))",
)
class TripletAttention(VisionModule):
    """Triplet attention: the mean of three gated views, ``out = x * (g_cw + g_hc + g_hw) / 3``.

    Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention
    Module", WACV 2021, https://arxiv.org/abs/2010.03045. Each branch is one
    :class:`~attnzoo.layers.zpool.ZPoolGate` (Z-pool ``[max, mean]`` over the leading dim, ``k x k``
    conv 2 -> 1 without bias, ``BatchNorm2d(1, momentum=0.01)``, sigmoid) applied to a rotated
    view of ``x``, exactly as the official code (landskape-ai/triplet-attention):

    - ``cw``: ``x`` permuted to ``(B, H, C, W)``: pools over ``H``, gates the ``(C, W)`` plane;
    - ``hc``: ``x`` permuted to ``(B, W, H, C)``: pools over ``W``, gates the ``(H, C)`` plane;
    - ``hw``: ``x`` itself: pools over ``C``, gates the ``(H, W)`` plane (CBAM's spatial gate).

    Each gated view is permuted back and the three are averaged (two with ``no_spatial``).
    Parameters: 3 x (2 k^2 + 2) = 300 for k = 7, whatever ``C``.

    Args:
        channels: Input channels ``C`` (the parameters do not depend on it).
        kernel_size: Odd kernel of the three convs (paper: 7).
        no_spatial: Drop the ``hw`` branch (paper ablation; 200 parameters).
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same (2-D maps only: the branches rotate ``C``, ``H``, ``W``).

    Example:
        >>> triplet = TripletAttention(64)
        >>> triplet(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in triplet.parameters())
        300
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 7,
        no_spatial: bool = False,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        self.no_spatial = bool(no_spatial)
        self.cw = ZPoolGate(kernel_size, gate_layer=gate_layer)
        self.hc = ZPoolGate(kernel_size, gate_layer=gate_layer)
        self.hw = None if self.no_spatial else ZPoolGate(kernel_size, gate_layer=gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x_cw = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)  # (B, C, H, W)
        x_hc = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)  # (B, C, H, W)
        if self.hw is None:
            return (x_cw + x_hc) / 2
        return (x_cw + x_hc + self.hw(x)) / 3
