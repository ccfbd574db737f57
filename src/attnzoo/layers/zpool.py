"""Z-pool spatial gate shared by CBAM and triplet attention.

Both CBAM's spatial attention (Woo et al. 2018) and each branch of triplet attention
(Misra et al. 2021) compute ``x * sigmoid(BN(conv_kxk([max_c(x); mean_c(x)])))``: pool the
leading non-batch dimension to two maps (max and mean), mix them with one ``k x k``
convolution, normalise, gate. This file holds that computation once.
"""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.conv import CONVS, NORMS
from attnzoo.layers.vision_utils import LayerType, check_spatial_dims, create_act

__all__ = ["ZPoolGate", "zpool"]


def zpool(x: torch.Tensor) -> torch.Tensor:
    """Stack the max and the mean over dim 1: ``(B, C, *spatial) -> (B, 2, *spatial)``.

    The order is ``[max, mean]`` as in the official CBAM and triplet-attention code (the CBAM
    paper writes ``[AvgPool; MaxPool]``; the order only matters when copying weights).

    Example:
        >>> zpool(torch.tensor([[[[1.0]], [[3.0]]]])).flatten().tolist()
        [3.0, 2.0]
    """
    return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)


class ZPoolGate(nn.Module):
    """``x * gate(BN(conv_kxk(zpool(x))))``: a spatial gate shared over dim 1.

    The conv maps the 2 pooled maps to 1 (no bias, "same" padding); the norm is
    ``BatchNorm2d(1, eps=1e-5, momentum=0.01)`` as in the official CBAM / triplet code (PyTorch's
    default momentum is 0.1; it only affects the running statistics). With ``norm=False`` the
    conv output goes straight to the gate (CBAM paper form).

    With ``spatial_dims=1`` or ``3`` the same gate on ``(B, C, L)`` sequences or
    ``(B, C, D, H, W)`` volumes: a ``k`` or ``k x k x k`` convolution and the matching batch norm.

    Args:
        kernel_size: Odd kernel size ``k`` (7 in both papers).
        norm: Batch norm after the conv.
        gate_layer: Gate activation.
        spatial_dims: Spatial dims of the input: 1, 2 (the papers') or 3.

    Shape:
        - x: ``(B, C, *spatial)`` -> same; :meth:`attention` returns the ``(B, 1, *spatial)`` gate.

    Example:
        >>> gate = ZPoolGate(7)
        >>> gate(torch.randn(2, 5, 9, 7)).shape
        torch.Size([2, 5, 9, 7])
        >>> sum(p.numel() for p in gate.parameters())
        100
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        norm: bool = True,
        gate_layer: LayerType = "sigmoid",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        conv, batch_norm = CONVS[self.spatial_dims], NORMS[self.spatial_dims]
        self.conv = conv(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = batch_norm(1, eps=1e-5, momentum=0.01) if norm else nn.Identity()
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate ``(B, 1, *spatial)`` for a ``(B, C, *spatial)`` input."""
        return self.gate(self.bn(self.conv(zpool(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)
