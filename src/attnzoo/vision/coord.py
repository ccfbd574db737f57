"""Coordinate attention (Hou et al. 2021): channel gates factorised along height and width."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.vision_utils import LayerType, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["CoordAttention"]

HOU_2021 = Paper(
    title="Coordinate Attention for Efficient Mobile Network Design",
    authors="Hou, Zhou, Feng",
    year=2021,
    url="https://arxiv.org/abs/2103.02907",
)


@VISION.register(
    "coord", paper=HOU_2021, tags=("mixed", "gating"), complexity="O(HWC + (H + W) C^2 / r)"
)
class CoordAttention(VisionModule):
    """Coordinate attention: ``out[c, i, j] = x[c, i, j] * g_h[c, i] * g_w[c, j]``.

    Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
    https://arxiv.org/abs/2103.02907. Strip pooling gives ``z_h = mean_W(x)`` ``(B, C, H, 1)`` and
    ``z_w = mean_H(x)`` ``(B, C, W, 1)`` (paper eqs. 4-5); both are concatenated along the
    spatial axis and transformed together by ``f = act(BN(conv1(cat[z_h, z_w])))`` with
    ``conv1: C -> mip`` (eq. 6); ``f`` is split back, and ``g_h = sigmoid(conv_h(f_h))``,
    ``g_w = sigmoid(conv_w(f_w))`` (eqs. 7-8) gate ``x`` (eq. 9). Per channel, ``out / x`` is the
    rank-1 outer product ``g_h g_w^T``, with entries in ``(0, 1)``.

    Defaults follow the official code (houqb/CoordAttention ``CoordAtt``): all three 1x1 convs
    have biases, ``act`` is h-swish (``nn.Hardswish``), and
    ``mip = max(min_rd_channels, int(C * rd_ratio))`` with ``rd_ratio = 1/32`` and
    ``min_rd_channels = 8``. C=64 gives mip 8 and 1,688 parameters. timm's ``CoordAttn`` rounds
    the width differently (``make_divisible(C / 16 * 2 / 3, 8)``); it agrees with ours for
    ``C <= 280`` (multiples of 8); pass ``rd_channels`` to match it elsewhere. The ``conv1``
    bias sits right before ``bn1``, so in training mode its gradient is zero up to round-off
    (kept, as in the official code).

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` (paper: r = 32).
        rd_channels: Hidden width ``mip``; overrides ``rd_ratio`` and ``min_rd_channels``.
        min_rd_channels: Lower bound on ``mip`` (official code: 8).
        bias: Biases in the three 1x1 convs (official code: True).
        act_layer: Hidden activation (paper: h-swish).
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same (2-D maps only: the gates are per row and per column).

    Example:
        >>> coord = CoordAttention(64)
        >>> coord(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in coord.parameters())
        1688
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 32,
        rd_channels: int | None = None,
        min_rd_channels: int = 8,
        bias: bool = True,
        act_layer: LayerType = nn.Hardswish,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        if rd_channels is not None:
            hidden = check_positive_int("rd_channels", rd_channels)
        else:
            if isinstance(rd_ratio, bool) or not isinstance(rd_ratio, int | float) or rd_ratio <= 0:
                raise ValueError(f"rd_ratio must be a float > 0, got {rd_ratio!r}")
            minimum = check_positive_int("min_rd_channels", min_rd_channels)
            hidden = max(minimum, int(channels * rd_ratio + 1e-9))
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = create_act(act_layer)
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gates ``g_h`` ``(B, C, H, 1)`` and ``g_w`` ``(B, C, 1, W)``."""
        h, w = x.shape[-2:]
        z_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        f = self.act(self.bn1(self.conv1(torch.cat([z_h, z_w], dim=2))))  # (B, mip, H+W, 1)
        f_h, f_w = torch.split(f, [h, w], dim=2)
        g_h = self.gate(self.conv_h(f_h))  # (B, C, H, 1)
        g_w = self.gate(self.conv_w(f_w.transpose(2, 3)))  # (B, C, 1, W)
        return g_h, g_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        g_h, g_w = self.attention(x)
        return x * g_h * g_w
