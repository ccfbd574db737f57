"""2-D sine-cosine positional encoding for feature maps (DETR; unnormalised: ViT/MAE style)."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnzoo._checks import check_finite, check_positive_int, type_name
from attnzoo.positional.base import check_input, check_length
from attnzoo.positional.sinusoidal import sinusoid_table
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["SinCos2d"]

CARION_2020 = Paper(
    title="End-to-End Object Detection with Transformers",
    authors="Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko",
    year=2020,
    url="https://arxiv.org/abs/2005.12872",
)


@POSITIONAL.register(
    "sincos_2d", paper=CARION_2020, tags=("absolute", "fixed", "2d"), complexity="O(H W C)"
)
class SinCos2d(nn.Module):
    r"""Separate sinusoids for rows and columns, concatenated: DETR's ``PositionEmbeddingSine``.

    Carion et al., "End-to-End Object Detection with Transformers", 2020,
    https://arxiv.org/abs/2005.12872. Half of the channels encode the row ``y``, half the column
    ``x``, each with the 1-D layout of ``sinusoidal`` (``sin`` on even, ``cos`` on odd channels,
    wavelength base ``temperature``). Positions are counted over the *real* pixels (a cumulative
    sum of the mask, 1-based as in DETR), so padding does not shift them; with
    ``normalize=True`` they are divided by the real height/width (``+ eps``) and multiplied by
    ``scale = 2 pi`` so images of any size span the same range. DETR's mask marks padding with
    ``True``; attnzoo's marks real pixels with ``True``.

    Formula:
        $$
        \begin{aligned}
        PE_{(y, x,\, 2i)} &= \sin(\hat y / T^{2i/d'}), & PE_{(y, x,\, 2i+1)} &= \cos(\hat y /
        T^{2i/d'}) \\
        PE_{(y, x,\, d' + 2i)} &= \sin(\hat x / T^{2i/d'}), & PE_{(y, x,\, d' + 2i+1)} &= \cos(\hat
        x / T^{2i/d'})
        \end{aligned}
        $$

        with $d' = C/2$, $T$ = `temperature`, $\hat y, \hat x$ the 1-based row and column counted
        over
        real pixels, times $2\pi / (H_{\mathrm{real}} + \epsilon)$ when `normalize=True`.

    Args:
        dim: Channels ``C`` (a multiple of 4: rows and columns, sine and cosine pairs).
        temperature: Wavelength base (10000).
        normalize: Normalise positions to ``(0, scale]`` (DETR: True).
        scale: Range after normalisation (``2 pi``).
        eps: Added to the denominator of the normalisation (1e-6).
        max_len: Optional limit on ``H`` and ``W`` (``None``: any).

    Shape:
        - x: ``(B, C, H, W)``; mask: ``(B, H, W)`` bool, ``True`` = real pixel
        - forward: ``x + encoding`` ``(B, C, H, W)``; encoding(mask): ``(B, C, H, W)``

    Example:
        >>> pos = SinCos2d(64)
        >>> pos.encoding(torch.ones(2, 5, 7, dtype=torch.bool)).shape
        torch.Size([2, 64, 5, 7])
    """

    def __init__(
        self,
        dim: int,
        *,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        eps: float = 1e-6,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim, minimum=4)
        if self.dim % 4:
            raise ValueError(f"dim must be a multiple of 4 (rows/cols x sin/cos), got {dim}")
        self.temperature = check_finite("temperature", temperature, positive=True)
        self.normalize = normalize
        self.scale = check_finite("scale", scale, positive=True)
        self.eps = check_finite("eps", eps)
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)

    def encoding(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 encoding for a ``(B, H, W)`` real-pixel mask."""
        if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a (B, H, W) bool tensor, got {type_name(mask)}")
        check_length(type(self).__name__, max(mask.shape[1:]), self.max_len)
        real = mask.to(torch.float64)
        y = real.cumsum(1)  # (B, H, W) 1-based row index among real pixels
        x = real.cumsum(2)  # (B, H, W)
        if self.normalize:
            y = y / (y[:, -1:, :] + self.eps) * self.scale
            x = x / (x[:, :, -1:] + self.eps) * self.scale
        half = self.dim // 2
        pos = torch.cat(
            (sinusoid_table(y, half, self.temperature), sinusoid_table(x, half, self.temperature)),
            dim=-1,
        )  # (B, H, W, C)
        return pos.permute(0, 3, 1, 2).float()  # (B, C, H, W)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input(self, x, layout="(B, C, H, W)", ndims=(4,), channel_dim=1)
        if mask is None:
            mask = torch.ones(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device)
        elif not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"mask must be a (B, H, W) = {(x.shape[0], *x.shape[2:])} bool tensor, got "
                f"{type_name(mask)}"
            )
        return x + self.encoding(mask).to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={self.temperature}, normalize={self.normalize}"
