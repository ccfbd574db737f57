"""Outlook attention (Yuan et al. 2021): each pixel predicts the attention of its K x K window."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, check_probability
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.probe import AttentionProbe
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["OutlookAttention"]

YUAN_2021 = Paper(
    title="VOLO: Vision Outlooker for Visual Recognition",
    authors="Yuan, Hou, Jiang, Feng, Yan",
    year=2021,
    url="https://arxiv.org/abs/2106.13112",
)

VOLO_HEAD_DIM = 32  # every VOLO variant uses 32 channels per outlook head


@VISION.register(
    "outlook",
    paper=YUAN_2021,
    tags=("self_attention",),
    complexity="O(HW C K^4 nh / s^2)",
)
class OutlookAttention(VisionModule):
    r"""Outlook attention: window weights generated from the centre pixel, folded back by summing.

    Yuan, Hou, Jiang, Feng, Yan, "VOLO: Vision Outlooker for Visual Recognition", 2021,
    https://arxiv.org/abs/2106.13112 (paper eqs. 2-4). ``v`` (``1x1``, no bias by default) gives
    the values, unfolded in ``K x K`` windows (zero padding ``padding``, step ``stride``).
    ``attn`` (``1x1``, ``C -> K^4 nh``, with bias) applied to ``AvgPool_stride(x)`` (ceil mode)
    gives, for every window and head, a ``K^2 x K^2`` matrix; it is scaled by ``hd**-0.5``
    and soft-maxed over its last axis. Each window's values are mixed by that matrix and
    ``F.fold`` puts the windows back, **summing** where they overlap; ``proj`` (``1x1``, with
    bias) follows. So for identity ``v``/``proj`` and a constant input ``c``, pixels at least two
    away from the border (``K = 3``, stride 1) equal ``9c``.

    attnzoo is channels-first: ``x`` is ``(B, C, H, W)`` and the projections are ``1x1``
    convolutions; VOLO and timm (``timm.models.volo.OutlookAttention``) take ``(B, H, W, C)``
    with ``nn.Linear`` (same weights up to two trailing singleton dims). The weights go through
    ``probe`` as ``(B, nh, L * K^2, K^2)``: window ``l``'s ``K^2 x K^2`` matrix occupies rows
    ``l * K^2`` to ``(l + 1) * K^2 - 1`` (windows in row-major order), each row sums to one.

    Defaults: ``K = 3``, padding 1 and stride 1 as in the paper's equations and timm's class
    (VOLO's outlooker stages call it with ``stride=2``); ``channels // 32`` heads (VOLO uses
    32 channels per head throughout; at least one head).

    Formula:
        $$
        A_{(i,j)} = \mathrm{softmax}\!\left(\frac{W_A\, \bar x_{(i,j)}}{\sqrt{d_h}}\right) \in
        \mathbb{R}^{K^2 \times K^2}, \qquad
        Y = \mathrm{proj}\Big(\mathrm{Fold}\big(\{A_{(i,j)}\, V_{\Delta(i,j)}\}\big)\Big)
        $$

        with $\bar x$ the centre pixel (average-pooled by `stride`), $V_{\Delta}$ the $K \times K$
        window of values; overlapping windows are summed.

    Args:
        channels: Input channels ``C``.
        num_heads: Heads ``nh``; must divide ``channels``. Default ``max(1, C // 32)``.
        kernel_size: Window size ``K``.
        padding: Zero padding of the windows; ``(K - 1) // 2`` for odd ``K`` keeps the window
            count equal to the pooled size ``ceil(H / stride)``.
        stride: Window step (and average-pooling size).
        qkv_bias: Bias in ``v``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``proj`` (training only).

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> oa = OutlookAttention(64)
        >>> oa(torch.randn(2, 64, 9, 7)).shape, sum(p.numel() for p in oa.parameters())
        (torch.Size([2, 64, 9, 7]), 18786)
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int | None = None,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 1,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(channels)
        if num_heads is None:
            num_heads = max(1, channels // VOLO_HEAD_DIM)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if channels % num_heads:
            raise ValueError(
                f"num_heads must divide channels, got channels={channels} and "
                f"num_heads={num_heads}; pass a divisor of {channels} as num_heads"
            )
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.padding = check_positive_int("padding", padding, minimum=0)
        self.stride = check_positive_int("stride", stride)
        self.scale = (channels // num_heads) ** -0.5
        window = kernel_size * kernel_size
        self.v = nn.Conv2d(channels, channels, kernel_size=1, bias=qkv_bias)
        self.attn = nn.Conv2d(channels, window * window * num_heads, kernel_size=1)
        self.attn_drop = Dropout(check_probability("attn_drop", attn_drop))
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_drop = Dropout(check_probability("proj_drop", proj_drop))
        self.probe = AttentionProbe()

    def _windows(self, size: int, name: str) -> int:
        """Window count along one axis; it must equal the pooled size ``ceil(size / stride)``."""
        count = (size + 2 * self.padding - self.kernel_size) // self.stride + 1
        pooled = math.ceil(size / self.stride)
        if count != pooled:
            raise ValueError(
                f"kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride} "
                f"give {count} windows along {name}={size} but the attention map has "
                f"ceil({name} / stride) = {pooled}; use an odd kernel_size with "
                f"padding=(kernel_size - 1) // 2"
            )
        return count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b, c, h, w = x.shape
        nh, kk = self.num_heads, self.kernel_size * self.kernel_size
        num = self._windows(h, "H") * self._windows(w, "W")
        k, p, s = self.kernel_size, self.padding, self.stride
        value = F.unfold(self.v(x), k, padding=p, stride=s)  # (B, C*K*K, L)
        value = value.view(b, nh, c // nh, kk, num).permute(0, 1, 4, 3, 2)  # (B, nh, L, K*K, hd)
        pooled = F.avg_pool2d(x, s, ceil_mode=True) if s > 1 else x
        logits = self.attn(pooled).view(b, nh, kk, kk, num)  # (B, nh, K*K, K*K, L)
        logits = logits.permute(0, 1, 4, 2, 3) * self.scale  # (B, nh, L, K*K, K*K)
        attn = safe_softmax(logits).reshape(b, nh, num * kk, kk)  # (B, nh, L*K*K, K*K)
        attn = self.attn_drop(self.probe(attn)).view(b, nh, num, kk, kk)  # (B, nh, L, K*K, K*K)
        out = (attn @ value).permute(0, 1, 4, 3, 2).reshape(b, c * kk, num)  # (B, C*K*K, L)
        out = F.fold(out, (h, w), k, padding=p, stride=s)  # (B, C, H, W)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_heads={self.num_heads}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride}"
        )
