"""Helpers shared by the vision modules: activation factories, reduced widths, input checks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnzoo._checks import check_floating, check_module_dtype, check_positive_int, type_name

__all__ = [
    "ACTIVATIONS",
    "LayerType",
    "check_feature_map",
    "check_spatial_dims",
    "create_act",
    "reduced_channels",
]

LayerType = str | type[nn.Module] | Callable[[], nn.Module]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=False),
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "hard_swish": nn.Hardswish,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),
    "identity": nn.Identity,
}


def create_act(layer: LayerType, name: str = "act_layer") -> nn.Module:
    """An activation module from a name (``"relu"``, ``"sigmoid"`` ...) or a class/factory.

    Example:
        >>> create_act("sigmoid")
        Sigmoid()
    """
    if isinstance(layer, str):
        if layer not in ACTIVATIONS:
            raise ValueError(
                f"{name} must be one of {sorted(ACTIVATIONS)} or a module class, got {layer!r}"
            )
        return ACTIVATIONS[layer]()
    if callable(layer):
        module = layer()
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must build an nn.Module, got {type_name(module)}")
        return module
    raise TypeError(f"{name} must be a str or an nn.Module class, got {type_name(layer)}")


def reduced_channels(
    channels: int, rd_ratio: float, rd_channels: int | None, *, minimum: int = 1
) -> int:
    """Hidden width of a squeeze MLP: ``rd_channels`` if given, else ``int(channels * rd_ratio)``.

    No rounding to a divisor (papers use ``C / r`` exactly). Raises ``ValueError`` when the
    result is below ``minimum`` (e.g. ``channels < reduction``).

    Example:
        >>> reduced_channels(64, 1 / 16, None)
        4
    """
    channels = check_positive_int("channels", channels)
    if rd_channels is not None:
        return check_positive_int("rd_channels", rd_channels, minimum=minimum)
    if isinstance(rd_ratio, bool) or not isinstance(rd_ratio, int | float) or not rd_ratio > 0:
        raise ValueError(f"rd_ratio must be a float > 0, got {rd_ratio!r}")
    hidden = int(channels * rd_ratio + 1e-9)
    if hidden < minimum:
        raise ValueError(
            f"channels={channels} * rd_ratio={rd_ratio:g} gives {hidden} hidden channels "
            f"(< {minimum}); use more channels, a larger rd_ratio, or pass rd_channels"
        )
    return hidden


def check_feature_map(
    x: object,
    channels: int,
    spatial_dims: tuple[int, ...] = (2,),
    name: str = "x",
    module: nn.Module | None = None,
) -> torch.Tensor:
    """Validate a ``(B, C, *spatial)`` input with ``len(spatial)`` in ``spatial_dims``.

    Raises ``TypeError`` for a non-tensor, a non-floating tensor, or (with ``module``) a dtype
    other than that of the module's floating parameters — the message gives both fixes,
    ``module.half()`` or ``x.float()``; a module without floating parameters accepts any
    floating dtype. Raises ``ValueError`` for a wrong rank or channel count.

    Empty inputs, the rule of the vision family: an empty batch (``B = 0``) is valid and gives
    the natural empty result (``(0, C, H, W)`` for a shape-preserving module); an empty
    spatial dim (``H = 0`` or ``W = 0``) raises ``ValueError``, since the pooled statistics,
    convolutions and attention maps of these modules are undefined on a map with no pixel.
    Every registered vision module is held to this by ``tests/test_bad_inputs.py``.

    Example:
        >>> check_feature_map(torch.zeros(1, 4, 3, 3), 4).shape
        torch.Size([1, 4, 3, 3])
    """
    layouts = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, D, H, W)"}
    want = " or ".join(layouts.get(d, f"{d + 2}-D") for d in spatial_dims)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {want}, got {type_name(x)}")
    if x.dim() - 2 not in spatial_dims:
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (dim 1), got shape {tuple(x.shape)}"
        )
    check_floating(name, x)
    if module is not None:
        check_module_dtype(name, x, module)
    if 0 in x.shape[2:]:
        raise ValueError(
            f"{name} must have every spatial dim >= 1 (an empty map has no pixel to pool or "
            f"attend over), got shape {tuple(x.shape)}; an empty batch (B = 0) is fine"
        )
    return x


def check_spatial_dims(spatial_dims: object) -> int:
    """``spatial_dims`` as 1, 2 or 3, or a ``ValueError`` naming it."""
    if isinstance(spatial_dims, bool) or spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)
