"""CBAM (Woo et al. 2018): a channel gate from avg+max pooling, then a 7x7 spatial gate."""

from __future__ import annotations

import torch

from attnzoo.layers.mlp import SqueezeMlp
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.layers.zpool import ZPoolGate
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["CBAM"]

WOO_2018 = Paper(
    title="CBAM: Convolutional Block Attention Module",
    authors="Woo, Park, Lee, Kweon",
    year=2018,
    url="https://arxiv.org/abs/1807.06521",
)


@VISION.register(
    "cbam", paper=WOO_2018, tags=("mixed", "gating"), complexity="O(HWC + C^2/r + k^2 HW)"
)
class CBAM(VisionModule):
    r"""CBAM: ``x' = x * Mc(x)``, then ``out = x' * Ms(x')``.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521. Channel attention (paper eq. 2):
    ``Mc = sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x)))`` with one MLP ``C -> C/r -> ReLU -> C``
    shared by both pooled descriptors; the pools are global over the whole map, so any ``H, W``
    works. Spatial attention (eq. 3): ``Ms = sigmoid(BN(f7x7([max_c(x'); mean_c(x')])))``, shared
    over channels (:class:`~attnzoo.layers.zpool.ZPoolGate`, also used by triplet attention).

    Defaults follow the official code (Jongchan/attention-module ``MODELS/cbam.py``), which adds
    two details the paper's equations leave out: biases in the MLP and a
    ``BatchNorm2d(1, momentum=0.01)`` after the bias-free 7x7 conv. C=64, r=16 gives 680
    parameters; ``mlp_bias=False, spatial_norm=False`` gives the bare paper form (610). The
    spatial input order is ``[max, mean]`` as in the official code (the paper writes
    ``[avg; max]``, timm uses ``[mean, max]``: flip the conv weight on dim 1 when copying).

    Formula:
        $$
        \begin{aligned}
        M_c(X) &= \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(X)) +
        \mathrm{MLP}(\mathrm{MaxPool}(X))\big),
        & X' &= M_c(X) \odot X \\
        M_s(X') &= \sigma\big(\mathrm{BN}(f^{7\times 7}([\max_c X'; \mathrm{mean}_c X']))\big),
        & Y &= M_s(X') \odot X'
        \end{aligned}
        $$

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` (paper: r = 16).
        rd_channels: Hidden width; overrides ``rd_ratio``.
        kernel_size: Odd kernel of the spatial conv (paper: 7).
        mlp_bias: Biases in the channel MLP (official code: True).
        spatial_norm: Batch norm after the spatial conv (official code: True).
        act_layer: Hidden activation of the MLP.
        gate_layer: Gate activation of both gates.
        spatial_dims: Spatial dims of the input, 1, 2 (the paper's images) or 3.

    Shape:
        - x: ``(B, C, H, W)`` -> same; with ``spatial_dims=1`` or ``3``, ``(B, C, L)`` or
          ``(B, C, D, H, W)`` (the spatial gate's conv has that many dims, so an instance takes
          one layout).

    Example:
        >>> cbam = CBAM(64)
        >>> cbam(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in cbam.parameters())
        680
    """

    spatial_dims = (1, 2, 3)  # each instance takes the one layout its spatial_dims= built

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        kernel_size: int = 7,
        mlp_bias: bool = True,
        spatial_norm: bool = True,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(channels)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.mlp = SqueezeMlp(channels, hidden, act_layer=act_layer, bias=mlp_bias)
        self.gate = create_act(gate_layer, "gate_layer")
        self.spatial = ZPoolGate(
            kernel_size, norm=spatial_norm, gate_layer=gate_layer, spatial_dims=spatial_dims
        )
        self.spatial_dims = (self.spatial.spatial_dims,)  # this instance's layout

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Channel gate ``Mc`` of shape ``(B, C, 1, ...)`` (one 1 per spatial dim)."""
        spatial = tuple(range(2, x.dim()))
        avg = self.mlp(x.mean(dim=spatial))  # (B, C)
        mx = self.mlp(x.amax(dim=spatial))  # (B, C)
        return self.gate(avg + mx).view(*x.shape[:2], *(1,) * len(spatial))  # (B, C, 1, ...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = x * self.channel_attention(x)
        return self.spatial(x)
