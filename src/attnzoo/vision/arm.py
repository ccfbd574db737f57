"""BiSeNet Attention Refinement Module (Yu et al. 2018): a pooled channel gate on a conv feature."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.channel_ops import scale_channels, spatial_mean
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.vision_utils import LayerType, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["YU_2018", "AttentionRefinement"]

YU_2018 = Paper(
    title="BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
    authors="Yu, Wang, Peng, Gao, Yu, Sang",
    year=2018,
    url="https://arxiv.org/abs/1808.00897",
)


@VISION.register(
    "arm",
    paper=YU_2018,
    tags=("structural", "gating"),
    complexity="O(9 HW C C_out + C_out^2)",
)
class AttentionRefinement(VisionModule):
    r"""Attention Refinement Module: ``f * sigmoid(BN(conv1x1(GAP(f))))`` with ``f = conv(x)``.

    Yu, Wang, Peng, Gao, Yu, Sang, "BiSeNet: Bilateral Segmentation Network for Real-time
    Semantic Segmentation", ECCV 2018, https://arxiv.org/abs/1808.00897 (Fig. 3a). The context
    path's features are refined by a channel gate computed from their global average:
    ``a = sigmoid(BN(W GAP(f)))``, ``W`` a 1x1 conv ``C_out -> C_out`` without bias, and the
    output is ``f * a`` with ``a`` in ``(0, 1)`` and constant over space. Every public
    implementation (CoinCheung/BiSeNet, STDC-Seg, mmsegmentation) puts a 3x3 conv + BN + ReLU
    ``C -> C_out`` in front, so ``f = ConvBNReLU(x)`` by default (41,216 parameters for
    ``C = C_out = 64``); ``with_conv=False`` gives the gate of the paper's figure alone
    (``f = x``, 4,224 parameters for ``C = 64``). Submodules: ``conv`` (the 3x3 ConvBNReLU),
    ``attn_conv`` and ``attn_norm`` (the 1x1 conv and its BN), ``gate``. The gate's BN sees one
    value per channel and sample, so training needs a batch of at least 2.

    Formula:
        $$
        F = \mathrm{ConvBNReLU}(X), \qquad Y = F \odot \sigma\big(\mathrm{BN}(W\,
        \mathrm{GAP}(F))\big)
        $$

    Args:
        channels: Input channels ``C``.
        out_channels: Output channels ``C_out``; default ``C`` (then the shape is preserved).
        with_conv: Put the 3x3 ConvBNReLU in front of the gate (all implementations).
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> ``(B, C_out, H, W)``

    Example:
        >>> arm = AttentionRefinement(64)
        >>> sum(p.numel() for p in arm.parameters())
        41216
        >>> arm(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        out_channels: int | None = None,
        with_conv: bool = True,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        out = channels if out_channels is None else check_positive_int("out_channels", out_channels)
        if not with_conv and out != channels:
            raise ValueError(
                f"with_conv=False keeps the channels, so out_channels must equal channels="
                f"{channels}, got {out}; use with_conv=True to change the width"
            )
        self.out_channels = out
        self.preserves_shape = out == channels
        self.conv = ConvNormAct(channels, out, 3) if with_conv else nn.Identity()
        self.attn_conv = nn.Conv2d(out, out, 1, bias=False)
        self.attn_norm = nn.BatchNorm2d(out)
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """The channel gate ``(B, C_out)`` for the refined feature ``feat``."""
        pooled = spatial_mean(feat)[..., None, None]  # (B, C_out, 1, 1)
        return self.gate(self.attn_norm(self.attn_conv(pooled))).flatten(1)  # (B, C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        feat = self.conv(x)
        return scale_channels(feat, self.attention(feat))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_channels={self.out_channels}"
