"""STDC-Seg attention fusion (Fan et al. 2021): ARM-refined context path fused with FFM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int
from attnzoo.layers.channel_ops import spatial_mean
from attnzoo.layers.conv import ConvNormAct
from attnzoo.registry import VISION, Paper
from attnzoo.vision.arm import AttentionRefinement
from attnzoo.vision.base import VisionModule
from attnzoo.vision.ffm import FeatureFusion

__all__ = ["FAN_2021", "STDCFusion"]

FAN_2021 = Paper(
    title="Rethinking BiSeNet For Real-time Semantic Segmentation",
    authors="Fan, Lai, Huang, Wei, Chai, Luo, Wei",
    year=2021,
    url="https://arxiv.org/abs/2104.13188",
)


@VISION.register(
    "stdc_fusion",
    paper=FAN_2021,
    tags=("structural", "fusion", "gating"),
    complexity="O(HW C^2)",
)
class STDCFusion(VisionModule):
    r"""The attention and fusion head of STDC-Seg: two ARMs, a global context and an FFM.

    Fan, Lai, Huang, Wei, Chai, Luo, Wei, "Rethinking BiSeNet For Real-time Semantic
    Segmentation", CVPR 2021, https://arxiv.org/abs/2104.13188. STDC-Seg's attention parts are
    BiSeNet's Attention Refinement Module and Feature Fusion Module, unchanged (the ``arm`` and
    ``ffm`` entries); this module wires them as STDC-Seg's ``ContextPath`` + ``ffm`` do
    (MichaelFan01/STDC-Seg ``models/model_stages.py``):

    - ``g = ConvBNReLU_1x1(GAP(x32))`` (global context, ``C32 -> m``);
    - ``y32 = ConvBNReLU_3x3(up(ARM(x32) + g))`` at 1/16 resolution;
    - ``y16 = ConvBNReLU_3x3(up(ARM(x16) + y32))`` at 1/8 resolution;
    - ``out = FFM(x8, y16)``, i.e. ``f * (1 + a)`` with ``f = ConvBNReLU_1x1(cat[x8, y16])``.

    ``up`` is nearest-neighbour up-sampling to the next map's size, as in the official code.
    ``channels = C`` is the width of the 1/8 map; the defaults are STDC-Seg's pyramid widths
    ``C16 = 2C``, ``C32 = 4C``, ``m = C/2``, ``C_out = C``: ``STDCFusion(256)`` is the head of
    STDC1/STDC2-Seg (``C8, C16, C32 = 256, 512, 1024``, ``m = 128``, ``FFM(384, 256)``) with
    2,361,600 parameters. Submodules: ``conv_avg``, ``arm32``, ``conv_head32``, ``arm16``,
    ``conv_head16``, ``ffm``. The BNs on pooled vectors need a training batch of at least 2.

    Inputs (three maps, not ``(B, C, H, W) -> (B, C, H, W)``): ``forward(x8, x16, x32)`` takes the
    backbone features at strides 8, 16 and 32 (any spatial sizes; each is up-sampled to the next)
    and returns the fused feature at the size of ``x8``. :attr:`input_channels` is
    ``(C, C16, C32)``.

    Formula:
        $$
        \begin{aligned}
        g &= \mathrm{CBR}_{1\times1}(\mathrm{GAP}(X_{32})), \quad
        Y_{32} = \mathrm{CBR}_{3\times3}(\mathrm{Up}(\mathrm{ARM}(X_{32}) + g)) \\
        Y_{16} &= \mathrm{CBR}_{3\times3}(\mathrm{Up}(\mathrm{ARM}(X_{16}) + Y_{32})), \quad
        Y = \mathrm{FFM}(X_8, Y_{16})
        \end{aligned}
        $$

    Args:
        channels: Channels ``C`` of the 1/8 map ``x8``.
        channels_16: Channels of ``x16``; default ``2 C``.
        channels_32: Channels of ``x32``; default ``4 C``.
        mid_channels: Width ``m`` of the context path; default ``C // 2``.
        out_channels: Output channels; default ``C``.
        rd_ratio: Reduction of the FFM gate (1/4).

    Shape:
        - x8: ``(B, C, H, W)``; x16: ``(B, C16, H', W')``; x32: ``(B, C32, H'', W'')`` ->
          ``(B, C_out, H, W)``

    Example:
        >>> head = STDCFusion(16)
        >>> x8, x16 = torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)
        >>> head(x8, x16, torch.randn(2, 64, 2, 2)).shape
        torch.Size([2, 16, 8, 8])
    """

    num_inputs = 3
    preserves_shape = False

    def __init__(
        self,
        channels: int,
        *,
        channels_16: int | None = None,
        channels_32: int | None = None,
        mid_channels: int | None = None,
        out_channels: int | None = None,
        rd_ratio: float = 1 / 4,
    ) -> None:
        super().__init__(check_positive_int("channels", channels, minimum=2))
        c16 = check_positive_int("channels_16", channels_16 or 2 * channels)
        c32 = check_positive_int("channels_32", channels_32 or 4 * channels)
        mid = check_positive_int("mid_channels", mid_channels or channels // 2)
        out = check_positive_int("out_channels", out_channels or channels)
        self.input_channels = (channels, c16, c32)
        self.out_channels = out
        self.conv_avg = ConvNormAct(c32, mid, 1)
        self.arm32 = AttentionRefinement(c32, out_channels=mid)
        self.conv_head32 = ConvNormAct(mid, mid, 3)
        self.arm16 = AttentionRefinement(c16, out_channels=mid)
        self.conv_head16 = ConvNormAct(mid, mid, 3)
        self.ffm = FeatureFusion(
            channels + mid, out_channels=out, spatial_channels=channels, rd_ratio=rd_ratio
        )

    def context_path(self, x16: torch.Tensor, x32: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """The refined context feature ``y16`` ``(B, m, *size)`` from the 1/16 and 1/32 maps."""
        context = self.conv_avg(spatial_mean(x32)[..., None, None])  # (B, m, 1, 1)
        y32 = self.arm32(x32) + context
        y32 = self.conv_head32(F.interpolate(y32, size=x16.shape[-2:], mode="nearest"))
        y16 = self.arm16(x16) + y32
        return self.conv_head16(F.interpolate(y16, size=size, mode="nearest"))

    def forward(self, x8: torch.Tensor, x16: torch.Tensor, x32: torch.Tensor) -> torch.Tensor:
        c8, c16, c32 = self.input_channels
        self.check_input(x8, "x8", c8)
        self.check_input(x16, "x16", c16)
        self.check_input(x32, "x32", c32)
        if not x8.shape[0] == x16.shape[0] == x32.shape[0]:
            raise ValueError(
                "x8, x16 and x32 must share the batch size, got shapes "
                f"{tuple(x8.shape)}, {tuple(x16.shape)}, {tuple(x32.shape)}"
            )
        return self.ffm(x8, self.context_path(x16, x32, x8.shape[-2:]))

    def extra_repr(self) -> str:
        return f"input_channels={self.input_channels}, out_channels={self.out_channels}"
