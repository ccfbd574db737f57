"""``VisionModule``: the contract shared by every ``(B, C, H, W)`` attention plug-in."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.vision_utils import check_feature_map

__all__ = ["VisionModule"]


class VisionModule(nn.Module):
    """Base of the vision family (docs/design.md section 5): ``Cls(channels, *, ...)``, ``(x)``.

    Class attributes declare what a module can take:

    - ``spatial_dims``: numbers of spatial dims accepted, ``(2,)`` for ``(B, C, H, W)`` only;
      channel and gating modules whose maths allows it add 1 (``(B, C, L)``) and 3
      (``(B, C, D, H, W)``).
    - ``num_inputs``: tensors taken by ``forward`` (2 for fusion modules such as FFM).
    - ``preserves_shape``: output shape equals input shape (False: documented, e.g. FFM).

    Args:
        channels: Input channels ``C``.
    """

    spatial_dims: tuple[int, ...] = (2,)
    num_inputs: int = 1
    preserves_shape: bool = True

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)

    def check_input(
        self, x: torch.Tensor, name: str = "x", channels: int | None = None
    ) -> torch.Tensor:
        """Validate ``x`` as ``(B, C, *spatial)`` for this module; returns it.

        See :func:`~attnzoo.layers.vision_utils.check_feature_map`: the dtype must equal that
        of the module's floating parameters, ``B = 0`` is valid, an empty spatial dim is not.
        """
        return check_feature_map(x, channels or self.channels, self.spatial_dims, name, self)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
