"""FcaNet (Qin et al. 2021): channel gates from multi-spectral (2-D DCT) pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int
from attnzoo.layers.channel_ops import scale_channels
from attnzoo.layers.helpers import to_2tuple
from attnzoo.layers.mlp import SqueezeMlp
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["QIN_2021", "FrequencyChannelAttention", "dct_filters", "frequency_indices"]

QIN_2021 = Paper(
    title="FcaNet: Frequency Channel Attention Networks",
    authors="Qin, Zhang, Wu, Li",
    year=2021,
    url="https://arxiv.org/abs/2012.11879",
)

# Frequency rankings of the official code (cfzd/FcaNet ``get_freq_indices``) on a 7x7 grid, one
# digit per frequency: the u (along H) string, then the v (along W) string, best first. "top":
# ranked by single-frequency ImageNet accuracy; "low": zig-zag from the lowest frequency; "bot":
# the worst-ranked first.
_RANKINGS: dict[str, tuple[str, str]] = {
    "top": ("00600114513000324635526553342261", "01052020060463526333511242113053"),
    "low": ("00110221203401301234501234561234", "01012012230043154321065432106543"),
    "bot": ("61332412445146256162243355625536", "64466314456522514350311242115333"),
}
_COUNTS = (1, 2, 4, 8, 16, 32)
FREQ_METHODS = tuple(f"{kind}{n}" for kind in _RANKINGS for n in _COUNTS)


def frequency_indices(method: str = "top16") -> list[tuple[int, int]]:
    """The ``(u, v)`` DCT frequencies, on a 7x7 grid, that a selection ``method`` names.

    Args:
        method: ``"top"``, ``"low"`` or ``"bot"`` followed by 1, 2, 4, 8, 16 or 32 (paper
            default ``"top16"``), as in the official code.

    Returns:
        A list of ``(u, v)`` pairs, ``u`` along H and ``v`` along W.

    Example:
        >>> frequency_indices("top4")
        [(0, 0), (0, 1), (6, 0), (0, 5)]
    """
    if method not in FREQ_METHODS:
        raise ValueError(f"freq_sel must be one of {FREQ_METHODS}, got {method!r}")
    us, vs = _RANKINGS[method[:3]]
    count = int(method[3:])
    return [(int(u), int(v)) for u, v in zip(us[:count], vs[:count], strict=True)]


def _dct_basis(freq: int, size: int) -> torch.Tensor:
    """Orthonormal DCT-II basis vector ``B_freq(p)``, ``p = 0 .. size - 1``; shape ``(size,)``."""
    pos = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return basis * (math.sqrt(2.0) if freq else 1.0)


def dct_filters(
    height: int, width: int, freqs: Sequence[tuple[int, int]], channels: int
) -> torch.Tensor:
    """Multi-spectral DCT filters: channel group ``k`` gets the 2-D basis of ``freqs[k]``.

    ``filter[c, h, w] = B_u(h) B_v(w)`` with ``B_u(p) = cos(pi u (p + 1/2) / P) / sqrt(P)``, times
    ``sqrt(2)`` when ``u != 0`` (orthonormal DCT-II). The ``C`` channels are split into
    ``len(freqs)`` equal consecutive groups.

    Args:
        height: Filter height ``H``.
        width: Filter width ``W``.
        freqs: ``(u, v)`` pairs with ``0 <= u < H`` and ``0 <= v < W``.
        channels: ``C``, divisible by ``len(freqs)``.

    Returns:
        ``(C, H, W)`` float32 filters.

    Example:
        >>> dct_filters(7, 7, [(0, 0)], 2)[0, 0, 0].item()  # 1 / 7
        0.1428571...
    """
    if not freqs:
        raise ValueError("freqs must hold at least one (u, v) pair, got an empty sequence")
    if channels % len(freqs):
        raise ValueError(
            f"channels must be divisible by the number of frequencies {len(freqs)}, "
            f"got channels={channels}"
        )
    group = channels // len(freqs)
    filters = []
    for u, v in freqs:
        if not (0 <= u < height and 0 <= v < width):
            raise ValueError(f"frequency {(u, v)} is outside a {height}x{width} DCT grid")
        basis = _dct_basis(u, height)[:, None] * _dct_basis(v, width)[None, :]  # (H, W)
        filters.append(basis.expand(group, height, width))
    return torch.cat(filters).float()  # (C, H, W)


@VISION.register(
    "fca", paper=QIN_2021, tags=("channel", "gating", "frequency"), complexity="O(HWC + C^2/r)"
)
class FrequencyChannelAttention(VisionModule):
    r"""Multi-spectral channel attention: ``x * sigmoid(fc2(relu(fc1(DCT_pool(x)))))``.

    Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks", 2021,
    https://arxiv.org/abs/2012.11879. GAP is the lowest frequency of the 2-D DCT; FcaNet pools
    each channel group with a different DCT frequency instead (paper section 3.3):
    ``Freq_c = sum_{h,w} x_c(h, w) B_u(h) B_v(w)`` where group ``k`` of ``C / n`` channels uses
    frequency ``(u_k, v_k)`` (:func:`dct_filters`, a fixed buffer ``dct_filter`` of shape
    ``(C, dct_h, dct_w)``, not learned). The descriptor goes through a bias-free squeeze MLP
    ``C -> C/r -> C`` (``fc1``/``fc2``), then a sigmoid. Defaults follow the paper and the
    official code (cfzd/FcaNet): ``top16`` frequencies (``C`` must be divisible by 16),
    ``r = 16``, ``2C^2/r`` parameters (512 for ``C = 64``). A map whose size is not
    ``dct_size`` is first average-pooled to it (``adaptive_avg_pool2d``, as the official code
    does); frequencies are defined on a 7x7 grid and scaled by ``dct_size // 7``, so
    ``dct_size`` must be a multiple of 7. The official ResNets use ``dct_size`` 56, 28, 14, 7
    for the stages with 64, 128, 256, 512 bottleneck planes; our default 7 suits any input.
    The gate lies in ``(0, 1)``. 2-D maps only.

    Formula:
        $$
        \mathrm{Freq}_c = \sum_{h, w} x_c(h, w)\, B_{u_k}(h)\, B_{v_k}(w), \qquad
        Y = X \odot \sigma\big(W_2\, \delta(W_1\, \mathrm{Freq})\big)
        $$

        with $B_u(h) = \cos\big(\pi u (h + \tfrac12) / H\big)$ and frequency $(u_k, v_k)$ for
        channel
        group $k$ (`top16`).

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` (paper: r = 16).
        rd_channels: Hidden width; overrides ``rd_ratio``.
        dct_size: DCT grid ``(dct_h, dct_w)`` (int or pair), multiples of 7.
        freq_sel: Frequency selection, e.g. ``"top16"``, ``"low4"``, ``"bot1"``.
        act_layer: Hidden activation.
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> fca = FrequencyChannelAttention(64)
        >>> fca(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        dct_size: int | tuple[int, int] = 7,
        freq_sel: str = "top16",
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        dct_h, dct_w = (check_positive_int("dct_size", s) for s in to_2tuple(dct_size))
        if dct_h % 7 or dct_w % 7:
            raise ValueError(
                f"dct_size must be a multiple of 7 (frequencies live on a 7x7 grid), "
                f"got {(dct_h, dct_w)}"
            )
        self.dct_size = (dct_h, dct_w)
        self.freq_sel = freq_sel
        freqs = [(u * (dct_h // 7), v * (dct_w // 7)) for u, v in frequency_indices(freq_sel)]
        self.register_buffer("dct_filter", dct_filters(dct_h, dct_w, freqs, channels))
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.mlp = SqueezeMlp(channels, hidden, act_layer=act_layer, bias=False)
        self.gate = create_act(gate_layer, "gate_layer")

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-spectral pooling: ``(B, C, H, W) -> (B, C)`` frequency descriptors."""
        if tuple(x.shape[2:]) != self.dct_size:
            x = F.adaptive_avg_pool2d(x, self.dct_size)  # (B, C, dct_h, dct_w)
        return (x * self.dct_filter).sum(dim=(2, 3))  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        weights = self.gate(self.mlp(self.pool(x)))  # (B, C)
        return scale_channels(x, weights)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dct_size={self.dct_size}, freq_sel={self.freq_sel!r}"
