"""Helpers of the viz tests: PNG checks and a timm-layout stand-in for the library's ViT."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import attnzoo


def assert_png(path: Path, minimum: int = 1000) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > minimum, f"{path} is only {len(data)} bytes"


class _PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.patch_size = (patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, attention: str, options: dict) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = attnzoo.create(attention, dim, num_heads=heads, **options)

    def forward(self, x):
        return x + self.attn(self.norm(x))


class StandInViT(nn.Module):
    """The attributes the viz code reads from the library's ViT (timm layout), nothing more."""

    def __init__(
        self,
        *,
        img_size=32,
        patch_size=8,
        pos_embed="learned",
        num_classes=10,
        attention="mha",
        attention_kwargs=None,
        dim=24,
        depth=3,
        heads=3,
    ) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(img_size, patch_size, dim)
        self.num_prefix_tokens = 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        gh, gw = self.patch_embed.grid_size
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + gh * gw, dim))
        else:
            grid = torch.ones(1, gh, gw, dtype=torch.bool)
            table = attnzoo.create("sincos_2d", dim, normalize=False).encoding(grid)
            table = table.flatten(2).transpose(1, 2)  # (1, N, D)
            self.register_buffer("pos_embed", torch.cat([torch.zeros(1, 1, dim), table], 1))
        options = dict(attention_kwargs or {})
        self.blocks = nn.ModuleList(_Block(dim, heads, attention, options) for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images):
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])
