"""``ConvNormAct``: convolution, batch norm, activation — the unit of most vision blocks."""

from __future__ import annotations

from torch import nn

from attnzoo.layers.vision_utils import LayerType, create_act

__all__ = ["ConvNormAct"]


CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class ConvNormAct(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> activation`` with "same" padding for odd kernels.

    ``spatial_dims=1`` or ``3`` builds the same unit from ``Conv1d`` / ``BatchNorm1d`` or
    ``Conv3d`` / ``BatchNorm3d``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        groups: Convolution groups.
        dilation: Convolution dilation.
        bias: Bias in the convolution (off by default: the norm has one).
        norm: Add ``BatchNorm2d``.
        act_layer: Activation name or class; ``None`` for none.
        spatial_dims: 1, 2 (default) or 3.

    Shape:
        - ``(B, C_in, H, W) -> (B, C_out, H', W')``

    Example:
        >>> import torch
        >>> ConvNormAct(3, 8, 3)(torch.zeros(1, 3, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        bias: bool = False,
        norm: bool = True,
        act_layer: LayerType | None = "relu",
        spatial_dims: int = 2,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers = {
            "conv": CONVS[spatial_dims](
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                groups=groups,
                dilation=dilation,
                bias=bias,
            )
        }
        if norm:
            layers["bn"] = NORMS[spatial_dims](out_channels)
        if act_layer is not None:
            layers["act"] = create_act(act_layer)
        super().__init__(*layers.values())
        for index, key in enumerate(layers):
            self._modules[key] = self._modules.pop(str(index))
