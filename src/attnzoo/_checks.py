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
    "check_floating",
    "check_module_dtype",
    "check_ndim",
    "check_positive_int",
    "check_probability",
    "parameter_dtype",
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


_CONVERTERS = {
    torch.float16: "half",
    torch.bfloat16: "bfloat16",
    torch.float32: "float",
    torch.float64: "double",
}


def _converter(dtype: torch.dtype) -> str:
    """The ``Tensor``/``Module`` method converting to ``dtype``: ``half()``, ``to(...)`` ..."""
    method = _CONVERTERS.get(dtype)
    return f"{method}()" if method else f"to({dtype})"


def check_floating(name: str, x: Any, layout: str = "") -> torch.Tensor:
    """``x`` if it is a floating tensor; ``TypeError`` naming ``name`` (and the fix) otherwise.

    Integer and bool tensors would give truncated or garbage results (``x + table`` rounded to
    ints), so they are refused with the conversion to use.

    Example:
        >>> check_floating("x", torch.zeros(2)).dtype
        torch.float32
    """
    if not isinstance(x, torch.Tensor):
        hint = f" {layout}" if layout else ""
        raise TypeError(f"{name} must be a torch.Tensor{hint}, got {type_name(x)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor, got dtype {x.dtype}; convert it with "
            f"{name}.float() (token ids go through an nn.Embedding first)"
        )
    return x


def parameter_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """Dtype of ``module``'s first floating parameter, or None when it has none."""
    for param in module.parameters():
        if param.is_floating_point():
            return param.dtype
    return None


def check_module_dtype(name: str, x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """``x`` if its dtype equals the dtype of ``module``'s floating parameters.

    A float16 input into a float32 module would otherwise fail deep inside with a raw PyTorch
    error (``mat1 and mat2 must have the same dtype``), or silently compute in a promoted dtype.
    Modules without floating parameters accept any floating dtype. Inside ``torch.autocast``
    the check is skipped: autocast chooses the dtype of every op itself.

    Raises:
        TypeError: naming ``name``, both dtypes and both fixes (convert the module or the input).
    """
    expected = parameter_dtype(module)
    if expected is None or x.dtype == expected or torch.is_autocast_enabled(x.device.type):
        return x
    owner = type(module).__name__
    raise TypeError(
        f"{name} has dtype {x.dtype} but the parameters of {owner} are {expected}; convert "
        f"the module (module.{_converter(x.dtype)}) or the input ({name}.{_converter(expected)})"
    )


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
