"""Squeeze-and-Excitation (Hu et al. 2018): channel gates from global context."""

from __future__ import annotations

import torch

from attnzoo.layers.channel_ops import scale_channels, spatial_mean
from attnzoo.layers.mlp import SqueezeMlp
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["HU_2018", "SqueezeExcite"]

HU_2018 = Paper(
    title="Squeeze-and-Excitation Networks",
    authors="Hu, Shen, Albanie, Sun, Wu",
    year=2018,
    url="https://arxiv.org/abs/1709.01507",
)


@VISION.register("se", paper=HU_2018, tags=("channel", "gating"), complexity="O(HWC + C^2/r)")
class SqueezeExcite(VisionModule):
    r"""Squeeze-and-Excitation: ``x * sigmoid(fc2(relu(fc1(GAP(x)))))``.

    Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", 2018,
    https://arxiv.org/abs/1709.01507. Squeeze (eq. 2): ``z = GAP(x)`` gives one descriptor per
    channel; excitation (eq. 3): ``s = sigmoid(W2 relu(W1 z))`` with ``W1: C -> C/r`` and
    ``W2: C/r -> C``; scale (eq. 4): ``out = x * s`` broadcast over space. Defaults follow the
    paper and the official Caffe model (SE-ResNet-50): ``r = 16``, ReLU, sigmoid, biases in both
    FC layers (``2C^2/r + C/r + C`` parameters: 580 for ``C = 64``). The hidden width is
    ``int(C / r)`` exactly; timm rounds it up to a multiple of 8 (``SEModule(64)`` has 8 hidden
    channels), pass ``rd_channels`` to reproduce that. ``fc1``/``fc2`` are ``nn.Linear`` (the
    official 1x1 convolutions on a pooled map are the same map). The gate lies in ``(0, 1)`` and
    is constant over space. Accepts 1-D, 2-D and 3-D maps.

    Formula:
        $$
        s = \sigma\big(W_2\, \delta(W_1\, \mathrm{GAP}(X))\big), \qquad Y = s \odot X,
        \qquad W_1 \in \mathbb{R}^{C/r \times C}, \; W_2 \in \mathbb{R}^{C \times C/r}
        $$

        with $\delta$ = ReLU, biases in both layers and $r = 16$.

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` (paper: r = 16).
        rd_channels: Hidden width; overrides ``rd_ratio``.
        act_layer: Hidden activation.
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``) -> same

    Example:
        >>> se = SqueezeExcite(64)
        >>> se(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.mlp = SqueezeMlp(channels, hidden, act_layer=act_layer)
        self.gate = create_act(gate_layer, "gate_layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        weights = self.gate(self.mlp(spatial_mean(x)))  # (B, C)
        return scale_channels(x, weights)
