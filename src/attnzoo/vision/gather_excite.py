"""Gather-Excite (Hu et al. 2018): gather context over an extent, excite by a gated upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo.layers.helpers import to_2tuple
from attnzoo.layers.mlp import SqueezeMlp
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["GatherExcite"]

HU_2018_GE = Paper(
    title="Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks",
    authors="Hu, Shen, Albanie, Sun, Vedaldi",
    year=2018,
    url="https://arxiv.org/abs/1810.12348",
)

_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _extent_avg_pool(x: torch.Tensor, extent: int) -> torch.Tensor:
    """``avg_pool(kernel 2e-1, stride e, padding e-1, count_include_pad=False)`` in 1/2/3-D.

    Written as (mean of zero-padded ``x``) / (mean of the zero-padded valid mask), which is the
    same average; ``F.avg_pool3d`` rejects a depth smaller than the kernel even when the padding
    covers it, so the padding is applied explicitly.
    """
    nd = x.dim() - 2
    kernel, pad = 2 * extent - 1, [extent - 1] * (2 * nd)
    pool = _AVG_POOL[nd]
    ones = x.new_ones((1, 1, *x.shape[2:]))
    total = pool(F.pad(x, pad), kernel, stride=extent)  # (B, C, ceil(H/e), ...)
    count = pool(F.pad(ones, pad), kernel, stride=extent)  # (1, 1, ceil(H/e), ...)
    return total / count


@VISION.register(
    "gather_excite",
    paper=HU_2018_GE,
    tags=("mixed", "gating", "parameter_free"),
    complexity="O(HWC)",
)
class GatherExcite(VisionModule):
    r"""Gather-Excite: ``out = x * sigmoid(upsample(mlp(gather(x))))``.

    Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional
    Neural Networks", NeurIPS 2018, https://arxiv.org/abs/1810.12348. The gather operator
    aggregates each channel over a spatial extent ``e`` (a ``(B, C, ceil(H/e), ceil(W/e))``
    map; ``extent=0`` means global, ``(B, C, 1, 1)``), the excite operator resizes it back by
    nearest-neighbour interpolation and gates ``x`` with its sigmoid. The three variants:

    - GE-theta- (default, no parameters): ``gather`` is average pooling. For ``e > 0`` it is
      ``avg_pool(kernel 2e-1, stride e, padding e-1, count_include_pad=False)``, the choice of
      timm's ``GatherExcite`` (the paper does not fix the kernel). Global extent matches the
      official Caffe ``RN50-GEPF`` (global average pooling, sigmoid, product).
    - GE-theta (``extra_params=True``): the gather is learned. Global extent: one depthwise conv
      with a kernel of the whole feature map (``feat_size``, no bias) and BN, as the official
      ``RN50-GEP``. Extent ``e`` (a power of two): ``log2(e)`` depthwise 3x3 stride-2 convs
      (no bias), each followed by BN, with ReLU between them (timm's reading of the paper).
    - GE-theta+ (``extra_params=True, use_mlp=True``): the gathered map also passes through an
      SE-style MLP ``fc1: C -> C/r``, ReLU, ``fc2: C/r -> C`` (with biases) at every position.
      ``use_mlp`` without ``extra_params`` at global extent is SE.

    timm 1.0.31 cannot build ``use_mlp=True`` or ``extra_params=True`` (it passes ``*dd`` where
    ``**dd`` is meant and raises ``TypeError``); the parameter-free variant agrees with
    ``GatherExcite(C, use_mlp=False, extent=e)``.

    Formula:
        $$
        Y = X \odot \sigma\big(\mathrm{Up}(\xi_G(X))\big)
        $$

        with $\xi_G$ average pooling over extent $e$ (global by default; no parameters),
        $\mathrm{Up}$
        nearest-neighbour resizing back to $H \times W$.

    Args:
        channels: Input channels ``C``.
        extent: Gather extent ``e``: 0 for global (paper's best), else a positive int
            (GE-theta needs a power of two, e.g. 2, 4, 8).
        extra_params: Learned depthwise gather (GE-theta).
        feat_size: ``(H, W)`` of the input, required by ``extra_params`` with global extent;
            inputs of another size are rejected.
        use_mlp: SE-style MLP after the gather (GE-theta+).
        rd_ratio: Reduction ratio ``1/r`` of the MLP (paper: r = 16).
        rd_channels: Hidden width of the MLP; overrides ``rd_ratio``.
        act_layer: Activation between gather convs and in the MLP.
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same. The parameter-free default also takes ``(B, C, L)`` and
          ``(B, C, D, H, W)``; ``extra_params=True`` takes 2-D maps only.

    Example:
        >>> ge = GatherExcite(64, extent=2)
        >>> ge(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> len(list(ge.parameters()))
        0
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        extent: int = 0,
        extra_params: bool = False,
        feat_size: int | tuple[int, int] | None = None,
        use_mlp: bool = False,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        self.extent = check_positive_int("extent", extent, minimum=0)
        self.feat_size: tuple[int, int] | None = None
        self.gather: nn.Sequential | None = None
        if extra_params:
            self.spatial_dims = (2,)  # learned 2-D convs: this instance takes 2-D maps only
            self.gather = self._learned_gather(channels, feat_size, act_layer)
        elif feat_size is not None:
            raise ValueError(
                "feat_size is used only with extra_params=True (GE-theta), "
                f"got feat_size={feat_size!r} with extra_params=False"
            )
        if use_mlp:
            hidden = reduced_channels(channels, rd_ratio, rd_channels)
            self.mlp: nn.Module = SqueezeMlp(channels, hidden, act_layer=act_layer)
        else:
            self.mlp = nn.Identity()
        self.gate = create_act(gate_layer, "gate_layer")

    def _learned_gather(
        self, channels: int, feat_size: int | tuple[int, int] | None, act_layer: LayerType
    ) -> nn.Sequential:
        gather = nn.Sequential()
        if self.extent == 0:
            if feat_size is None:
                raise ValueError(
                    "feat_size (H, W) is required for extra_params=True with extent=0 "
                    "(the global depthwise conv has a kernel of the whole map), got None"
                )
            size = to_2tuple(feat_size)
            self.feat_size = (
                check_positive_int("feat_size[0]", size[0]),
                check_positive_int("feat_size[1]", size[1]),
            )
            gather.add_module(
                "conv1", nn.Conv2d(channels, channels, self.feat_size, groups=channels, bias=False)
            )
            gather.add_module("norm1", nn.BatchNorm2d(channels))
            return gather
        num_conv = self.extent.bit_length() - 1
        if self.extent < 2 or self.extent != 1 << num_conv:
            raise ValueError(
                "extent must be 0 or a power of two >= 2 with extra_params=True "
                f"(log2(extent) stride-2 convs), got {self.extent}"
            )
        for i in range(1, num_conv + 1):
            conv = nn.Conv2d(
                channels, channels, 3, stride=2, padding=1, groups=channels, bias=False
            )
            gather.add_module(f"conv{i}", conv)
            gather.add_module(f"norm{i}", nn.BatchNorm2d(channels))
            if i != num_conv:
                gather.add_module(f"act{i}", create_act(act_layer))
        return gather

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, resized to ``x`` (``(B, C, 1, 1)`` for a parameter-free global gather)."""
        spatial = x.shape[2:]
        if self.gather is not None:
            if self.feat_size is not None and tuple(spatial) != self.feat_size:
                raise ValueError(
                    f"x must have spatial size feat_size={self.feat_size} (the global "
                    f"depthwise gather was built for it), got {type_name(x)}"
                )
            context = self.gather(x)
        elif self.extent == 0:
            context = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        else:
            context = _extent_avg_pool(x, self.extent)
        context = self.mlp(context.movedim(1, -1)).movedim(-1, 1)  # (B, C, h, w)
        if any(s != 1 for s in context.shape[2:]):
            context = F.interpolate(context, size=spatial, mode="nearest")
        return self.gate(context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x * self.attention(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, extent={self.extent}"
