"""Residual Attention Network (Wang et al. 2017): trunk x (1 + soft mask) from an hourglass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["WANG_2017", "PreActBottleneck", "ResidualAttention"]

WANG_2017 = Paper(
    title="Residual Attention Network for Image Classification",
    authors="Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang",
    year=2017,
    url="https://arxiv.org/abs/1704.06904",
)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit ``x + conv3(a(conv2(a(conv1(a(x))))))``.

    ``a = ReLU(BN(.))``; ``conv1``: 1x1 ``C -> C/4``, ``conv2``: 3x3 ``C/4 -> C/4``, ``conv3``:
    1x1 ``C/4 -> C``, all without bias (He et al. 2016, "Identity Mappings in Deep Residual
    Networks"). This is the unit of the Residual Attention Network; the BN + ReLU that the Caffe
    model attaches to the previous sum is the first layer here. ``17 C^2 / 16 + 3 C`` parameters
    for the default width (4,544 for ``C = 64``).

    Args:
        channels: Input and output channels ``C``.
        rd_ratio: Bottleneck width as a fraction of ``C`` (1/4).

    Shape:
        - ``(B, C, H, W) -> (B, C, H, W)``

    Example:
        >>> PreActBottleneck(16)(torch.randn(2, 16, 5, 5)).shape
        torch.Size([2, 16, 5, 5])
    """

    def __init__(self, channels: int, *, rd_ratio: float = 1 / 4) -> None:
        super().__init__()
        width = reduced_channels(channels, rd_ratio, None)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return x + out


def _units(channels: int, count: int, rd_ratio: float) -> nn.Sequential:
    return nn.Sequential(*(PreActBottleneck(channels, rd_ratio=rd_ratio) for _ in range(count)))


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    # The Caffe "Interp" layer: bilinear with corner alignment, to a reference blob's size.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@VISION.register(
    "residual_attention",
    paper=WANG_2017,
    tags=("mixed", "gating"),
    complexity="O(HWC^2)",
)
class ResidualAttention(VisionModule):
    r"""Attention module of the Residual Attention Network: ``H = (1 + M(x)) * T(x)``.

    Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention Network for Image
    Classification", 2017, https://arxiv.org/abs/1704.06904. ``p`` pre-processing residual units
    feed two branches. The trunk branch ``T`` is ``t`` units. The soft mask branch ``M`` is an
    hourglass: ``pool_levels`` times max-pool (3x3, stride 2) followed by ``r`` units (``2r`` at
    the lowest resolution), a skip unit at every level but the lowest, and on the way up bilinear
    up-sampling (``align_corners=True``, the Caffe ``Interp`` layer) to the mirrored level plus
    its skip, followed by ``r`` units; finally up-sampling to the trunk size and
    ``BN-ReLU-conv1x1-BN-ReLU-conv1x1-sigmoid`` (convs without bias), so ``M`` lies in ``(0, 1)``.
    Attention residual learning (paper eq. 3) gives ``H = (1 + M) * T``; ``p`` post-processing
    units follow. ``residual_learning=False`` gives the paper's "naive attention learning"
    baseline ``H = M * T``.

    Defaults are the paper's ``p = 1, t = 2, r = 1`` with one pooling level (the 14x14 stage of
    Attention-56; its 56x56 and 28x28 stages use 3 and 2 levels). Units are pre-activation
    bottlenecks :class:`PreActBottleneck` (``C -> C/4 -> C``). The structure follows the official
    Caffe model (``Attention-56-deploy.prototxt``): the mask branch starts from the output of the
    first pre-processing unit and its last up-sampling only uses the trunk size (nothing is
    added there). Deviation: max-pooling pads by 1 (floor mode, as the common PyTorch ports do)
    where Caffe uses ceil mode without padding; the pooled sizes agree for even maps but the
    windows are shifted by one pixel, and unlike Caffe any map down to ``1x1`` works. With the
    defaults and ``C = 64``
    the module has 35,712 parameters (6 units of 4,544 plus the 8,448-parameter mask head).
    Spatial size is preserved for any ``H, W`` (a ``1x1`` map pools to ``1x1``).

    Formula:
        $$
        H(X) = \big(1 + M(X)\big) \odot T(X)
        $$

        with $T$ the trunk branch and $M \in (0, 1)$ the soft mask branch (an hourglass ending in a
        sigmoid).

    Args:
        channels: Input and output channels ``C`` (at least 4 for the ``C/4`` bottleneck).
        p: Pre-processing (and post-processing) residual units.
        t: Trunk-branch residual units.
        r: Residual units between adjacent poolings in the mask branch.
        pool_levels: Down-sampling steps in the mask branch.
        rd_ratio: Bottleneck width of the units as a fraction of ``C``.
        residual_learning: ``(1 + M) * T`` (paper) if True, else ``M * T``.
        gate_layer: Mask activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> ra = ResidualAttention(64)
        >>> sum(p.numel() for p in ra.parameters())
        35712
        >>> ra(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        p: int = 1,
        t: int = 2,
        r: int = 1,
        pool_levels: int = 1,
        rd_ratio: float = 1 / 4,
        residual_learning: bool = True,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        p = check_positive_int("p", p, minimum=0)
        t = check_positive_int("t", t)
        r = check_positive_int("r", r)
        levels = check_positive_int("pool_levels", pool_levels)
        self.residual_learning = bool(residual_learning)
        self.pre = _units(channels, p, rd_ratio)
        self.trunk = _units(channels, t, rd_ratio)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        # down[i] runs after the (i + 1)-th pooling; the lowest level has 2r units.
        self.down = nn.ModuleList(
            _units(channels, 2 * r if i == levels - 1 else r, rd_ratio) for i in range(levels)
        )
        self.skips = nn.ModuleList(_units(channels, 1, rd_ratio) for _ in range(levels - 1))
        self.up = nn.ModuleList(_units(channels, r, rd_ratio) for _ in range(levels - 1))
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1, bias=False),
        )
        self.gate = create_act(gate_layer, "gate_layer")
        self.post = _units(channels, p, rd_ratio)

    def soft_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The mask ``M`` in ``(0, 1)`` for the output of the pre-processing units."""
        feats = []
        out = x
        for units in self.down:
            out = units(self.pool(out))
            feats.append(out)
        # Top-down: up-sample to the mirrored level, add its skip unit, refine.
        for level in range(len(self.down) - 2, -1, -1):
            skip = self.skips[level](feats[level])
            out = self.up[level](_upsample(out, skip.shape[-2:]) + skip)
        out = _upsample(out, x.shape[-2:])
        return self.gate(self.mask_head(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.pre(x)
        trunk = self.trunk(x)
        mask = self.soft_mask(x)
        out = trunk * (1 + mask) if self.residual_learning else trunk * mask
        return self.post(out)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, pool_levels={len(self.down)}, "
            f"residual_learning={self.residual_learning}"
        )
