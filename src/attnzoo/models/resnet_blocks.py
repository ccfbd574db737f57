"""Residual blocks with attention slots, and the rule that places a vision module in a ResNet.

Where a module goes is decided once per network by :func:`plan_attention` (docs/design.md
section 5: "defaults reproduce the paper"). Placements, per block:

- ``residual``: on the residual branch after its last BN, before the addition (SE, ECA, CBAM,
  GC, and by default every gating module whose paper fixes nothing else).
- ``pre_conv``: before every conv of the block's branch (GCT: "apply GCT before every conv").
- ``conv3x3``: right after the block's last 3x3 conv, before its BN (SimAM's official ResNets).
- ``replace_conv3x3``: the module replaces the 3x3 conv and its BN; a stride-2 bottleneck then
  average-pools (3x3, stride 2) as ResNeSt does (SK, split attention).
- ``after_block``: a whole block after the residual block's output (Non-local, A2 and every other
  module tagged ``self_attention`` except GC; BAM at stage ends; Residual Attention modules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_choice, type_name
from attnzoo.layers.vision_utils import create_act
from attnzoo.registry import get_entry

__all__ = [
    "PLACEMENTS",
    "AttentionPlan",
    "BasicBlock",
    "Bottleneck",
    "plan_attention",
]

PLACEMENTS = ("residual", "pre_conv", "conv3x3", "replace_conv3x3", "after_block")
BLOCK_RULES = ("all", "first", "last", "penultimate", "every_other")

# name -> (placement, stages or None for all, blocks). None stages: every stage; "but_last":
# every stage except the last (BAM and Residual Attention sit between stages).
_PAPER_LAYOUT: dict[str, tuple[str, tuple[int, ...] | str | None, str]] = {
    # Wang et al. 2018: "1 block right before the last residual block of res4" (res4 = stage 3).
    "non_local": ("after_block", (3,), "penultimate"),
    # Cao et al. 2019: GC after the last 1x1 conv of every block of c3-c5, before the addition.
    "gc": ("residual", (2, 3, 4), "all"),
    # Park et al. 2018: BAM at every bottleneck of the network, i.e. where a stage ends.
    "bam": ("after_block", "but_last", "last"),
    # Yang et al. 2021 (official ResNets): after the 3x3 conv of every block.
    "simam": ("conv3x3", None, "all"),
    # Yang et al. 2020: before every convolution.
    "gct": ("pre_conv", None, "all"),
    # Li et al. 2019 / Zhang et al. 2020: the SK / split-attention conv replaces the 3x3 conv.
    "sk": ("replace_conv3x3", None, "all"),
    "split": ("replace_conv3x3", None, "all"),
    # Chen et al. 2018: the double attention block is plugged in like a Non-local block.
    "a2": ("after_block", (3,), "penultimate"),
    # Wang et al. 2017 (Attention-56): one attention module after the first unit of stages 1-3.
    "residual_attention": ("after_block", "but_last", "first"),
}
# Papers that do not fix a ResNet placement follow their family: blocks tagged
# "self_attention" are inserted like Non-local; everything else gates the residual branch.
_SELF_ATTENTION_LAYOUT = ("after_block", (3,), "penultimate")
_DEFAULT_LAYOUT = ("residual", None, "all")


@dataclass(frozen=True)
class AttentionPlan:
    """Where and how to build the attention modules of a ResNet.

    Args:
        name: Registry name of the module.
        placement: One of :data:`PLACEMENTS`.
        stages: 1-based stage indices that get modules (stage 1 = ``layer1`` = res2/conv2_x).
        blocks: Block rule (one of ``BLOCK_RULES``) or explicit block indices within a stage.
        kwargs: Keyword options per stage (``stage -> dict``).
    """

    name: str
    placement: str
    stages: tuple[int, ...]
    blocks: str | tuple[int, ...]
    kwargs: Mapping[int, dict[str, Any]] = field(default_factory=dict)

    def blocks_in(self, stage: int, depth: int) -> set[int]:
        """Indices of the blocks of ``stage`` (with ``depth`` blocks) that get a module."""
        if stage not in self.stages:
            return set()
        if not isinstance(self.blocks, str):
            if any(not -depth <= b < depth for b in self.blocks):
                raise ValueError(
                    f"attention_blocks {self.blocks} has an index outside stage {stage}, which "
                    f"has {depth} blocks"
                )
            return {b % depth for b in self.blocks}
        return {
            "all": set(range(depth)),
            "first": {0},
            "last": {depth - 1},
            "penultimate": {max(depth - 2, 0)},
            "every_other": set(range(0, depth, 2)),
        }[self.blocks]

    def build(self, stage: int, channels: int) -> nn.Module:
        """One attention module for ``channels`` channels in ``stage``."""
        return get_entry(self.name).obj(channels, **self.kwargs.get(stage, {}))


def plan_attention(
    name: str,
    num_stages: int,
    *,
    kwargs: Mapping[str, Any] | None = None,
    placement: str | None = None,
    stages: Sequence[int] | None = None,
    blocks: str | Sequence[int] | None = None,
    stage_kwargs: Sequence[Mapping[str, Any]] | None = None,
) -> AttentionPlan:
    """Resolve the placement of vision module ``name`` in a network of ``num_stages`` stages.

    Unset options take the paper's layout for ``name`` (see the module docstring and
    ``_PAPER_LAYOUT``); ``stage_kwargs[i]`` updates ``kwargs`` for stage ``i + 1``.

    Raises:
        ValueError: unknown name, a module that is not single-input and shape-preserving,
            unknown placement or block rule, stage outside ``1..num_stages``.
    """
    entry = get_entry(name)
    cls = entry.obj
    if entry.family != "vision":
        raise ValueError(f"attention must name a vision module, {name!r} is a {entry.family} entry")
    if getattr(cls, "num_inputs", 1) != 1 or not getattr(cls, "preserves_shape", True):
        raise ValueError(
            f"attention={name!r} takes {getattr(cls, 'num_inputs', 1)} inputs or changes the "
            "shape, so it cannot sit inside a ResNet; use a single-input, shape-preserving module"
        )
    layout = _PAPER_LAYOUT.get(name)
    if layout is None:
        layout = _SELF_ATTENTION_LAYOUT if "self_attention" in entry.tags else _DEFAULT_LAYOUT
    default_placement, default_stages, default_blocks = layout
    placement = check_choice("attention_placement", placement or default_placement, PLACEMENTS)
    if stages is None:
        if default_stages is None:
            stages = range(1, num_stages + 1)
        elif default_stages == "but_last":
            stages = range(1, max(num_stages, 2))
        else:  # the paper's stages that this network has
            stages = [s for s in default_stages if s <= num_stages] or [num_stages]
    stages = tuple(stages)
    for stage in stages:
        if isinstance(stage, bool) or not isinstance(stage, int) or not 1 <= stage <= num_stages:
            raise ValueError(
                f"attention_stages must hold stage numbers in 1..{num_stages} (stage 1 = layer1 "
                f"= res2), got {stages!r}"
            )
    blocks = default_blocks if blocks is None else blocks
    if isinstance(blocks, str):
        check_choice("attention_blocks", blocks, BLOCK_RULES)
    elif not isinstance(blocks, Sequence) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in blocks
    ):
        raise TypeError(
            f"attention_blocks must be one of {BLOCK_RULES} or a sequence of block indices, "
            f"got {type_name(blocks)}"
        )
    else:
        blocks = tuple(blocks)
    base = dict(kwargs or {})
    per_stage = {s: dict(base) for s in range(1, num_stages + 1)}
    if stage_kwargs is not None:
        if len(stage_kwargs) != num_stages:
            raise ValueError(
                f"attention_stage_kwargs must have one dict per stage ({num_stages}), got "
                f"{len(stage_kwargs)}"
            )
        for stage, extra in enumerate(stage_kwargs, start=1):
            if not isinstance(extra, Mapping):
                raise TypeError(
                    f"attention_stage_kwargs[{stage - 1}] must be a dict, got {type_name(extra)}"
                )
            per_stage[stage].update(extra)
    return AttentionPlan(name, placement, stages, blocks, per_stage)


Factory = Callable[[int], nn.Module]


def _apply(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


class _Block(nn.Module):
    """Shared slots and the addition of the two residual block types."""

    expansion = 1

    def _attach(self, placement: str | None, make: Factory | None, widths: dict[str, Any]) -> None:
        # widths: channels at each slot: "pre" (one per conv input), "mid", "out".
        self.attn_pre = None  # ModuleList: one module before each conv of the branch
        self.attn_mid = None
        self.attn = None
        self.attn_post = None
        if make is None:
            return
        if placement == "pre_conv":
            self.attn_pre = nn.ModuleList(make(c) for c in widths["pre"])
        elif placement == "conv3x3":
            self.attn_mid = make(widths["mid"])
        elif placement == "residual":
            self.attn = make(widths["out"])
        elif placement == "after_block":
            self.attn_post = make(widths["out"])

    def _pre(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return x if self.attn_pre is None else self.attn_pre[index](x)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _apply(self.attn, out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return _apply(self.attn_post, self.act(out + shortcut))


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
    )


def _replace_conv3x3(make: Factory, width: int, stride: int) -> tuple[nn.Module, nn.Module]:
    """The module standing in for a 3x3 conv + BN, and the pooling that carries the stride."""
    pool = nn.AvgPool2d(3, stride=stride, padding=1) if stride > 1 else nn.Identity()
    return make(width), pool


class BasicBlock(_Block):
    """Two 3x3 convs (He et al. 2016) with attention slots; torchvision parameter names.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: Stride of the first conv (and of the projection shortcut).
        placement: Attention placement (one of ``PLACEMENTS``) or None.
        make_attn: ``channels -> module`` factory, or None for a plain block.

    Shape:
        - ``(B, inplanes, H, W) -> (B, planes, H / stride, W / stride)``

    Example:
        >>> BasicBlock(8, 16, 2)(torch.randn(1, 8, 6, 6)).shape
        torch.Size([1, 16, 3, 3])
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        placement: str | None = None,
        make_attn: Factory | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act = create_act("relu")
        if placement == "replace_conv3x3" and make_attn is not None:
            self.conv2 = make_attn(planes)  # stands in for conv2 + bn2
            self.bn2 = nn.Identity()
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride)
        widths = {"pre": (inplanes, planes), "mid": planes, "out": planes}
        self._attach(placement, make_attn, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(self._pre(0, x))))
        out = self.bn2(_apply(self.attn_mid, self.conv2(self._pre(1, out))))
        return self._finish(out, x)


class Bottleneck(_Block):
    """1x1 - 3x3 - 1x1 bottleneck, stride on the 3x3 (torchvision "v1.5"), attention slots.

    Args:
        inplanes: Input channels.
        planes: Bottleneck width; the output has ``4 * planes`` channels.
        stride: Stride of the 3x3 conv (and of the projection shortcut).
        placement: Attention placement (one of ``PLACEMENTS``) or None.
        make_attn: ``channels -> module`` factory, or None for a plain block.

    Shape:
        - ``(B, inplanes, H, W) -> (B, 4 planes, H / stride, W / stride)``

    Example:
        >>> Bottleneck(16, 4)(torch.randn(1, 16, 5, 5)).shape
        torch.Size([1, 16, 5, 5])
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        placement: str | None = None,
        make_attn: Factory | None = None,
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.pool = nn.Identity()
        if placement == "replace_conv3x3" and make_attn is not None:
            self.conv2, self.pool = _replace_conv3x3(make_attn, planes, stride)
            self.bn2 = nn.Identity()
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.act = create_act("relu")
        self.downsample = _downsample(inplanes, out, stride)
        widths = {"pre": (inplanes, planes, planes), "mid": planes, "out": out}
        self._attach(placement, make_attn, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(self._pre(0, x))))
        out = _apply(self.attn_mid, self.conv2(self._pre(1, out)))
        out = self.pool(self.act(self.bn2(out)))
        out = self.bn3(self.conv3(self._pre(2, out)))
        return self._finish(out, x)
