"""SRM (Lee et al. 2019): channel gates from each channel's style (mean and standard deviation)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_finite
from attnzoo.layers.channel_ops import scale_channels
from attnzoo.layers.vision_utils import LayerType, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["LEE_2019", "StyleRecalibration"]

LEE_2019 = Paper(
    title="SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
    authors="Lee, Kim, Nam",
    year=2019,
    url="https://arxiv.org/abs/1903.10829",
)


@VISION.register("srm", paper=LEE_2019, tags=("channel", "gating"), complexity="O(HWC)")
class StyleRecalibration(VisionModule):
    r"""Style-based recalibration: ``x * sigmoid(BN(w_c1 * mean_c + w_c2 * std_c))``.

    Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
    2019, https://arxiv.org/abs/1903.10829. Style pooling: per channel the mean
    ``mu_c`` and the standard deviation ``sigma_c = sqrt(mean((x_c - mu_c)^2) + eps)`` over
    space. Style integration: a channel-wise fully connected layer ``cfc`` (one pair
    of weights per channel, no bias) gives ``z_c = w_c1 mu_c + w_c2 sigma_c``, then batch norm
    ``norm`` and a sigmoid ``gate``. ``4C`` parameters (``cfc`` 2C + BN 2C; 256 for ``C = 64``).
    Deviation from the official code (hyunjaelee410/style-based-recalibration-module): it takes
    the unbiased ``torch.std`` without ``eps``, which is NaN for a single position; we use the
    ``1/(HW)`` variance plus ``eps`` (the AdaIN-style statistics), defined for any map. Like the
    official code, ``cfc`` starts at zero, so at init the gate is ``sigmoid(BN(0))`` (``0.5`` in
    eval mode with fresh statistics); the gradient still reaches ``cfc`` through the batch norm
    in training, while ``norm.weight`` gets a zero gradient until ``cfc`` moves off zero. The
    gate lies in ``(0, 1)``. Accepts 1-D, 2-D and 3-D maps (the style statistics are over all
    spatial dims).

    Formula:
        $$
        \mu_c = \frac{1}{HW}\sum_{h,w} x_c, \quad
        \sigma_c = \sqrt{\frac{1}{HW}\sum_{h,w} (x_c - \mu_c)^2 + \epsilon}, \qquad
        Y_c = X_c\, \sigma\big(\mathrm{BN}(w_{c1}\mu_c + w_{c2}\sigma_c)\big)
        $$

    Args:
        channels: Input channels ``C``.
        eps: Added to the variance before the square root.
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``) -> same

    Example:
        >>> srm = StyleRecalibration(64)
        >>> srm(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self, channels: int, *, eps: float = 1e-5, gate_layer: LayerType = "sigmoid"
    ) -> None:
        super().__init__(channels)
        self.eps = check_finite("eps", eps, positive=True)
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.norm = nn.BatchNorm1d(channels)
        self.gate = create_act(gate_layer, "gate_layer")

    def style_pool(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel ``(mean, std)`` over the spatial dims: ``(B, C, *spatial) -> (B, C, 2)``."""
        if x.shape[0] == 0:  # var_mean warns on an empty batch: no sample, no statistics
            return x.new_zeros(0, x.shape[1], 2)  # (0, C, 2)
        dims = tuple(range(2, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, correction=0)  # (B, C), (B, C)
        return torch.stack((mean, (var + self.eps).sqrt()), dim=-1)  # (B, C, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z = (self.style_pool(x) * self.cfc).sum(dim=-1)  # (B, C)
        weights = self.gate(self.norm(z))  # (B, C)
        return scale_channels(x, weights)
