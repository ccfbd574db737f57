"""Argument checks shared by every family.

Each check raises ``TypeError`` or ``ValueError`` whose message names the argument, what was
expected and what was given, so callers never need ``assert``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_finite",
    "check_ndim",
    "check_positive_int",
    "check_probability",
    "type_name",
]


def type_name(value: Any) -> str:
    """Short description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)} of dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` no smaller than ``minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1)`` (a dropout probability)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float in [0, 1), got {type_name(value)}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_finite(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite float (and ``> 0`` when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a finite float, got {type_name(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_ndim(name: str, x: Any, ndims: Iterable[int], layout: str = "") -> torch.Tensor:
    """``x`` if it is a tensor with one of the ranks in ``ndims``."""
    ndims = tuple(ndims)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type_name(x)}")
    if x.dim() not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {want}{hint}, got shape {tuple(x.shape)}")
    return x
