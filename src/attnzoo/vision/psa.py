"""Polarized self-attention (Liu et al. 2021): channel-only and spatial-only attention gates."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.probe import AttentionProbe
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["PSA_MODES", "PolarizedSelfAttention"]

LIU_2021 = Paper(
    title="Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
    authors="Liu, Liu, Fan, Huang",
    year=2021,
    url="https://arxiv.org/abs/2107.00782",
)

PSA_MODES = ("parallel", "sequential")


@VISION.register(
    "psa",
    paper=LIU_2021,
    tags=("self_attention", "gating"),
    complexity="O(HWC^2)",
)
class PolarizedSelfAttention(VisionModule):
    r"""Polarized self-attention: ``A_ch(x) * x + A_sp(x) * x`` (parallel) or ``A_sp(A_ch(x) x)``.

    Liu, Liu, Fan, Huang, "Polarized Self-Attention: Towards High-quality Pixel-wise
    Regression", 2021, https://arxiv.org/abs/2107.00782. Paper equations 1-5 (all convolutions
    ``1x1`` with bias, ``C/2`` inner channels):

    - channel-only branch: ``q = softmax_HW(ch_wq(x))`` (``C -> 1``; its ``(B, 1, 1, HW)``
      weights go through ``probe``), ``v = ch_wv(x)`` (``C -> C/2``),
      ``A_ch = sigmoid(LayerNorm_C(ch_wz(v q)))`` with ``ch_wz: C/2 -> C`` -- a ``(B, C, 1, 1)``
      gate;
    - spatial-only branch: ``q = softmax_{C/2}(GAP(sp_wq(x)))``, ``v = sp_wv(x)`` (both
      ``C -> C/2``), ``A_sp = sigmoid(q^T v)`` -- a ``(B, 1, H, W)`` gate.

    ``mode="parallel"`` returns ``A_ch * x + A_sp * x`` (so ``out / x`` lies in ``(0, 2)``);
    ``mode="sequential"`` returns ``A_sp(y) * y`` with ``y = A_ch(x) * x`` (channel first, so
    ``|out| < |x|``). This is the paper's form, as in External-Attention-pytorch. The official
    code (DeLightCMU/PSA) departs from it: no biases, no LayerNorm in the parallel channel
    branch, a GC-style bottleneck for ``ch_wz`` in the sequential layout, and the spatial softmax
    taken over positions instead of channels; that variant is not offered. The output does not
    depend on the ``ch_wq`` bias (softmax shift), so its gradient is zero.

    Formula:
        $$
        \begin{aligned}
        A_{ch}(X) &= \sigma\Big(\mathrm{LN}\big(W_z\, (W_v X)\, \mathrm{softmax}_{HW}(W_q
        X)^\top\big)\Big) \\
        A_{sp}(X) &= \sigma\Big(\mathrm{softmax}\big(\mathrm{GAP}(W'_q X)\big)^\top W'_v X\Big),
        \qquad
        Y = A_{ch}(X) \odot X + A_{sp}(X) \odot X
        \end{aligned}
        $$

        (`mode="parallel"`; `"sequential"` gives $A_{sp}(X')\odot X'$ with $X' = A_{ch}(X)\odot X$).

    Args:
        channels: Input channels ``C``.
        mode: ``"parallel"`` or ``"sequential"``.
        rd_ratio: Inner width ratio (paper: 1/2).
        rd_channels: Inner width; overrides ``rd_ratio``.
        gate_layer: Gate activation of both branches.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> psa = PolarizedSelfAttention(64)
        >>> psa(torch.randn(2, 64, 9, 7)).shape, sum(p.numel() for p in psa.parameters())
        (torch.Size([2, 64, 9, 7]), 8545)
    """

    def __init__(
        self,
        channels: int,
        *,
        mode: str = "parallel",
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        self.mode = check_choice("mode", mode, PSA_MODES)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.ch_wv = nn.Conv2d(channels, hidden, kernel_size=1)
        self.ch_wq = nn.Conv2d(channels, 1, kernel_size=1)
        self.ch_wz = nn.Conv2d(hidden, channels, kernel_size=1)
        self.ln = nn.LayerNorm(channels)
        self.sp_wv = nn.Conv2d(channels, hidden, kernel_size=1)
        self.sp_wq = nn.Conv2d(channels, hidden, kernel_size=1)
        self.gate = create_act(gate_layer, "gate_layer")
        self.probe = AttentionProbe()

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-only attention ``A_ch`` of shape ``(B, C, 1, 1)``."""
        batch = x.shape[0]
        value = self.ch_wv(x).flatten(2)  # (B, C/2, HW)
        logits = self.ch_wq(x).flatten(2).unsqueeze(1)  # (B, 1, 1, HW)
        weights = self.probe(safe_softmax(logits)).view(batch, logits.shape[-1], 1)  # (B, HW, 1)
        context = (value @ weights).unsqueeze(-1)  # (B, C/2, 1, 1)
        z = self.ch_wz(context).flatten(1)  # (B, C)
        return self.gate(self.ln(z)).view(batch, self.channels, 1, 1)  # (B, C, 1, 1)

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial-only attention ``A_sp`` of shape ``(B, 1, H, W)``."""
        batch, _, height, width = x.shape
        value = self.sp_wv(x).flatten(2)  # (B, C/2, HW)
        query = self.sp_wq(x).mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C/2)
        weights = safe_softmax(query)  # (B, 1, C/2)
        return self.gate((weights @ value).view(batch, 1, height, width))  # (B, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.mode == "parallel":
            return self.channel_gate(x) * x + self.spatial_gate(x) * x
        y = self.channel_gate(x) * x
        return self.spatial_gate(y) * y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}"
