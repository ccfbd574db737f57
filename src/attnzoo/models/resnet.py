"""ResNets (He et al. 2016) with a registered vision attention module, placed as its paper does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.layers.vision_utils import check_feature_map, create_act
from attnzoo.models.resnet_blocks import AttentionPlan, BasicBlock, Bottleneck, plan_attention
from attnzoo.registry import MODELS, Paper

__all__ = [
    "HE_2016",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet_cifar",
]

HE_2016 = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    url="https://arxiv.org/abs/1512.03385",
)

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    r"""A ResNet whose blocks can carry a vision attention module from the registry.

    He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
    https://arxiv.org/abs/1512.03385. Layout and parameter names follow torchvision (``conv1``,
    ``bn1``, ``layer1`` ... ``layerN``, ``fc``; stride on the bottleneck's 3x3 conv, "v1.5"), so
    the plain networks have torchvision's parameter counts and state-dict keys. Stages are
    numbered from 1: stage ``s`` is ``layer{s}``, i.e. res{s+1} / conv{s+1}_x in the papers
    (Non-local's "res4" is stage 3; GCNet's "c3-c5" are stages 2-4).

    ``attention`` names a registered vision module; each one is built as
    ``attnzoo.create(attention, channels, **attention_kwargs)`` with the width of its slot.
    Unless overridden, placement, stages and blocks follow the module's paper:

    - ``residual`` (default for SE, ECA, CBAM, GC and every other gating module): on the
      residual branch after the last BN, before the addition, in every block (GC: stages 2-4,
      the c3-c5 of Cao et al.).
    - ``after_block``: Non-local (Wang et al. 2018) inserts whole blocks after residual blocks:
      by default one block right before the last residual block of res4 (``stages=(3,),
      blocks="penultimate"``); their 5-block setting is ``stages=(2, 3),
      blocks="every_other"`` and the 10-block one ``stages=(2, 3), blocks="all"``. Other
      modules tagged ``self_attention`` (DNL, CCNet, PSA, Outlook ...) whose papers do not fix
      a backbone placement follow the same rule. BAM goes after the last block of every stage
      but the last (Park et al.: "at each bottleneck"), Residual Attention after the first
      block of every stage but the last (Attention-56).
    - ``conv3x3``: after the block's last 3x3 conv, before its BN (SimAM).
    - ``pre_conv``: before every conv of the residual branch (GCT); the shortcut sees ``x``.
    - ``replace_conv3x3``: the module replaces the 3x3 conv + BN (SK, split attention); in a
      stride-2 bottleneck an average pool (3x3, stride 2) carries the stride.

    Modules that take two inputs or change the shape (FFM, reverse attention) are rejected.
    Backbone convs are He-initialised (fan out) and BNs set to (1, 0); attention modules keep
    their own initialisation (e.g. zero-initialised Non-local and GC outputs).

    Formula:
        $$
        y = \mathrm{ReLU}\big(x + \mathcal{A}(\mathcal{F}(x))\big)
        $$

        for a block with residual branch $\mathcal{F}$ (convolutions and BN) and the attention
        module $\mathcal{A}$ in the ``residual`` placement (identity without ``attention``).

    Args:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1-3x3-1x1, expansion 4).
        layers: Blocks per stage.
        widths: Block width (``planes``) per stage; the stem has ``widths[0]`` channels.
        num_classes: Classifier outputs; 0 returns pooled features.
        in_chans: Input image channels.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (3x3/1 conv).
        attention: Registry name of a vision module, or None for the plain ResNet.
        attention_kwargs: Keyword options of every attention module.
        attention_placement: Override: ``"residual"``, ``"pre_conv"``, ``"conv3x3"``,
            ``"replace_conv3x3"`` or ``"after_block"``.
        attention_stages: Override: stages (1-based) that get modules.
        attention_blocks: Override: ``"all"``, ``"first"``, ``"last"``, ``"penultimate"``,
            ``"every_other"`` or block indices within each chosen stage.
        attention_stage_kwargs: One dict per stage, updating ``attention_kwargs`` there (e.g.
            ECA kernel sizes ``[{"kernel_size": 3}, {"kernel_size": 5}, ...]``).
        zero_init_residual: Zero the last BN of every residual branch (Goyal et al. 2017).

    Shape:
        - x: ``(B, in_chans, H, W)`` -> ``(B, num_classes)`` (``(B, num_features)`` if 0)

    Example:
        >>> net = ResNet("basic", (1, 1), widths=(8, 16), num_classes=3, stem="cifar")
        >>> net(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        attention: str | None = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_placement: str | None = None,
        attention_stages: Sequence[int] | None = None,
        attention_blocks: str | Sequence[int] | None = None,
        attention_stage_kwargs: Sequence[Mapping[str, Any]] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        block_cls = _BLOCKS[check_choice("block", block, tuple(_BLOCKS))]
        layers = tuple(check_positive_int("layers[i]", d) for d in layers)
        widths = tuple(check_positive_int("widths[i]", w) for w in widths)
        if not layers or len(layers) != len(widths):
            raise ValueError(
                "layers and widths must be non-empty and of equal length, got "
                f"{layers} and {widths}"
            )
        self.in_chans = check_positive_int("in_chans", in_chans)
        num_classes = check_positive_int("num_classes", num_classes, minimum=0)
        check_choice("stem", stem, ("imagenet", "cifar"))
        self.plan: AttentionPlan | None = None
        if attention is not None:
            self.plan = plan_attention(
                attention,
                len(layers),
                kwargs=attention_kwargs,
                placement=attention_placement,
                stages=attention_stages,
                blocks=attention_blocks,
                stage_kwargs=attention_stage_kwargs,
            )
        elif any(
            o is not None
            for o in (
                attention_kwargs,
                attention_placement,
                attention_stages,
                attention_blocks,
                attention_stage_kwargs,
            )
        ):
            raise ValueError("attention options were given but attention is None; name a module")

        stem_width = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act = create_act("relu")

        attention_modules: list[nn.Module] = []

        def factory(stage: int):  # channels -> module, remembering it for the initialisation
            def make(channels: int) -> nn.Module:
                module = self.plan.build(stage, channels)
                attention_modules.append(module)
                return module

            return make

        placement = self.plan.placement if self.plan else None
        inplanes = stem_width
        for index, (depth, planes) in enumerate(zip(layers, widths, strict=True)):
            stage = index + 1
            chosen = self.plan.blocks_in(stage, depth) if self.plan else set()
            blocks = []
            for b in range(depth):
                stride = 2 if index > 0 and b == 0 else 1
                make = factory(stage) if b in chosen else None
                blocks.append(
                    block_cls(inplanes, planes, stride, placement=placement, make_attn=make)
                )
                inplanes = planes * block_cls.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else nn.Identity()
        self._init_backbone(attention_modules, zero_init_residual)

    def _init_backbone(self, attention_modules: list[nn.Module], zero_init_residual: bool) -> None:
        # torchvision's initialisation, applied to the backbone only: attention modules keep
        # their own (zero-initialised outputs must stay zero).
        skip = {id(m) for a in attention_modules for m in a.modules()}
        for module in self.modules():
            if id(module) in skip:
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                last = getattr(module, "bn3", None) if isinstance(module, Bottleneck) else None
                if isinstance(module, BasicBlock):
                    last = module.bn2
                if isinstance(last, nn.BatchNorm2d):
                    nn.init.zeros_(last.weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The residual stages ``[layer1, layer2, ...]``."""
        return [getattr(self, f"layer{s}") for s in range(1, self.num_stages + 1)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map ``(B, num_features, H', W')``."""
        check_feature_map(x, self.in_chans, (2,), "x", module=self)
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x)).flatten(1)  # (B, num_features)
        return self.fc(x)


def _factory(name: str, block: str, layers: tuple[int, ...], params: str) -> Any:
    def factory(
        *,
        attention: str | None = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        attention_placement: str | None = None,
        attention_stages: Sequence[int] | None = None,
        attention_blocks: str | Sequence[int] | None = None,
        attention_stage_kwargs: Sequence[Mapping[str, Any]] | None = None,
        zero_init_residual: bool = False,
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            num_classes=num_classes,
            in_chans=in_chans,
            attention=attention,
            attention_kwargs=attention_kwargs,
            attention_placement=attention_placement,
            attention_stages=attention_stages,
            attention_blocks=attention_blocks,
            attention_stage_kwargs=attention_stage_kwargs,
            zero_init_residual=zero_init_residual,
        )

    factory.__name__ = factory.__qualname__ = name
    title = name.replace("resnet", "ResNet-")
    features = 512 * (4 if block == "bottleneck" else 1)
    factory.__doc__ = f"""{title} (He et al. 2016), optionally with an attention module.

    He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
    https://arxiv.org/abs/1512.03385. {block.capitalize()} blocks {layers}, widths
    64-128-256-512, torchvision layout ({params} parameters without attention). The attention
    module is built by name and placed as its paper does; see :class:`ResNet` for the rules.

    Args:
        attention: Registry name of a vision module (e.g. ``"se"``, ``"non_local"``), or None.
        attention_kwargs: Keyword options of every attention module.
        num_classes: Classifier outputs (0: pooled features).
        in_chans: Input image channels.
        attention_placement: Override the paper's placement (see :class:`ResNet`).
        attention_stages: Override the stages (1-based, stage 3 = res4) that get modules.
        attention_blocks: Override the blocks within those stages.
        attention_stage_kwargs: One dict of extra options per stage.
        zero_init_residual: Zero the last BN of every residual branch.

    Shape:
        - x: ``(B, in_chans, H, W)`` -> ``(B, num_classes)``

    Example:
        >>> net = {name}(num_classes=10)
        >>> net.num_features, net.fc.out_features
        ({features}, 10)
    """
    return MODELS.register(
        name,
        paper=HE_2016,
        tags=("cnn", "classification"),
        complexity="O(H W) convolutions; attention per its module",
    )(factory)


resnet18 = _factory("resnet18", "basic", (2, 2, 2, 2), "11,689,512")
resnet34 = _factory("resnet34", "basic", (3, 4, 6, 3), "21,797,672")
resnet50 = _factory("resnet50", "bottleneck", (3, 4, 6, 3), "25,557,032")
resnet101 = _factory("resnet101", "bottleneck", (3, 4, 23, 3), "44,549,160")


@MODELS.register(
    "resnet_cifar",
    paper=HE_2016,
    tags=("cnn", "classification", "cifar"),
    complexity="O(H W) convolutions; attention per its module",
)
def resnet_cifar(
    *,
    attention: str | None = None,
    attention_kwargs: Mapping[str, Any] | None = None,
    num_classes: int = 10,
    in_chans: int = 3,
    widths: Sequence[int] = (16, 32, 64),
    depths: Sequence[int] = (3, 3, 3),
    block: str = "basic",
    attention_placement: str | None = None,
    attention_stages: Sequence[int] | None = None,
    attention_blocks: str | Sequence[int] | None = None,
    attention_stage_kwargs: Sequence[Mapping[str, Any]] | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """Small CIFAR-style ResNet (He et al. 2016, section 4.2) for CPU demos and tests.

    He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
    https://arxiv.org/abs/1512.03385. A 3x3 stem without pooling and one stage per width,
    strides 1, 2, 2, ...; the defaults (widths 16-32-64, 3 basic blocks each) are ResNet-20,
    with 1x1 projection shortcuts where the shape changes (the paper's option B; its CIFAR runs
    use parameter-free option A, 0.27M parameters either way). Trains in seconds on 8x8 or
    28x28 images with ``depths=(1, 1, 1)``. Attention options as in :class:`ResNet`.

    Args:
        attention: Registry name of a vision module, or None.
        attention_kwargs: Keyword options of every attention module.
        num_classes: Classifier outputs (0: pooled features).
        in_chans: Input image channels (1 for MNIST-like data).
        widths: Block width per stage.
        depths: Blocks per stage.
        block: ``"basic"`` or ``"bottleneck"`` (needed by bottleneck-only placements' papers).
        attention_placement: Override the paper's placement (see :class:`ResNet`).
        attention_stages: Override the stages (1-based) that get modules.
        attention_blocks: Override the blocks within those stages.
        attention_stage_kwargs: One dict of extra options per stage.
        zero_init_residual: Zero the last BN of every residual branch.

    Shape:
        - x: ``(B, in_chans, H, W)`` -> ``(B, num_classes)``

    Example:
        >>> net = resnet_cifar(in_chans=1, num_classes=10, depths=(1, 1, 1))
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return ResNet(
        block,
        depths,
        widths=widths,
        num_classes=num_classes,
        in_chans=in_chans,
        stem="cifar",
        attention=attention,
        attention_kwargs=attention_kwargs,
        attention_placement=attention_placement,
        attention_stages=attention_stages,
        attention_blocks=attention_blocks,
        attention_stage_kwargs=attention_stage_kwargs,
        zero_init_residual=zero_init_residual,
    )
