"""SimAM (Yang et al. 2021): parameter-free 3-D attention from a closed-form neuron energy."""

from __future__ import annotations

import math

import torch

from attnzoo._checks import check_finite
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["SimAM"]

YANG_2021 = Paper(
    title="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    authors="Yang, Zhang, Li, Xie",
    year=2021,
    url="https://proceedings.mlr.press/v139/yang21o.html",
)


@VISION.register(
    "simam", paper=YANG_2021, tags=("mixed", "gating", "parameter_free"), complexity="O(HWC)"
)
class SimAM(VisionModule):
    r"""SimAM: ``out = x * sigmoid(1 / e*)``, one weight per neuron, no parameters.

    Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
    Neural Networks", ICML 2021, https://proceedings.mlr.press/v139/yang21o.html. The minimal
    energy of neuron ``t`` (paper eq. 16) is
    ``e* = 4 (s^2 + lambda) / ((t - mu)^2 + 2 s^2 + 2 lambda)``, with ``mu`` and ``s^2`` the
    mean and variance of its channel over all spatial positions, so
    ``1 / e* = (t - mu)^2 / (4 (s^2 + lambda)) + 0.5`` and the gate lies in
    ``[sigmoid(0.5), 1) = [0.62246, 1)``, equal to ``sigmoid(0.5)`` where ``t = mu``.

    As in the official code (ZjjConan/SimAM), ``s^2 = sum (t - mu)^2 / (n - 1)`` with ``n`` the
    number of positions and ``lambda = 1e-4``. Deviation: for a single position (``n = 1``) the
    official code divides 0 by 0 (NaN); here the divisor is clamped to 1, so ``s^2 = 0`` and the
    gate is ``sigmoid(0.5)``.

    Formula:
        $$
        Y = X \odot \sigma\!\left(\frac{1}{e^*}\right), \qquad
        \frac{1}{e^*} = \frac{(t - \mu)^2}{4(\hat\sigma^2 + \lambda)} + 0.5
        $$

        per neuron $t$, with $\mu, \hat\sigma^2$ its channel's mean and variance ($n - 1$ divisor)
        and $\lambda = 10^{-4}$.

    Args:
        channels: Input channels ``C`` (checked only; the module has no parameters).
        e_lambda: Regulariser ``lambda`` of the energy (paper: 1e-4).

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``) -> same

    Example:
        >>> simam = SimAM(64)
        >>> simam(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> len(list(simam.parameters()))
        0
    """

    spatial_dims = (1, 2, 3)

    def __init__(self, channels: int, *, e_lambda: float = 1e-4) -> None:
        super().__init__(channels)
        self.e_lambda = check_finite("e_lambda", e_lambda, positive=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        dims = tuple(range(2, x.dim()))
        n = max(math.prod(x.shape[2:]) - 1, 1)
        d = (x - x.mean(dim=dims, keepdim=True)).square()  # (B, C, *spatial)
        var = d.sum(dim=dims, keepdim=True) / n  # (B, C, 1, ...)
        inv_energy = d / (4 * (var + self.e_lambda)) + 0.5
        return x * torch.sigmoid(inv_energy)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, e_lambda={self.e_lambda:g}"
