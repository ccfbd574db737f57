"""Gated Channel Transformation (Yang et al. 2020): embed, normalise across channels, gate."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice, check_finite
from attnzoo.layers.channel_ops import scale_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["YANG_2020", "GatedChannelTransform"]

YANG_2020 = Paper(
    title="Gated Channel Transformation for Visual Recognition",
    authors="Yang, Zhu, Wu, Yang",
    year=2020,
    url="https://arxiv.org/abs/1909.11519",
)


@VISION.register(
    "gct", paper=YANG_2020, tags=("channel", "gating", "normalization"), complexity="O(HWC)"
)
class GatedChannelTransform(VisionModule):
    r"""GCT: ``x * (1 + tanh(gamma * s_hat + beta))`` with ``s_hat`` channel-normalised.

    Yang, Zhu, Wu, Yang, "Gated Channel Transformation for Visual Recognition", 2020,
    https://arxiv.org/abs/1909.11519. Three steps, each with ``C`` parameters (``3C`` in all):

    - global context embedding: ``s_c = alpha_c * (sum_{spatial} x_c^2 + eps)^(1/2)``
      (``mode="l2"``, default) or ``s_c = alpha_c * sum |x_c|`` (``mode="l1"``; with
      ``after_relu=True`` the input is taken as non-negative and ``|.|`` is skipped);
    - channel normalisation: ``s_hat_c = s_c / ((1/C) sum_c s_c^2 + eps)^(1/2)``
      (l1: ``s_c / ((1/C) sum_c |s_c| + eps)``), i.e. ``sqrt(C) * s_c / ||s||_2``;
    - gating adaptation: ``out = x * (1 + tanh(gamma_c * s_hat_c + beta_c))``.

    As in the paper and the official code (z-x-yang/GCT), ``alpha = 1``, ``gamma = beta = 0`` at
    init and ``eps = 1e-5``, so the module is exactly the identity at init; the gate lies in
    ``(0, 2)``. At init ``gamma = 0`` blocks the gradient of ``alpha`` (it is zero, not None);
    it flows once ``gamma`` moves. The parameters are stored with shape ``(C,)`` (the official
    code uses ``(1, C, 1, 1)``; reshape when loading its weights). The authors advise no weight
    decay on ``beta``. Accepts 1-D, 2-D and 3-D maps.

    Formula:
        $$
        \begin{gathered}
        s_c = \alpha_c \Big(\sum_{h,w} x_c^2 + \epsilon\Big)^{1/2}, \qquad
        \hat s_c = \frac{\sqrt{C}\, s_c}{\big(\sum_c s_c^2 + \epsilon\big)^{1/2}} \\
        Y_c = X_c \big(1 + \tanh(\gamma_c \hat s_c + \beta_c)\big)
        \end{gathered}
        $$

        (`mode="l2"`; $\gamma = \beta = 0$ at initialisation, so the module starts as the identity).

    Args:
        channels: Input channels ``C``.
        mode: ``"l2"`` (paper default) or ``"l1"`` embedding.
        eps: Small constant in the embedding and the normalisation.
        after_relu: l1 mode only: the input is non-negative, skip ``abs``.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``) -> same

    Example:
        >>> gct = GatedChannelTransform(64)
        >>> x = torch.randn(2, 64, 9, 7)
        >>> torch.equal(gct(x), x)
        True
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        mode: str = "l2",
        eps: float = 1e-5,
        after_relu: bool = False,
    ) -> None:
        super().__init__(channels)
        self.mode = check_choice("mode", mode, ("l2", "l1"))
        self.eps = check_finite("eps", eps, positive=True)
        self.after_relu = bool(after_relu)
        self.alpha = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.gate = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        dims = tuple(range(2, x.dim()))
        if self.mode == "l2":
            embedding = (x.square().sum(dim=dims) + self.eps).sqrt() * self.alpha  # (B, C)
            scale = (embedding.square().mean(dim=1, keepdim=True) + self.eps).rsqrt()  # (B, 1)
        else:
            magnitude = x if self.after_relu else x.abs()
            embedding = magnitude.sum(dim=dims) * self.alpha  # (B, C)
            scale = 1.0 / (embedding.abs().mean(dim=1, keepdim=True) + self.eps)  # (B, 1)
        weights = 1.0 + self.gate(self.gamma * embedding * scale + self.beta)  # (B, C)
        return scale_channels(x, weights)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, eps={self.eps:g}"
