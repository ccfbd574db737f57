"""Shared pieces of the positional encodings: input and length checks, additive 1-D tables."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import (
    check_floating,
    check_module_dtype,
    check_positive_int,
    check_probability,
    type_name,
)
from attnzoo.layers.dropout import Dropout

__all__ = ["AdditivePositionalTable", "check_input", "check_length", "check_lengths"]


def check_input(
    module: nn.Module,
    x: object,
    *,
    layout: str,
    ndims: tuple[int, ...] | None,
    channel_dim: int = -1,
    name: str = "x",
) -> torch.Tensor:
    """Validate the tensor a positional encoding is applied to; returns it.

    Raises ``TypeError`` when ``x`` is not a tensor, is not floating (integer token ids would
    give truncated integer rows: embed them first), or has a dtype other than that of the
    module's floating parameters (learned tables; the message gives both fixes,
    ``module.half()`` or ``x.float()``; fixed encodings, without parameters, accept any
    floating dtype and return it). Raises ``ValueError`` when the rank (one of ``ndims``;
    ``None``: at least 2) or the width at ``channel_dim`` (``module.dim``) is wrong.

    Empty inputs, the rule of the positional family: ``B = 0``, ``L = 0`` (or an empty
    ``H``/``W`` grid) is valid and gives the natural empty result, ``x`` plus no positions.
    Every registered encoding is held to this by ``tests/test_bad_inputs.py``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type_name(x)}")
    rank_ok = x.dim() >= 2 if ndims is None else x.dim() in ndims
    if not rank_ok or x.shape[channel_dim] != module.dim:
        where = "last dim" if channel_dim == -1 else f"dim {channel_dim}"
        raise ValueError(
            f"{name} must be {layout} with {module.dim} channels ({where}), got shape "
            f"{tuple(x.shape)}"
        )
    check_floating(name, x)
    return check_module_dtype(name, x, module)


def check_lengths(q_len: object, kv_len: object) -> tuple[int, int]:
    """``(q_len, kv_len)`` as ints ``>= 0`` (``kv_len`` defaults to ``q_len``) for score biases."""
    q_len = check_positive_int("q_len", q_len, minimum=0)
    kv_len = q_len if kv_len is None else check_positive_int("kv_len", kv_len, minimum=0)
    return q_len, kv_len


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
        self.dropout = Dropout(check_probability("dropout", dropout))

    def table(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        check_input(self, x, layout="(B, L, C) or (L, C)", ndims=(2, 3))
        length = x.shape[-2]
        check_length(type(self).__name__, length, self.max_len, offset)
        positions = self.table()[offset : offset + length].to(dtype=x.dtype)  # (L, C)
        return self.dropout(x + positions)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"
