"""Triplet attention (Misra et al. 2021): three Z-pool + 7x7 conv gates on rotated views."""

from __future__ import annotations

import torch

from attnzoo.layers.vision_utils import LayerType, check_spatial_dims
from attnzoo.layers.zpool import ZPoolGate
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["TripletAttention"]

# Branches per layout: name -> permutation of x's dims (its dim 1 is the axis the branch pools).
# Images keep the official branches; sequences and volumes pool each axis in turn.
VIEWS = {
    1: {"c": (0, 2, 1), "l": (0, 1, 2)},
    2: {"cw": (0, 2, 1, 3), "hc": (0, 3, 2, 1), "hw": (0, 1, 2, 3)},
    3: {
        "chw": (0, 2, 1, 3, 4),
        "cdw": (0, 3, 1, 2, 4),
        "cdh": (0, 4, 1, 2, 3),
        "dhw": (0, 1, 2, 3, 4),
    },
}

MISRA_2021 = Paper(
    title="Rotate to Attend: Convolutional Triplet Attention Module",
    authors="Misra, Nalamada, Arasanipalai, Hou",
    year=2021,
    url="https://arxiv.org/abs/2010.03045",
)


@VISION.register(
    "triplet",
    paper=MISRA_2021,
    tags=("mixed", "gating"),
    complexity="O(HWC + k^2 (HW + HC + CW))",
)
class TripletAttention(VisionModule):
    r"""Triplet attention: the mean of three gated views, ``out = x * (g_cw + g_hc + g_hw) / 3``.

    Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention
    Module", WACV 2021, https://arxiv.org/abs/2010.03045. Each branch is one
    :class:`~attnzoo.layers.zpool.ZPoolGate` (Z-pool ``[max, mean]`` over the leading dim, ``k x k``
    conv 2 -> 1 without bias, ``BatchNorm2d(1, momentum=0.01)``, sigmoid) applied to a rotated
    view of ``x``, exactly as the official code (landskape-ai/triplet-attention):

    - ``cw``: ``x`` permuted to ``(B, H, C, W)``: pools over ``H``, gates the ``(C, W)`` plane;
    - ``hc``: ``x`` permuted to ``(B, W, H, C)``: pools over ``W``, gates the ``(H, C)`` plane;
    - ``hw``: ``x`` itself: pools over ``C``, gates the ``(H, W)`` plane (CBAM's spatial gate).

    Each gated view is permuted back and the three are averaged (two with ``no_spatial``).
    Parameters: 3 x (2 k^2 + 2) = 300 for k = 7, whatever ``C``.

    Sequences and volumes (``spatial_dims=1`` or ``3``, an addition): the same rotation with
    one branch per axis of ``(C, *spatial)`` — pool that axis, gate the others with a ``k`` or
    ``k x k x k`` Z-pool gate — averaged: ``c`` (pool ``L``) and ``l`` (pool ``C``, the spatial
    branch) for ``(B, C, L)``; ``chw``, ``cdw``, ``cdh`` and ``dhw`` (the spatial branch) for
    ``(B, C, D, H, W)``. ``no_spatial`` drops the branch that pools ``C``.

    Formula:
        $$
        Y = \frac{1}{3}\Big(g_{cw}(X) + g_{hc}(X) + g_{hw}(X)\Big) \odot X, \qquad
        g(X) = \sigma\big(\mathrm{BN}(f^{k\times k}([\max X; \mathrm{mean}\, X]))\big)
        $$

        each gate pooling over one dimension of a rotated view ($H$, $W$ or $C$).

    Args:
        channels: Input channels ``C`` (the parameters do not depend on it).
        kernel_size: Odd kernel of the three convs (paper: 7).
        no_spatial: Drop the ``hw`` branch (paper ablation; 200 parameters).
        gate_layer: Gate activation.
        spatial_dims: Spatial dims of the input: 1, 2 (the paper's images) or 3.

    Shape:
        - x: ``(B, C, H, W)`` -> same; ``(B, C, L)`` or ``(B, C, D, H, W)`` with
          ``spatial_dims=1`` or ``3`` (an instance takes the layout it was built for).

    Example:
        >>> triplet = TripletAttention(64)
        >>> triplet(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in triplet.parameters())
        300
    """

    spatial_dims = (1, 2, 3)  # each instance takes the one layout its spatial_dims= built

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 7,
        no_spatial: bool = False,
        gate_layer: LayerType = "sigmoid",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(channels)
        self.no_spatial = bool(no_spatial)
        dims = check_spatial_dims(spatial_dims)
        self.spatial_dims = (dims,)  # this instance's layout
        self.views = {  # branch name -> the permutation that brings its pooled axis to dim 1
            name: order
            for name, order in VIEWS[dims].items()
            if not (self.no_spatial and order[1] == 1)  # no_spatial: no branch pools C
        }
        for name in VIEWS[dims]:
            gate = ZPoolGate(kernel_size, gate_layer=gate_layer, spatial_dims=dims)
            setattr(self, name, gate if name in self.views else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        total = None
        for name, order in self.views.items():
            inverse = [order.index(i) for i in range(len(order))]
            gated = getattr(self, name)(x.permute(*order)).permute(*inverse)  # (B, C, *spatial)
            total = gated if total is None else total + gated
        return total / len(self.views)
