"""Selective Kernel (Li et al. 2019): softmax attention over convolution branches of different size.

Also holds :class:`BranchAttention`, the fuse-and-select step shared with ResNeSt's split
attention (``attnzoo.vision.split``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.channel_ops import spatial_mean
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["LI_2019", "BranchAttention", "RadixSoftmax", "SelectiveKernel"]

LI_2019 = Paper(
    title="Selective Kernel Networks",
    authors="Li, Wang, Hu, Yang",
    year=2019,
    url="https://arxiv.org/abs/1903.06586",
)


class RadixSoftmax(nn.Module):
    """Branch weights from logits: softmax over the ``R`` branches, or sigmoid when ``R = 1``.

    The logits come from a (grouped) 1x1 layer and are laid out ``(K, R, C/K)`` per sample
    (``K`` groups, the cardinality); the weights are returned branch-major, ``(B, R, C)``, as the
    ``rSoftMax`` of ResNeSt. With ``K = 1`` this is a softmax of the logits viewed as
    ``(B, R, C)`` (SKNet's select step).

    Args:
        radix: Branches ``R``.
        groups: Cardinality ``K``.

    Shape:
        - logits: ``(B, R * C)`` -> ``(B, R, C)``

    Example:
        >>> RadixSoftmax(2, 1)(torch.zeros(3, 8)).sum(dim=1)[0]
        tensor([1., 1., 1., 1.])
    """

    def __init__(self, radix: int, groups: int = 1) -> None:
        super().__init__()
        self.radix = check_positive_int("radix", radix)
        self.groups = check_positive_int("groups", groups)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        batch, width = logits.shape
        if self.radix == 1:
            return torch.sigmoid(logits).unsqueeze(1)  # (B, 1, C)
        per_group = width // (self.groups * self.radix)  # explicit sizes: B = 0 is valid
        logits = logits.view(batch, self.groups, self.radix, per_group)  # (B, K, R, C/K)
        logits = logits.transpose(1, 2)  # (B, R, K, C/K)
        return F.softmax(logits, dim=1).reshape(batch, self.radix, width // self.radix)  # (B, R, C)

    def extra_repr(self) -> str:
        return f"radix={self.radix}, groups={self.groups}"


class BranchAttention(nn.Module):
    """Fuse ``R`` branches, then select: ``sum_r a_r U_r``, ``a = gate(fc2(fc1(GAP(sum_r U_r))))``.

    The attention of SKNet (fuse: ``s = GAP(U_1 + ... + U_R)``, ``z = relu(BN(fc1(s)))``; select:
    ``a = softmax_R(fc2(z))``, ``V = sum_r a_r U_r``) and of ResNeSt's split attention (the same
    with grouped, biased ``fc1``/``fc2`` and ``R = 1`` giving a sigmoid). ``fc1``/``fc2`` are 1x1
    convolutions on the pooled ``(B, C, 1, 1)`` map, as in the official code, so their weights
    load unchanged; ``gate`` is a :class:`RadixSoftmax`.

    Args:
        channels: Channels ``C`` of each branch.
        radix: Branches ``R``.
        hidden: Width of ``fc1``.
        groups: Groups (cardinality ``K``) of ``fc1``/``fc2``.
        bias: Biases in ``fc1``/``fc2``.
        norm: Batch norm after ``fc1``.
        act_layer: Activation after the norm.

    Shape:
        - branches: ``(B, R, C, H, W)`` -> ``(B, C, H, W)``

    Example:
        >>> BranchAttention(8, 2, 4)(torch.randn(2, 2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        channels: int,
        radix: int,
        hidden: int,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act_layer: LayerType = "relu",
    ) -> None:
        super().__init__()
        self.radix = check_positive_int("radix", radix)
        channels = check_positive_int("channels", channels)
        hidden = check_positive_int("hidden", hidden)
        if channels % check_positive_int("groups", groups) or hidden % groups:
            raise ValueError(
                f"groups must divide channels and hidden, got groups={groups}, "
                f"channels={channels}, hidden={hidden}"
            )
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(hidden) if norm else nn.Identity()
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, channels * radix, kernel_size=1, groups=groups, bias=bias)
        self.gate = RadixSoftmax(radix, groups)

    def forward(self, branches: torch.Tensor) -> torch.Tensor:
        pooled = spatial_mean(branches.sum(dim=1))[..., None, None]  # (B, C, 1, 1)
        logits = self.fc2(self.act(self.norm(self.fc1(pooled))))  # (B, R*C, 1, 1)
        weights = self.gate(logits.flatten(1))  # (B, R, C)
        return (branches * weights[..., None, None]).sum(dim=1)  # (B, C, H, W)


@VISION.register(
    "sk",
    paper=LI_2019,
    tags=("channel", "multi_branch"),
    complexity="O(HW M C^2 9/G + C d M)",
)
class SelectiveKernel(VisionModule):
    r"""Selective Kernel convolution: ``sum_m softmax_m(attn) * relu(BN(conv_m(x)))``.

    Li, Wang, Hu, Yang, "Selective Kernel Networks", 2019, https://arxiv.org/abs/1903.06586.
    Split: ``M`` grouped convolution branches ``U_m = relu(BN(conv_m(x)))`` with kernels 3x3,
    5x5, ... Fuse: ``s = GAP(sum_m U_m)``, ``z = relu(BN(W s))`` with ``W: C -> d`` (no
    bias) and ``d = max(C / r, L)``. Select: ``a = softmax over m of (W' z)`` with
    ``W': d -> M C`` (no bias), ``V = sum_m a_m U_m``; the branch weights sum to 1 per channel.
    Paper defaults: ``M = 2`` (``kernel_sizes=(3, 5)``), ``G = 32`` groups, ``r = 16``,
    ``L = 32``; as in the paper's SKNet-50 and the official Caffe model, a ``k x k`` branch is
    a 3x3 convolution with dilation ``(k - 1) / 2`` (``keep_3x3=False`` uses real ``k x k``
    kernels). Parameters ``M(9C^2/G + 2C) + Cd + 2d + dMC``: 8,768 for ``C = 64``, 22,080 for
    ``C = 128``. Equals timm's ``SelectiveKernel(C, groups=32, rd_channels=d,
    split_input=False)`` (timm's defaults split the input across branches, use ``groups=1`` and
    round ``d``). Unlike the gating modules, SK replaces a 3x3 convolution (it is the middle
    layer of the SKNet bottleneck), so its output is the selected branches, not ``x`` rescaled.
    Submodules: ``branches`` (``ConvNormAct``), ``attn`` (:class:`BranchAttention`, with
    ``fc1``/``norm``/``fc2`` and the softmax ``gate``). 2-D maps only.

    Formula:
        $$
        \begin{gathered}
        U_m = \delta(\mathrm{BN}(\mathrm{conv}_m(X))), \quad
        z = \delta\big(\mathrm{BN}(W\, \mathrm{GAP}(\textstyle\sum_m U_m))\big) \\
        a_m = \mathrm{softmax}_m(W'_m z), \qquad Y = \textstyle\sum_m a_m \odot U_m
        \end{gathered}
        $$

        with $M = 2$ branches (3x3 and dilated 3x3), $W: C \to \max(C/r, 32)$.

    Args:
        channels: Input and output channels ``C``.
        kernel_sizes: Kernel size of each branch (odd, >= 3); their number is ``M >= 2``.
        groups: Groups ``G`` of the branch convolutions (must divide ``C``).
        rd_ratio: Reduction ratio ``1/r`` of the fuse layer.
        rd_channels: Width ``d`` of the fuse layer; overrides ``rd_ratio`` and ``min_channels``.
        min_channels: Lower bound ``L`` of ``d``.
        keep_3x3: Build each ``k x k`` branch as a dilated 3x3 convolution (paper, official).
        act_layer: Activation of the branches and of the fuse layer.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> sk = SelectiveKernel(64)
        >>> sk(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_sizes: Sequence[int] = (3, 5),
        groups: int = 32,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        min_channels: int = 32,
        keep_3x3: bool = True,
        act_layer: LayerType = "relu",
    ) -> None:
        super().__init__(channels)
        kernel_sizes = tuple(kernel_sizes)
        if len(kernel_sizes) < 2:
            raise ValueError(f"kernel_sizes must name at least 2 branches, got {kernel_sizes}")
        for k in kernel_sizes:
            if check_positive_int("kernel_sizes", k, minimum=3) % 2 == 0:
                raise ValueError(f"kernel_sizes must be odd, got {kernel_sizes}")
        groups = check_positive_int("groups", groups)
        if channels % groups:
            raise ValueError(
                f"groups must divide channels, got groups={groups} and channels={channels}"
            )
        if rd_channels is None:
            hidden = max(
                reduced_channels(channels, rd_ratio, None, minimum=0),
                check_positive_int("min_channels", min_channels),
            )
        else:
            hidden = check_positive_int("rd_channels", rd_channels)
        self.kernel_sizes = kernel_sizes
        self.branches = nn.ModuleList(
            ConvNormAct(
                channels,
                channels,
                3 if keep_3x3 else k,
                groups=groups,
                dilation=(k - 1) // 2 if keep_3x3 else 1,
                act_layer=act_layer,
            )
            for k in kernel_sizes
        )
        self.attn = BranchAttention(
            channels, len(kernel_sizes), hidden, bias=False, norm=True, act_layer=act_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        branches = torch.stack([branch(x) for branch in self.branches], dim=1)  # (B, M, C, H, W)
        return self.attn(branches)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_sizes={self.kernel_sizes}"
