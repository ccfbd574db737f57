"""BiSeNet Feature Fusion Module (Yu et al. 2018): fuse two paths, re-weight channels by (1 + a)."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int, type_name
from attnzoo.layers.channel_ops import scale_channels, spatial_mean
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.mlp import SqueezeMlp
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION
from attnzoo.vision.arm import YU_2018
from attnzoo.vision.base import VisionModule

__all__ = ["FeatureFusion"]


@VISION.register(
    "ffm",
    paper=YU_2018,
    tags=("structural", "fusion", "gating"),
    complexity="O(HW C C_out + C_out^2/r)",
)
class FeatureFusion(VisionModule):
    r"""Feature Fusion Module: ``f * (1 + a)``, ``f = ConvBNReLU(cat[x_sp, x_cp])``, SE-style ``a``.

    Yu, Wang, Peng, Gao, Yu, Sang, "BiSeNet: Bilateral Segmentation Network for Real-time
    Semantic Segmentation", ECCV 2018, https://arxiv.org/abs/1808.00897 (Fig. 3b). The spatial-path
    and context-path features are concatenated along channels and mixed by a 1x1 conv + BN + ReLU
    ``C -> C_out``; a gate ``a = sigmoid(fc2(relu(fc1(GAP(f)))))`` (``C_out -> C_out/r -> C_out``,
    no biases, ``r = 4``) re-weights the channels and the result is ``f + f * a``, so
    ``f <= out < 2 f`` (``f >= 0`` after the ReLU). Defaults follow the paper and the
    STDC-Seg / mmsegmentation ``FeatureFusionModule`` (10,368 parameters for ``C = 128``,
    ``C_out = 64``). Not offered: CoinCheung's current variant (a 1x1 conv + BN instead of the
    two-layer gate) and mmseg-BiSeNetV1's (ConvModule with ReLU before the sigmoid).
    ``fc1``/``fc2`` are ``nn.Linear`` in ``self.mlp`` (the same map as 1x1 convs on the pooled
    vector: copy weights with ``weight[..., None, None]``).

    Inputs and channel split (not ``(B, C, H, W) -> (B, C, H, W)``): ``forward(x_spatial,
    x_context)`` takes two maps of the same ``(B, ., H, W)``; ``channels = C`` is their **total**
    width, ``x_spatial`` has ``spatial_channels`` (default ``C // 2``) channels and ``x_context``
    the other ``C - spatial_channels``. The output is ``(B, C_out, H, W)`` with
    ``C_out = out_channels`` (default ``C // 2``, the width of each input in the symmetric case).
    :attr:`input_channels` holds the two input widths.

    Formula:
        $$
        F = \mathrm{ConvBNReLU}_{1\times1}([X_{sp}; X_{cp}]), \quad
        a = \sigma\big(W_2\, \delta(W_1\, \mathrm{GAP}(F))\big), \quad Y = F + F \odot a
        $$

    Args:
        channels: Total input channels ``C`` of the two maps together.
        out_channels: Output channels ``C_out``; default ``C // 2``.
        spatial_channels: Channels of ``x_spatial``; default ``C // 2``.
        rd_ratio: Reduction ``1/r`` of the gate MLP (paper code: 1/4).
        rd_channels: Hidden width of the gate MLP; overrides ``rd_ratio``.
        act_layer: Hidden activation of the gate MLP.
        gate_layer: Gate activation.

    Shape:
        - x_spatial: ``(B, C_sp, H, W)``; x_context: ``(B, C - C_sp, H, W)`` ->
          ``(B, C_out, H, W)``

    Example:
        >>> ffm = FeatureFusion(128)
        >>> sum(p.numel() for p in ffm.parameters()), ffm.input_channels
        (10368, (64, 64))
        >>> ffm(torch.randn(2, 64, 9, 7), torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    num_inputs = 2
    preserves_shape = False

    def __init__(
        self,
        channels: int,
        *,
        out_channels: int | None = None,
        spatial_channels: int | None = None,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(check_positive_int("channels", channels, minimum=2))
        split = channels // 2 if spatial_channels is None else spatial_channels
        split = check_positive_int("spatial_channels", split)
        if split >= channels:
            raise ValueError(
                f"spatial_channels must be < channels={channels} (the context path needs at "
                f"least one channel), got {split}"
            )
        out = channels // 2 if out_channels is None else out_channels
        self.out_channels = check_positive_int("out_channels", out)
        self.input_channels = (split, channels - split)
        self.conv = ConvNormAct(channels, self.out_channels, 1)
        hidden = reduced_channels(self.out_channels, rd_ratio, rd_channels)
        self.mlp = SqueezeMlp(self.out_channels, hidden, act_layer=act_layer, bias=False)
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """The channel gate ``a`` ``(B, C_out)`` for the fused feature ``feat``."""
        return self.gate(self.mlp(spatial_mean(feat)))

    def forward(self, x_spatial: torch.Tensor, x_context: torch.Tensor) -> torch.Tensor:
        c_sp, c_cp = self.input_channels
        self.check_input(x_spatial, "x_spatial", c_sp)
        self.check_input(x_context, "x_context", c_cp)
        if x_context.shape[0] != x_spatial.shape[0] or x_context.shape[2:] != x_spatial.shape[2:]:
            raise ValueError(
                "x_spatial and x_context must share batch and spatial size, got "
                f"{type_name(x_spatial)} and {type_name(x_context)}"
            )
        feat = self.conv(torch.cat([x_spatial, x_context], dim=1))
        return feat + scale_channels(feat, self.attention(feat))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, input_channels={self.input_channels}, "
            f"out_channels={self.out_channels}"
        )
