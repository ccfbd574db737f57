"""Mask-function plumbing: the ``MaskMod`` type, combinators, ``materialize`` and ``to_string``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnzoo._checks import check_positive_int, type_name

__all__ = [
    "MaskMod",
    "and_masks",
    "block_table_mask",
    "check_len",
    "materialize",
    "not_mask",
    "or_masks",
    "to_string",
]

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""A mask function ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor`` (``True`` = may attend)."""


def check_len(name: str, value: int | None, fallback: int | None = None) -> int | None:
    """``value`` as an int >= 0, or ``fallback`` when None."""
    if value is None:
        return fallback
    return check_positive_int(name, value, minimum=0)


def block_table_mask(table: torch.Tensor, block_size: int) -> MaskMod:
    """Mask function ``table[q // block_size, kv // block_size]`` from a block table."""

    def mask_mod(b, h, q_idx, kv_idx):
        return table.to(q_idx.device)[q_idx // block_size, kv_idx // block_size]

    return mask_mod


def _check_mask_mods(owner: str, mask_mods: tuple) -> None:
    if not mask_mods:
        raise ValueError(f"{owner} needs at least one mask function")
    for i, mod in enumerate(mask_mods):
        if not callable(mod):
            raise TypeError(
                f"{owner}: mask function {i} must be callable (b, h, q_idx, kv_idx) -> bool "
                f"tensor, got {type_name(mod)}"
            )


def and_masks(*mask_mods: MaskMod) -> MaskMod:
    """Intersection: a key is visible when every mask function allows it."""
    _check_mask_mods("and_masks", mask_mods)

    def mask_mod(b, h, q_idx, kv_idx):
        out = mask_mods[0](b, h, q_idx, kv_idx)
        for other in mask_mods[1:]:
            out = out & other(b, h, q_idx, kv_idx)
        return out

    return mask_mod


def or_masks(*mask_mods: MaskMod) -> MaskMod:
    """Union: a key is visible when any mask function allows it."""
    _check_mask_mods("or_masks", mask_mods)

    def mask_mod(b, h, q_idx, kv_idx):
        out = mask_mods[0](b, h, q_idx, kv_idx)
        for other in mask_mods[1:]:
            out = out | other(b, h, q_idx, kv_idx)
        return out

    return mask_mod


def not_mask(mask_mod: MaskMod) -> MaskMod:
    """Complement: visible where ``mask_mod`` forbids."""
    _check_mask_mods("not_mask", (mask_mod,))

    def inverted(b, h, q_idx, kv_idx):
        return ~mask_mod(b, h, q_idx, kv_idx)

    return inverted


def materialize(
    mask_mod: MaskMod,
    q_len: int,
    kv_len: int | None = None,
    *,
    batch: int = 1,
    heads: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Evaluate a mask function on every ``(b, h, i, j)``: a dense ``(B, nh, L, S)`` bool tensor.

    Args:
        mask_mod: The mask function.
        q_len: Query length ``L``.
        kv_len: Key length ``S``, default ``L``.
        batch: Batch size ``B`` of the grid.
        heads: Number of heads of the grid.
        device: Device of the result.

    Returns:
        Bool tensor ``(B, nh, L, S)``, ``True`` = may attend.

    Example:
        >>> from attnzoo.masks import causal
        >>> materialize(causal(), 3).shape
        torch.Size([1, 1, 3, 3])
    """
    if not callable(mask_mod):
        raise TypeError(f"mask_mod must be callable, got {type_name(mask_mod)}")
    q_len = check_positive_int("q_len", q_len, minimum=0)
    kv_len = check_len("kv_len", kv_len, q_len)
    batch = check_positive_int("batch", batch)
    heads = check_positive_int("heads", heads)
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)  # (B, 1, 1, 1)
    h = torch.arange(heads, device=device).view(1, heads, 1, 1)  # (1, nh, 1, 1)
    q = torch.arange(q_len, device=device).view(1, 1, q_len, 1)  # (1, 1, L, 1)
    kv = torch.arange(kv_len, device=device).view(1, 1, 1, kv_len)  # (1, 1, 1, S)
    out = torch.as_tensor(mask_mod(b, h, q, kv), device=device)
    if out.dtype != torch.bool:
        raise TypeError(f"mask_mod must return a bool tensor, got dtype {out.dtype}")
    return out.expand(batch, heads, q_len, kv_len)


def to_string(
    mask: MaskMod | torch.Tensor,
    q_len: int | None = None,
    kv_len: int | None = None,
    *,
    filled: str = "█",
    empty: str = "·",
) -> str:
    r"""Draw a mask in the terminal: one line per query, one character per key.

    Args:
        mask: A mask function, or a bool tensor whose last two dims are ``(L, S)`` (the first
            batch and head are drawn).
        q_len: Query length (needed for a mask function).
        kv_len: Key length, default ``q_len``.
        filled: Character for "may attend".
        empty: Character for "masked".

    Returns:
        The drawing, lines joined with ``"\\n"``.

    Example:
        >>> from attnzoo.masks import causal
        >>> print(to_string(causal(), 3, filled="#", empty="."))
        #..
        ##.
        ###
    """
    if callable(mask):
        if q_len is None:
            raise ValueError("q_len is required to draw a mask function")
        grid = materialize(mask, q_len, kv_len)
    elif isinstance(mask, torch.Tensor) and mask.dim() >= 2:
        grid = mask
    else:
        raise TypeError(f"mask must be a mask function or a >= 2-D tensor, got {type_name(mask)}")
    if 0 in grid.shape[:-2]:
        raise ValueError(f"mask has an empty batch or head dim: nothing to draw, {type_name(grid)}")
    grid = grid[(0,) * (grid.dim() - 2)].bool().cpu()  # (L, S): first batch and head
    return "\n".join("".join(filled if cell else empty for cell in row.tolist()) for row in grid)
