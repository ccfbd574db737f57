"""Shared pieces of the positional encodings: length checks and additive 1-D tables."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int, check_probability, type_name

__all__ = ["AdditivePositionalTable", "check_length"]


def check_length(owner: str, length: int, max_len: int | None, offset: int = 0) -> None:
    """Raise ``ValueError`` naming ``max_len`` if positions ``offset .. offset+L-1`` overflow."""
    if offset < 0:
        raise ValueError(f"{owner}: offset must be >= 0, got {offset}")
    if max_len is not None and offset + length > max_len:
        raise ValueError(
            f"{owner}: positions up to {offset + length - 1} (length {length}, offset {offset}) "
            f"exceed max_len={max_len}; build it with a larger max_len"
        )


class AdditivePositionalTable(nn.Module):
    """Base of absolute encodings added to ``(B, L, C)`` tokens: ``dropout(x + table[pos])``.

    Subclasses provide :meth:`table` ``(max_len, dim)``.
    """

    def __init__(self, dim: int, *, max_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.max_len = check_positive_int("max_len", max_len)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def table(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3) or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be (B, L, C) or (L, C) with C = dim = {self.dim}, got {type_name(x)}"
            )
        length = x.shape[-2]
        check_length(type(self).__name__, length, self.max_len, offset)
        positions = self.table()[offset : offset + length].to(dtype=x.dtype)  # (L, C)
        return self.dropout(x + positions)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"
