"""Head bookkeeping: ``(B, L, nh * hd) <-> (B, nh, L, hd)``."""

from __future__ import annotations

import torch

from attnzoo._checks import check_ndim, check_positive_int

__all__ = ["merge_heads", "split_heads"]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, L, nh * hd) -> (B, nh, L, hd)``.

    Example:
        >>> split_heads(torch.zeros(2, 5, 12), 3).shape
        torch.Size([2, 3, 5, 4])
    """
    check_ndim("x", x, (3,), "(B, L, nh * hd)")
    num_heads = check_positive_int("num_heads", num_heads)
    batch, length, width = x.shape
    if width % num_heads:
        raise ValueError(f"last dim {width} is not divisible by num_heads={num_heads}")
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)  # (B, nh, L, hd)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, nh, L, hd) -> (B, L, nh * hd)``.

    Example:
        >>> merge_heads(torch.zeros(2, 3, 5, 4)).shape
        torch.Size([2, 5, 12])
    """
    check_ndim("x", x, (4,), "(B, nh, L, hd)")
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)  # (B, L, nh * hd)
