"""Learned 2-D position embeddings with interpolation to new grid sizes (ViT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_choice, check_finite, check_positive_int
from attnzoo.layers.helpers import to_2tuple
from attnzoo.papers import DOSOVITSKIY_2021
from attnzoo.positional.base import check_input
from attnzoo.registry import POSITIONAL

__all__ = ["LearnedPositionalEmbedding2d"]

MODES = ("bicubic", "bilinear", "nearest")


@POSITIONAL.register(
    "learned_2d", paper=DOSOVITSKIY_2021, tags=("absolute", "learned", "2d"), complexity="O(H W C)"
)
class LearnedPositionalEmbedding2d(nn.Module):
    r"""A trainable ``(C, gh, gw)`` grid of embeddings added to a feature map or patch grid.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, https://arxiv.org/abs/2010.11929,
    section 3.2: for a grid other than the one trained on, the embeddings are resampled by 2-D
    interpolation (bicubic, as ViT and timm do). ``forward`` interpolates on the fly when
    ``interpolate=True`` and raises otherwise; :meth:`resize` resamples the parameter once, for
    fine-tuning at a new resolution.

    Formula:
        $$
        Y = X + \mathrm{interp}(P, (H, W)), \qquad P \in \mathbb{R}^{C \times g_h \times g_w}
        $$

        with bicubic interpolation when $(H, W) \ne (g_h, g_w)$.

    Args:
        dim: Channels ``C``.
        grid_size: Trained grid ``(gh, gw)`` or an int (square); ViT-B/16 at 224 px uses 14.
        interpolate: Resample for other grids in ``forward``.
        mode: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        init_std: Std of the initial normal draw (0.02, as ViT).

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> pos = LearnedPositionalEmbedding2d(16, grid_size=4)
        >>> pos(torch.zeros(2, 16, 6, 5)).shape
        torch.Size([2, 16, 6, 5])
    """

    def __init__(
        self,
        dim: int,
        *,
        grid_size: int | tuple[int, int] = 14,
        interpolate: bool = True,
        mode: str = "bicubic",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        grid = to_2tuple(grid_size)
        self.grid_size = (
            check_positive_int("grid_size", grid[0]),
            check_positive_int("grid_size", grid[1]),
        )
        self.interpolate = interpolate
        self.mode = check_choice("mode", mode, MODES)
        self.weight = nn.Parameter(torch.empty(1, self.dim, *self.grid_size))  # (1, C, gh, gw)
        nn.init.normal_(self.weight, std=check_finite("init_std", init_std, positive=True))

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """The ``(1, C, H, W)`` embeddings for a grid of ``size`` (resampled if needed)."""
        size = tuple(size)
        if size == self.grid_size:
            return self.weight
        if 0 in size:  # an empty grid: no position to interpolate (F.interpolate refuses it)
            return self.weight.new_zeros(1, self.dim, *size)  # (1, C, H, W)
        if not self.interpolate:
            raise ValueError(
                f"grid {size} differs from grid_size={self.grid_size}; build with "
                "interpolate=True or call resize()"
            )
        extra = {"align_corners": False} if self.mode != "nearest" else {}
        return F.interpolate(self.weight, size=size, mode=self.mode, **extra)

    def resize(self, grid_size: int | tuple[int, int]) -> None:
        """Resample the parameter to a new grid in place (for fine-tuning at a new size)."""
        size = to_2tuple(grid_size)
        with torch.no_grad():
            was = self.interpolate
            self.interpolate = True
            new = self.grid(size).clone()
            self.interpolate = was
        self.weight = nn.Parameter(new)
        self.grid_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, layout="(B, C, H, W)", ndims=(4,), channel_dim=1)
        return x + self.grid(tuple(x.shape[2:])).to(x.dtype)  # a no-op outside autocast

    def extra_repr(self) -> str:
        return f"dim={self.dim}, grid_size={self.grid_size}, mode={self.mode!r}"
