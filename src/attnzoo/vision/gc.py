"""Global context block (Cao et al. 2019): one query-independent attention pool, then SE-style."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.probe import AttentionProbe
from attnzoo.layers.vision_utils import LayerType, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["ContextTransform", "GlobalAttentionPool", "GlobalContext"]

CAO_2019 = Paper(
    title="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
    authors="Cao, Xu, Lin, Wei, Hu",
    year=2019,
    url="https://arxiv.org/abs/1904.11492",
)

POOLING_TYPES = ("att", "avg")
FUSION_TYPES = ("add", "mul", "both")


class GlobalAttentionPool(nn.Module):
    """Global attention pooling ``sum_j softmax_j(W_k x_j) v_j`` (GCNet eq. 3, DNL's unary term).

    One ``1x1`` convolution ``conv_mask`` (``C -> 1``, with bias) scores every position; the
    softmax over all positions (routed through ``probe`` as ``(B, 1, 1, N)``) weights the values,
    which default to ``x`` itself. The output does not depend on the ``conv_mask`` bias (a shift
    of every logit), so that bias always receives a zero gradient.

    Args:
        channels: Channels ``C`` of the map that is scored.

    Shape:
        - x: ``(B, C, *spatial)`` with ``N = prod(spatial)`` positions
        - value: ``(B, 1, N, C_v)`` tokens, default ``x`` as tokens
        - output: ``(B, 1, 1, C_v)``

    Example:
        >>> pool = GlobalAttentionPool(8)
        >>> pool(torch.randn(2, 8, 5, 3)).shape
        torch.Size([2, 1, 1, 8])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_mask = nn.Conv1d(channels, 1, kernel_size=1)
        self.probe = AttentionProbe()
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)

    def forward(self, x: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        tokens = x.flatten(2)  # (B, C, N)
        logits = self.conv_mask(tokens).unsqueeze(1)  # (B, 1, 1, N)
        weights = self.probe(safe_softmax(logits))  # (B, 1, 1, N)
        if value is None:
            value = tokens.transpose(1, 2).unsqueeze(1)  # (B, 1, N, C)
        return weights @ value  # (B, 1, 1, C_v)


class ContextTransform(nn.Module):
    """GCNet's bottleneck transform ``fc2(act(LayerNorm(fc1(c))))`` on a context vector.

    ``fc1``/``fc2`` are ``nn.Linear`` (a ``1x1`` convolution on the pooled ``(B, C, 1, 1)``
    context is the same map; its weight has two extra singleton dims). ``norm`` is a LayerNorm
    over the ``P`` hidden channels (mmcv's ``LayerNorm([P, 1, 1])``, eps ``1e-5``). ``fc2``
    starts at zero (weight and bias), as in mmcv's ``last_zero_init``.

    Args:
        channels: Context width ``C``.
        hidden: Bottleneck width ``P``.
        act_layer: Hidden activation.

    Shape:
        - ``(B, C) -> (B, C)``

    Example:
        >>> torch.count_nonzero(ContextTransform(16, 4)(torch.randn(2, 16)))
        tensor(0)
    """

    def __init__(self, channels: int, hidden: int, *, act_layer: LayerType = "relu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.act = create_act(act_layer)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(context))))


@VISION.register(
    "gc",
    paper=CAO_2019,
    tags=("self_attention", "pooling"),
    complexity="O(HWC + C^2/r)",
)
class GlobalContext(VisionModule):
    r"""Global context (GC) block: ``x + transform(sum_j softmax_j(W_k x_j) x_j)``.

    Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and
    Beyond", 2019, https://arxiv.org/abs/1904.11492. The three steps of the paper's framework:
    context modelling by global attention pooling (``context_pool``, a
    :class:`GlobalAttentionPool` whose weights go through ``context_pool.probe`` as
    ``(B, 1, 1, N)``), the bottleneck transform ``Conv(C->P) -> LayerNorm -> ReLU -> Conv(P->C)``
    (``channel_add``, ``P = int(C * rd_ratio)``), and broadcast addition to every position (the
    paper's eq. 4). ``pooling="avg"`` replaces the attention pooling by global average pooling
    (the SE-like ablation); ``fusion="mul"`` scales instead, ``x * sigmoid(channel_mul(c))``,
    and ``fusion="both"`` does both (scale first, as mmcv's ``ContextBlock``).

    Defaults follow the paper: ratio ``1/16`` ("with default reduction ratio set to r = 16"),
    attention pooling, addition. As in mmcv the last layer of each transform starts at zero, so
    with ``fusion="add"`` the block is exactly the identity at init (the ``mul`` branch then
    starts at ``x / 2``); timm's ``GlobalContext`` zeroes only ``fc2.weight`` and is not the
    identity. Consequently, at init only ``channel_add.fc2`` receives a non-zero gradient; every
    other parameter does once ``fc2`` has moved. The ``conv_mask`` bias never does (softmax is
    shift invariant). LayerNorm eps is PyTorch's/mmcv's ``1e-5`` (timm uses ``1e-6``).

    Formula:
        $$
        Y_i = X_i + W_{v2}\, \delta\Big(\mathrm{LN}\Big(W_{v1} \sum_j
        \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}}\, x_j\Big)\Big)
        $$

        the same global context added to every position $i$.

    Args:
        channels: Input channels ``C``.
        rd_ratio: Bottleneck ratio ``1/r`` (paper default r = 16; mmdet also uses r = 4).
        rd_channels: Bottleneck width ``P``; overrides ``rd_ratio``.
        pooling: ``"att"`` (global attention pooling) or ``"avg"`` (global average pooling).
        fusion: ``"add"``, ``"mul"`` or ``"both"``.
        act_layer: Activation inside the transform.
        gate_layer: Gate of the ``mul`` fusion.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)`` and ``(B, C, D, H, W)``) -> same

    Example:
        >>> gc = GlobalContext(64, rd_ratio=1 / 4)
        >>> x = torch.randn(2, 64, 9, 7)
        >>> torch.equal(gc(x), x), sum(p.numel() for p in gc.parameters())
        (True, 2225)
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        pooling: str = "att",
        fusion: str = "add",
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        self.pooling = check_choice("pooling", pooling, POOLING_TYPES)
        self.fusion = check_choice("fusion", fusion, FUSION_TYPES)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.context_pool = GlobalAttentionPool(channels) if pooling == "att" else None
        self.channel_mul = None
        self.channel_add = None
        if fusion in ("mul", "both"):
            self.channel_mul = ContextTransform(channels, hidden, act_layer=act_layer)
            self.gate = create_act(gate_layer, "gate_layer")
        if fusion in ("add", "both"):
            self.channel_add = ContextTransform(channels, hidden, act_layer=act_layer)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, C)`` global context vector of ``x`` (attention or average pooling)."""
        if self.context_pool is None:
            return x.mean(dim=tuple(range(2, x.dim())))  # (B, C)
        return self.context_pool(x).flatten(1)  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        context = self.context(x)  # (B, C)
        broadcast = (*context.shape, *([1] * (x.dim() - 2)))  # (B, C, 1, 1)
        out = x
        if self.channel_mul is not None:
            out = out * self.gate(self.channel_mul(context)).view(broadcast)  # (B, C, 1, 1)
        if self.channel_add is not None:
            out = out + self.channel_add(context).view(broadcast)  # (B, C, 1, 1)
        return out
