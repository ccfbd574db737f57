"""Split attention (ResNeSt, Zhang et al. 2020): attention across the radix splits of a conv."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.vision_utils import LayerType, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule
from attnzoo.vision.sk import BranchAttention

__all__ = ["ZHANG_2020", "SplitAttention"]

ZHANG_2020 = Paper(
    title="ResNeSt: Split-Attention Networks",
    authors="Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller, Manmatha, Li, Smola",
    year=2020,
    url="https://arxiv.org/abs/2004.08955",
)


@VISION.register(
    "split",
    paper=ZHANG_2020,
    tags=("channel", "multi_branch"),
    complexity="O(HW k^2 C^2 / K + C^2 R)",
)
class SplitAttention(VisionModule):
    r"""Split attention: ``sum_r a_r * U_r`` over the ``R`` radix splits of a grouped conv.

    Zhang et al., "ResNeSt: Split-Attention Networks", 2020, https://arxiv.org/abs/2004.08955
    (``SplAtConv2d`` of the official code). A ``k x k`` convolution ``C -> R C`` with ``K R``
    groups (``conv``: conv + BN + ReLU) gives ``R`` splits ``U_r`` per cardinal group; the splits
    are summed, pooled and passed through ``fc1`` (1x1, ``K`` groups, bias) -> BN -> ReLU ->
    ``fc2`` (1x1, ``K`` groups, bias) ``-> R C`` logits; the r-softmax over the radix (a sigmoid
    when ``R = 1``, an SE-like gate on the conv output) gives weights that sum to 1 per channel,
    and ``out = sum_r a_r U_r`` (paper section 3). The hidden width is
    ``max(C R / 4, 32)`` (official ``reduction_factor=4``). Defaults are those of the ResNeSt
    models: radix 2, cardinality 1, 3x3, no conv bias, BN (43,488 parameters for ``C = 64``;
    43,168 with ``norm=False``). Equals timm's ``SplitAttn(C, radix=R, groups=K,
    norm_layer=nn.BatchNorm2d)``; note that timm's ``rd_channels`` counts per radix while ours
    is the full hidden width. Like SK, this module replaces a convolution (the 3x3 of the
    ResNeSt bottleneck), so the output is not ``x`` rescaled. Submodules: ``conv``
    (``ConvNormAct``) and ``attn`` (:class:`~attnzoo.vision.sk.BranchAttention`, shared with SK,
    holding ``fc1``/``norm``/``fc2`` and the r-softmax ``gate``). 2-D maps only.

    Formula:
        $$
        a_r = \mathrm{softmax}_r\Big(\mathrm{fc}_2\big(\delta(\mathrm{BN}(\mathrm{fc}_1(\mathrm{GAP}
                a_r =
        \mathrm{softmax}_r\Big(\mathrm{fc}_2\big(\delta(\mathrm{BN}(\mathrm{fc}_1(\mathrm{GAP}(
        \textstyle\sum_r U_r))))\big)\Big), \qquad Y = \textstyle\sum_r a_r \odot U_r
        $$

        over the $R$ radix splits $U_r$ of each cardinal group (a sigmoid when $R = 1$).

    Args:
        channels: Input and output channels ``C``; divisible by ``radix * cardinality``.
        radix: Splits ``R`` per cardinal group.
        cardinality: Cardinal groups ``K``.
        kernel_size: Kernel of the split convolution (odd).
        dilation: Dilation of the split convolution.
        rd_ratio: ``fc1`` width is ``max(int(C * R * rd_ratio), min_channels)``.
        rd_channels: ``fc1`` width; overrides ``rd_ratio`` and ``min_channels``.
        min_channels: Lower bound of the ``fc1`` width.
        bias: Bias in the split convolution.
        norm: Batch norm after the split convolution and after ``fc1``.
        act_layer: Activation after the convolution and after ``fc1``.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> splat = SplitAttention(64)
        >>> splat(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        radix: int = 2,
        cardinality: int = 1,
        kernel_size: int = 3,
        dilation: int = 1,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        min_channels: int = 32,
        bias: bool = False,
        norm: bool = True,
        act_layer: LayerType = "relu",
    ) -> None:
        super().__init__(channels)
        self.radix = check_positive_int("radix", radix)
        self.cardinality = check_positive_int("cardinality", cardinality)
        if channels % (radix * cardinality):
            raise ValueError(
                f"channels must be divisible by radix * cardinality = {radix * cardinality}, "
                f"got channels={channels}"
            )
        if check_positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if rd_channels is None:
            hidden = max(
                reduced_channels(channels * radix, rd_ratio, None, minimum=0),
                check_positive_int("min_channels", min_channels),
            )
        else:
            hidden = check_positive_int("rd_channels", rd_channels)
        if hidden % cardinality:
            raise ValueError(
                f"the fc1 width {hidden} must be divisible by cardinality={cardinality}; "
                "pass rd_channels"
            )
        self.conv = ConvNormAct(
            channels,
            channels * radix,
            kernel_size,
            groups=cardinality * radix,
            dilation=check_positive_int("dilation", dilation),
            bias=bias,
            norm=norm,
            act_layer=act_layer,
        )
        self.attn = BranchAttention(
            channels,
            radix,
            hidden,
            groups=cardinality,
            bias=True,
            norm=norm,
            act_layer=act_layer,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        u = self.conv(x)  # (B, R*C, H, W)
        splits = u.unflatten(1, (self.radix, self.channels))  # (B, R, C, H, W)
        return self.attn(splits)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, radix={self.radix}, cardinality={self.cardinality}"
