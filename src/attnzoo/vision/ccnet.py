"""Criss-cross attention (Huang et al. 2019): each pixel attends to its row and its column."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.probe import AttentionProbe
from attnzoo.layers.vision_utils import reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["CrissCrossAttention"]

HUANG_2019 = Paper(
    title="CCNet: Criss-Cross Attention for Semantic Segmentation",
    authors="Huang, Wang, Huang, Huang, Wei, Liu",
    year=2019,
    url="https://arxiv.org/abs/1811.11721",
)


@VISION.register(
    "ccnet",
    paper=HUANG_2019,
    tags=("self_attention",),
    complexity="O(HW (H + W) C) per recurrence",
)
class CrissCrossAttention(VisionModule):
    r"""Recurrent criss-cross attention: ``x <- x + gamma * sum_{u in cross(i, j)} A_u V_u``.

    Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic
    Segmentation", 2019, https://arxiv.org/abs/1811.11721. ``query_conv`` and ``key_conv`` are
    ``1x1`` convolutions ``C -> C/8`` and ``value_conv`` is ``C -> C`` (all with bias). For pixel
    ``(i, j)`` the energies ``Q_ij^T K_u`` over its column (H entries) and its row (W entries)
    share one softmax (no scale, as in the paper and official code); the pixel itself belongs to
    both, so its column copy is excluded with a boolean diagonal mask built on the input's
    device (``-inf`` before the softmax), and it is counted once. The ``(B, 1, HW, H + W)``
    weights (first the column, then the row) go through ``probe`` on every recurrence.
    ``out = gamma * aggregated + x`` with a scalar ``gamma`` initialised to 0 (exact identity at
    init; the projections receive zero gradients until ``gamma`` moves).

    The RCCA module applies the same block ``recurrence`` times with shared weights: after one
    pass a pixel sees its row and column (``H + W - 1`` pixels); after two, every pixel. The
    official RCCA head also wraps this in ``3x3`` ConvBNReLU layers, which are not part of the
    attention and are left to the network.

    Formula:
        $$
        y_{ij} = x_{ij} + \gamma \sum_{u \in \Omega(i, j)} \mathrm{softmax}_u\big(Q_{ij}^\top
        K_u\big)\,
        V_u
        $$

        with $\Omega(i, j)$ the pixels of row $i$ and column $j$ (the pixel counted once), applied
        `recurrence` times (2 by default).

    Args:
        channels: Input channels ``C``.
        rd_ratio: Query/key width ratio (paper: 1/8).
        rd_channels: Query/key width; overrides ``rd_ratio``.
        recurrence: Number of passes ``R`` (paper: 2).

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> cca = CrissCrossAttention(64)
        >>> x = torch.randn(2, 64, 9, 7)
        >>> torch.equal(cca(x), x), sum(p.numel() for p in cca.parameters())
        (True, 5201)
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 8,
        rd_channels: int | None = None,
        recurrence: int = 2,
    ) -> None:
        super().__init__(channels)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.recurrence = check_positive_int("recurrence", recurrence)
        self.query_conv = nn.Conv2d(channels, hidden, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, hidden, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.probe = AttentionProbe()

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """One criss-cross pass ``x + gamma * CCA(x)``."""
        b, _, h, w = x.shape
        query, key, value = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        energy_col = torch.einsum("bdij,bdkj->bijk", query, key)  # (B, H, W, H)
        energy_row = torch.einsum("bdij,bdil->bijl", query, key)  # (B, H, W, W)
        # The pixel itself is in its column and its row: keep only the row copy.
        itself = torch.eye(h, dtype=torch.bool, device=x.device).unsqueeze(1)  # (H, 1, H)
        energy_col = energy_col.masked_fill(itself, float("-inf"))
        energy = torch.cat([energy_col, energy_row], dim=-1)  # (B, H, W, H+W)
        attn = safe_softmax(energy).reshape(b, 1, h * w, h + w)  # (B, 1, H*W, H+W)
        attn = self.probe(attn).reshape(b, h, w, h + w)  # (B, H, W, H+W)
        attn_col, attn_row = attn.split([h, w], dim=-1)
        out = torch.einsum("bijk,bckj->bcij", attn_col, value)  # (B, C, H, W)
        out = out + torch.einsum("bijl,bcil->bcij", attn_row, value)  # (B, C, H, W)
        return self.gamma * out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        for _ in range(self.recurrence):
            x = self.attend(x)
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, recurrence={self.recurrence}"
