"""Coordinate attention (Hou et al. 2021): channel gates factorised along height and width."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.vision_utils import LayerType, check_spatial_dims, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["CoordAttention"]

AXES = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}  # one gate conv per axis

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
    r"""Coordinate attention: ``out[c, i, j] = x[c, i, j] * g_h[c, i] * g_w[c, j]``.

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

    Formula:
        $$
        \begin{gathered}
        z^h_c(i) = \frac{1}{W}\sum_j x_c(i, j), \quad z^w_c(j) = \frac{1}{H}\sum_i x_c(i, j), \quad
        f = \delta(\mathrm{BN}(F_1([z^h, z^w]))) \\
        y_c(i, j) = x_c(i, j)\; \sigma(F_h(f^h))_c(i)\; \sigma(F_w(f^w))_c(j)
        \end{gathered}
        $$

        with $\delta$ = h-swish.

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` (paper: r = 32).
        rd_channels: Hidden width ``mip``; overrides ``rd_ratio`` and ``min_rd_channels``.
        min_rd_channels: Lower bound on ``mip`` (official code: 8).
        bias: Biases in the three 1x1 convs (official code: True).
        act_layer: Hidden activation (paper: h-swish).
        gate_layer: Gate activation.
        spatial_dims: Spatial dims of the input: 1, 2 (the paper's images) or 3.

    Shape:
        - x: ``(B, C, H, W)`` -> same. With ``spatial_dims=3``, ``(B, C, D, H, W)``: one gate
          per axis (``conv_d``, ``conv_h``, ``conv_w``), each strip pooled over the other two
          axes; with ``spatial_dims=1``, ``(B, C, L)``: a single per-position gate ``conv_l``
          (no other axis to pool over). An instance takes the layout it was built for.

    Example:
        >>> coord = CoordAttention(64)
        >>> coord(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in coord.parameters())
        1688
    """

    spatial_dims = (1, 2, 3)  # each instance takes the one layout its spatial_dims= built

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
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(channels)
        self.spatial_dims = (check_spatial_dims(spatial_dims),)  # this instance's layout
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
        self.axes = AXES[self.spatial_dims[0]]
        for axis in self.axes:  # conv_h, conv_w for images (the official names)
            setattr(self, f"conv_{axis}", nn.Conv2d(hidden, channels, 1, bias=bias))
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One gate per spatial axis, e.g. ``g_h (B, C, H, 1)`` and ``g_w (B, C, 1, W)``."""
        batch, channels, *spatial = x.shape
        dims = len(spatial)
        strips = []  # each axis: the mean over every other spatial axis, (B, C, n_axis)
        for axis in range(dims):
            others = [2 + other for other in range(dims) if other != axis]
            strips.append(x.mean(dim=others) if others else x)
        joint = torch.cat(strips, dim=2).unsqueeze(-1)  # (B, C, sum n, 1)
        f = self.act(self.bn1(self.conv1(joint)))  # (B, mip, sum n, 1)
        gates = []
        for axis, part in enumerate(torch.split(f, spatial, dim=2)):  # (B, mip, n_axis, 1)
            gate = self.gate(getattr(self, f"conv_{self.axes[axis]}")(part))  # (B, C, n, 1)
            shape = [batch, channels] + [1] * dims
            shape[2 + axis] = spatial[axis]
            gates.append(gate.view(shape))  # (B, C, 1.., n_axis, ..1)
        return tuple(gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        for gate in self.attention(x):
            x = x * gate
        return x
