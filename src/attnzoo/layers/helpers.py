"""Small helpers shared by modules: channel rounding, tuples."""

from __future__ import annotations

import collections.abc
from typing import Any

__all__ = ["make_divisible", "to_2tuple"]


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round ``value`` to a multiple of ``divisor``, not below ``round_limit * value``.

    The MobileNet/EfficientNet rule (and timm's ``make_divisible``). attnzoo's vision modules use
    it only where the paper does; SE, CBAM and friends keep ``channels // reduction`` as the paper.

    Example:
        >>> make_divisible(37.5, 8)
        40
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def to_2tuple(value: Any) -> tuple[Any, Any]:
    """``(value, value)`` unless ``value`` is already an iterable of two.

    Example:
        >>> to_2tuple(3), to_2tuple((3, 5))
        ((3, 3), (3, 5))
    """
    if isinstance(value, collections.abc.Iterable) and not isinstance(value, str):
        value = tuple(value)
        if len(value) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return value
    return (value, value)
