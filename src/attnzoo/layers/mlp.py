"""MLPs: the squeeze MLP of channel attention and the transformer feed-forward block."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int, check_probability
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.vision_utils import LayerType, create_act

__all__ = ["Mlp", "SqueezeMlp"]


class SqueezeMlp(nn.Module):
    """``fc2(act(fc1(z)))`` on channel descriptors ``z`` of shape ``(..., C)``.

    The excitation MLP of SE-style modules (Hu et al. 2018): ``C -> hidden -> out``. The
    layers are ``nn.Linear`` named ``fc1``/``fc2`` (docs/design.md section 5); a ``1x1``
    convolution on a pooled map is the same map (copy weights with ``weight.view(out, in, 1, 1)``).

    Args:
        channels: Input width ``C``.
        hidden: Hidden width.
        out_channels: Output width, default ``channels``.
        act_layer: Hidden activation.
        bias: Biases in ``fc1`` and ``fc2``.

    Shape:
        - ``(..., C) -> (..., out_channels)``

    Example:
        >>> SqueezeMlp(64, 4)(torch.zeros(2, 64)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        out_channels: int | None = None,
        *,
        act_layer: LayerType = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.fc1 = nn.Linear(
            check_positive_int("channels", channels),
            check_positive_int("hidden", hidden),
            bias=bias,
        )
        self.act = create_act(act_layer)
        self.fc2 = nn.Linear(hidden, out_channels, bias=bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(z)))


class Mlp(nn.Module):
    """Transformer feed-forward block ``fc2(drop(act(fc1(x))))``, then dropout.

    Args:
        dim: Input and output width.
        hidden: Hidden width (``4 * dim`` in the Transformer).
        act_layer: Activation (``"gelu"`` in ViT, ``"relu"`` in the Transformer).
        drop: Dropout after the activation and after ``fc2``.
        bias: Biases in both layers.

    Shape:
        - ``(..., dim) -> (..., dim)``

    Example:
        >>> Mlp(16, 64)(torch.zeros(2, 3, 16)).shape
        torch.Size([2, 3, 16])
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        act_layer: LayerType = "gelu",
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(
            check_positive_int("dim", dim), check_positive_int("hidden", hidden), bias=bias
        )
        self.act = create_act(act_layer)
        self.drop1 = Dropout(check_probability("drop", drop))
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop2 = Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
