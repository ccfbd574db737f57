"""ECA-Net (Wang et al. 2020): channel gates from a 1-D convolution over pooled channels."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnzoo._checks import check_finite, check_positive_int
from attnzoo.layers.channel_ops import scale_channels, spatial_mean
from attnzoo.layers.vision_utils import LayerType, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["WANG_2020", "EfficientChannelAttention", "eca_kernel_size"]

WANG_2020 = Paper(
    title="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    authors="Wang, Wu, Zhu, Li, Zuo, Hu",
    year=2020,
    url="https://arxiv.org/abs/1910.03151",
)


def eca_kernel_size(channels: int, *, gamma: float = 2.0, b: float = 1.0) -> int:
    """The adaptive ECA kernel size ``k = psi(C) = |(log2(C) + b) / gamma|_odd`` (paper 3.3).

    ``|t|_odd`` is read as the official code does: truncate to an integer, then add one if it is
    even. With ``gamma = 2, b = 1``: C = 16, 32, 64 -> 3; 128 ... 1024 -> 5; 2048 -> 7; and
    C = 2, 4 -> 1 (timm clamps to at least 3; the paper does not).

    Args:
        channels: Channels ``C``.
        gamma: ``gamma`` of the mapping (paper: 2).
        b: ``b`` of the mapping (paper: 1).

    Returns:
        An odd kernel size ``>= 1``.

    Example:
        >>> [eca_kernel_size(c) for c in (64, 128, 256, 512, 1024, 2048)]
        [3, 5, 5, 5, 5, 7]
    """
    channels = check_positive_int("channels", channels)
    gamma = check_finite("gamma", gamma, positive=True)
    b = check_finite("b", b)
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@VISION.register("eca", paper=WANG_2020, tags=("channel", "gating"), complexity="O(HWC + kC)")
class EfficientChannelAttention(VisionModule):
    r"""Efficient Channel Attention: ``x * sigmoid(conv1d_k(GAP(x)))`` over the channel axis.

    Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
    Neural Networks", 2020, https://arxiv.org/abs/1910.03151. The pooled descriptor ``GAP(x)`` is
    read as a length-``C`` signal and filtered by one 1-D convolution of size ``k`` (zero
    padding, **no bias**, so the module has exactly ``k`` parameters): each gate sees only its
    ``k`` neighbouring channels and there is no dimensionality reduction (paper section 3.3).
    ``k`` is chosen from ``C`` by :func:`eca_kernel_size` (``gamma = 2``, ``b = 1``) unless
    ``kernel_size`` is given. Same output as the official ``eca_layer`` (given the same ``k``)
    and as timm's ``EcaModule`` for ``C >= 8``; below that the paper rule gives ``k = 1``, which
    timm raises to 3. The gate lies in ``(0, 1)``. Accepts 1-D, 2-D and 3-D maps.

    Formula:
        $$
        Y = \sigma\big(\mathrm{conv1d}_k(\mathrm{GAP}(X))\big) \odot X, \qquad
        k = \left|\frac{\log_2 C + b}{\gamma}\right|_{\mathrm{odd}}, \; \gamma = 2, \; b = 1
        $$

        the 1-D convolution running over the channel axis, without bias.

    Args:
        channels: Input channels ``C``.
        kernel_size: Odd 1-D kernel size; ``None`` picks ``eca_kernel_size(C, gamma, b)``.
        gamma: ``gamma`` of the adaptive kernel rule.
        b: ``b`` of the adaptive kernel rule.
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``) -> same

    Example:
        >>> eca = EfficientChannelAttention(64)
        >>> eca.kernel_size, eca(torch.randn(2, 64, 9, 7)).shape
        (3, torch.Size([2, 64, 9, 7]))
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        b: float = 1.0,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma=gamma, b=b)
        kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = create_act(gate_layer, "gate_layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        pooled = spatial_mean(x).unsqueeze(1)  # (B, 1, C)
        weights = self.gate(self.conv(pooled)).squeeze(1)  # (B, C)
        return scale_channels(x, weights)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
