"""Patch embedding: an image cut into non-overlapping patches, each linearly projected (ViT)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo.layers.helpers import to_2tuple

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` image -> ``(B, N, D)`` patch tokens, ``N = (H / p) * (W / p)``.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, https://arxiv.org/abs/2010.11929,
    eq. 1: each ``p x p`` patch is flattened and multiplied by ``E``; a ``p x p`` convolution
    with stride ``p`` computes exactly that (timm's layout: ``proj`` is the ``nn.Conv2d``).

    Args:
        img_size: Image height and width (an int for square images).
        patch_size: Patch height and width; must divide ``img_size``.
        in_chans: Image channels ``C``.
        embed_dim: Token width ``D``.
        bias: Bias of the projection.

    Shape:
        - x: ``(B, C, H, W)`` with ``(H, W) == img_size`` -> ``(B, N, D)``

    Example:
        >>> embed = PatchEmbed(32, 8, in_chans=1, embed_dim=16)
        >>> embed(torch.zeros(2, 1, 32, 32)).shape, embed.grid_size
        (torch.Size([2, 16, 16]), (4, 4))
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        *,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = tuple(check_positive_int("patch_size", p) for p in to_2tuple(patch_size))
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.set_img_size(img_size)
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias
        )

    def set_img_size(self, img_size: int | tuple[int, int]) -> None:
        """Change the expected image size (the grid follows); raises if patches do not tile it."""
        size = tuple(check_positive_int("img_size", s) for s in to_2tuple(img_size))
        if size[0] % self.patch_size[0] or size[1] % self.patch_size[1]:
            raise ValueError(
                f"img_size must be divisible by patch_size {self.patch_size}, got {size}"
            )
        self.img_size = size
        self.grid_size = (size[0] // self.patch_size[0], size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got {type_name(x)}")
        if x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.img_size:
            raise ValueError(
                f"images must be (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]}), "
                f"got {tuple(x.shape)}; for another size build the model with img_size= or "
                "call resize_pos_embed(new_size)"
            )
        if not x.is_floating_point():
            raise TypeError(f"images must be a floating tensor, got dtype {x.dtype}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, patch_size={self.patch_size}, grid={self.grid_size}"
