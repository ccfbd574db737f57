"""ViT state dicts: timm's key layout both ways and position-embedding resampling.

timm's ``VisionTransformer`` fuses the three input projections of each block into one
``attn.qkv`` linear and calls the output projection ``attn.proj``; attnzoo keeps the four
projections of every attention module (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``).
Every other key is the same:

========================================  ===========================================
timm                                      attnzoo
========================================  ===========================================
``blocks.{i}.attn.qkv.weight`` (3D, D)    ``blocks.{i}.attn.{q,k,v}_proj.weight`` (D, D)
``blocks.{i}.attn.qkv.bias`` (3D,)        ``blocks.{i}.attn.{q,k,v}_proj.bias`` (D,)
``blocks.{i}.attn.proj.{weight,bias}``    ``blocks.{i}.attn.out_proj.{weight,bias}``
``patch_embed.proj``, ``cls_token``,      same names
``pos_embed``, ``blocks.{i}.norm1``,
``blocks.{i}.mlp.fc1`` ..., ``norm``,
``fc_norm``, ``head``
========================================  ===========================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from attnzoo._checks import type_name

__all__ = ["from_timm_state_dict", "is_timm_state_dict", "resample_pos_embed", "to_timm_state_dict"]

_QKV = re.compile(r"^(blocks\.\d+\.attn)\.qkv\.(weight|bias)$")
_PROJ = re.compile(r"^(blocks\.\d+\.attn)\.proj\.(weight|bias)$")
_OURS = re.compile(r"^(blocks\.\d+\.attn)\.([qkv])_proj\.(weight|bias)$")
_OUT = re.compile(r"^(blocks\.\d+\.attn)\.out_proj\.(weight|bias)$")


def is_timm_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` uses timm's fused ``attn.qkv`` layout."""
    return any(_QKV.match(key) for key in state_dict)


def from_timm_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a timm ViT state dict to attnzoo's layout (the module docstring has the map).

    Example:
        >>> sd = {"blocks.0.attn.qkv.weight": torch.zeros(6, 2)}
        >>> sorted(from_timm_state_dict(sd))  # doctest: +NORMALIZE_WHITESPACE
        ['blocks.0.attn.k_proj.weight', 'blocks.0.attn.q_proj.weight',
         'blocks.0.attn.v_proj.weight']
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type_name(state_dict)}")
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if match := _QKV.match(key):
            prefix, kind = match.groups()
            if value.shape[0] % 3:
                raise ValueError(
                    f"{key} must stack q, k and v (first dim a multiple of 3), "
                    f"got {tuple(value.shape)}"
                )
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"{prefix}.{name}_proj.{kind}"] = part
        elif match := _PROJ.match(key):
            out[f"{match.group(1)}.out_proj.{match.group(2)}"] = value
        else:
            out[key] = value
    return out


def to_timm_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Convert an attnzoo ViT state dict to timm's layout: :func:`from_timm_state_dict` undone."""
    out: dict[str, Any] = {}
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if match := _OURS.match(key):
            prefix, name, kind = match.groups()
            parts.setdefault((prefix, kind), {})[name] = value
        elif match := _OUT.match(key):
            out[f"{match.group(1)}.proj.{match.group(2)}"] = value
        else:
            out[key] = value
    for (prefix, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise ValueError(f"{prefix} lacks one of q_proj, k_proj, v_proj {kind}")
        out[f"{prefix}.qkv.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)  # (3D, ...)
    return out


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    *,
    num_prefix_tokens: int,
    old_grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resample learned ViT position embeddings to another patch grid (bicubic).

    Dosovitskiy et al. 2021, section 3.2 ("2D interpolation of the pre-trained position
    embeddings"): the prefix tokens (class token) keep their embeddings; the patch embeddings
    are laid out on their grid and interpolated (bicubic, antialiased when shrinking, as timm).

    Args:
        pos_embed: ``(1, prefix + gh * gw, D)``.
        new_grid: Target ``(gh', gw')``.
        num_prefix_tokens: Leading tokens that are not patches.
        old_grid: Source grid; default: a square grid.

    Returns:
        ``(1, prefix + gh' * gw', D)``.
    """
    if not isinstance(pos_embed, torch.Tensor) or pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must be (1, N, D), got {type_name(pos_embed)}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    count = grid.shape[1]
    if old_grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(
                f"cannot infer the grid of {count} patch position embeddings (not a square); "
                "pass old_grid"
            )
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != count:
        raise ValueError(f"old_grid {old_grid} does not hold {count} position embeddings")
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    dim = grid.shape[-1]
    image = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    image = F.interpolate(
        image.float(), size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=True
    ).to(pos_embed.dtype)
    grid = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)  # (1, N', D)
    return torch.cat([prefix, grid], dim=1)
