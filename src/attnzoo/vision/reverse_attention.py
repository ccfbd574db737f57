"""Reverse attention (Chen et al. 2018, RAS): refine a deeper side output where it is not sure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["CHEN_2018", "ReverseAttention"]

CHEN_2018 = Paper(
    title="Reverse Attention for Salient Object Detection",
    authors="Chen, Tan, Wang, Hu",
    year=2018,
    url="https://arxiv.org/abs/1807.09940",
)


@VISION.register(
    "reverse_attention",
    paper=CHEN_2018,
    tags=("spatial", "fusion"),
    complexity="O(HW (C m + 9 m^2))",
)
class ReverseAttention(VisionModule):
    r"""Reverse attention block: ``S_i = convs(A * F_i) + Up(S_{i+1})``, ``A = 1 - sigmoid(Up(S))``.

    Chen, Tan, Wang, Hu, "Reverse Attention for Salient Object Detection", ECCV 2018,
    https://arxiv.org/abs/1807.09940. A side output ``S_{i+1}`` (one-channel saliency logits from a
    deeper stage) is up-sampled to the resolution of the backbone feature ``F_i``; the reverse
    attention ``A = 1 - sigmoid(Up(S_{i+1}))``, in ``(0, 1)`` and shared by all channels, erases
    the regions already predicted salient so the block learns the missing parts and boundaries;
    the attended feature goes through a small conv stack to a one-channel residual ``R_i``, and
    the refined side output is ``S_i = R_i + Up(S_{i+1})`` (side-output residual learning).

    Defaults follow the official PyTorch code (ShuhanChen/RAS-pytorch ``v1/RAS.py``, class
    ``RA``): ``F_i`` is first reduced by a 1x1 conv ``C -> m`` (``m = mid_channels = 64``, with
    bias), then multiplied by ``A``, then ``num_convs = 3`` times (3x3 conv ``m -> m`` + ReLU)
    and a 3x3 conv ``m -> 1``, all with bias: 127,809 parameters for ``C = 256``. The official
    ECCV Caffe model multiplies first and uses two ReLU convs: ``attend_first=True,
    num_convs=2`` (90,881 parameters for ``C = 256``). Up-sampling is bilinear with
    ``align_corners=True`` as in the official code, and is skipped when the sizes already match.

    Inputs and output (not ``(B, C, H, W) -> (B, C, H, W)``): ``forward(x, side)`` takes the
    backbone feature ``x`` of shape ``(B, C, H, W)`` and the deeper side output ``side`` of shape
    ``(B, 1, h, w)`` (logits, any ``h, w``), and returns the refined side output ``(B, 1, H, W)``
    (logits). :attr:`input_channels` is ``(C, 1)``.

    Formula:
        $$
        A = 1 - \sigma\big(\mathrm{Up}(S_{i+1})\big), \qquad
        S_i = \mathrm{convs}(A \odot F_i) + \mathrm{Up}(S_{i+1})
        $$

        with $S_{i+1}$ the deeper side output (one channel) and $F_i$ the backbone feature.

    Args:
        channels: Channels ``C`` of the backbone feature ``x``.
        mid_channels: Width ``m`` of the conv stack.
        num_convs: 3x3 conv + ReLU layers before the last 3x3 conv to one channel.
        attend_first: Multiply ``x`` by ``A`` before the 1x1 reduction (Caffe) instead of after
            it (PyTorch code, default).

    Shape:
        - x: ``(B, C, H, W)``; side: ``(B, 1, h, w)`` -> ``(B, 1, H, W)``

    Example:
        >>> ra = ReverseAttention(256)
        >>> sum(p.numel() for p in ra.parameters())
        127809
        >>> ra(torch.randn(2, 256, 16, 12), torch.randn(2, 1, 8, 6)).shape
        torch.Size([2, 1, 16, 12])
    """

    num_inputs = 2
    preserves_shape = False

    def __init__(
        self,
        channels: int,
        *,
        mid_channels: int = 64,
        num_convs: int = 3,
        attend_first: bool = False,
    ) -> None:
        super().__init__(channels)
        mid = check_positive_int("mid_channels", mid_channels)
        num_convs = check_positive_int("num_convs", num_convs, minimum=0)
        self.input_channels = (channels, 1)
        self.attend_first = bool(attend_first)
        self.convert = nn.Conv2d(channels, mid, 1)
        layers: list[nn.Module] = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(mid, mid, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(mid, 1, 3, padding=1))
        self.convs = nn.Sequential(*layers)

    def reverse_attention(self, side: torch.Tensor) -> torch.Tensor:
        """``A = 1 - sigmoid(side)``, computed as ``sigmoid(-side)`` (exact in the tails)."""
        return torch.sigmoid(-side)

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.check_input(side, "side", 1)
        if side.shape[0] != x.shape[0]:
            raise ValueError(
                f"side must be (B, 1, h, w) with B = {x.shape[0]} (the batch of x), "
                f"got shape {tuple(side.shape)}"
            )
        if side.shape[-2:] != x.shape[-2:]:
            side = F.interpolate(side, size=x.shape[-2:], mode="bilinear", align_corners=True)
        attn = self.reverse_attention(side)  # (B, 1, H, W), broadcast over channels
        feat = self.convert(x * attn) if self.attend_first else self.convert(x) * attn
        return side + self.convs(feat)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, attend_first={self.attend_first}"
