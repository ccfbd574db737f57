"""State-dict loading that names the first key that does not fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import type_name

__all__ = ["CheckedLoadMixin", "check_state_dict"]


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first key of ``state_dict`` that does not fit ``module``.

    Keys are compared in the module's order: the first missing key or shape mismatch is
    reported, then the first unexpected key.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got {type_name(state_dict)}"
        )
    owner = type(module).__name__
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise ValueError(
                f"state_dict does not fit this {owner}: missing key {key!r} (expected shape "
                f"{tuple(tensor.shape)}); was it saved from another configuration?"
            )
        given = state_dict[key]
        if isinstance(given, torch.Tensor) and given.shape != tensor.shape:
            raise ValueError(
                f"state_dict does not fit this {owner}: key {key!r} has shape "
                f"{tuple(given.shape)}, the model expects {tuple(tensor.shape)}; it was saved "
                "from another configuration"
            )
    for key in state_dict:
        if key not in expected:
            raise ValueError(
                f"state_dict does not fit this {owner}: unexpected key {key!r}; it was saved "
                "from another configuration or another model"
            )


class CheckedLoadMixin:
    """``load_state_dict`` that explains a mismatch (first bad key) with a ``ValueError``.

    Subclasses may override :meth:`adapt_state_dict` to convert foreign layouts (e.g. timm's
    ViT keys) or resample tensors before the check.
    """

    def adapt_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Hook: return ``state_dict`` converted to this model's layout (identity here)."""
        return state_dict

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of names to tensors, got {type_name(state_dict)}"
            )
        state_dict = self.adapt_state_dict(dict(state_dict))
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
