"""BAM (Park et al. 2018): parallel channel and dilated-spatial branches, ``x * (1 + gate)``."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.layers.conv import CONVS, NORMS, ConvNormAct
from attnzoo.layers.vision_utils import LayerType, check_spatial_dims, create_act, reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["BAM"]

PARK_2018 = Paper(
    title="BAM: Bottleneck Attention Module",
    authors="Park, Woo, Lee, Kweon",
    year=2018,
    url="https://arxiv.org/abs/1807.06514",
)


@VISION.register("bam", paper=PARK_2018, tags=("mixed", "gating"), complexity="O(HW C^2/r)")
class BAM(VisionModule):
    r"""BAM: ``out = x * (1 + sigmoid(Mc(x) + Ms(x)))``.

    Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018,
    https://arxiv.org/abs/1807.06514. The two branches run in parallel on ``x`` (paper eqs. 1-4):

    - channel: ``Mc = BN(MLP(GAP(x)))`` of shape ``(B, C, 1, 1)``; the MLP is
      ``fc1: C -> C/r``, BN, ReLU, ``fc2: C/r -> C`` (``channel_mlp``);
    - spatial: ``Ms = BN(conv1x1(dconv3x3(dconv3x3(conv1x1(x)))))`` of shape ``(B, 1, H, W)``:
      a 1x1 conv ``C -> C/r``, ``num_dilated`` 3x3 convs with dilation ``d`` (each followed by
      BN and ReLU, like the first), and a 1x1 conv ``C/r -> 1`` (``spatial_convs``);
    - the gate ``sigmoid(Mc + Ms)`` broadcasts to ``(B, C, H, W)`` and lies in ``(0, 1)``, so
      ``out / x`` lies in ``(1, 2)``.

    Defaults: r = 16, d = 4, two dilated convs (paper). The BN + ReLU after each hidden layer
    come from the official code (Jongchan/attention-module ``MODELS/bam.py``); the paper's
    equations omit hidden activations. The official code departs from the paper in three ways:
    it has no final BN on either branch, it combines the branches by a **product**
    (``1 + sigmoid(Mc * Ms)``), and its global pooling uses ``avg_pool2d(x, x.size(2))``,
    which is wrong when ``H != W``. Here the pooling is a true global mean (any ``H, W``);
    ``branch_norm=False, fusion="product"`` reproduces the official module otherwise.
    Parameters for C=64, r=16: 1,303 (paper form), 1,173 (official form).

    In training mode the hidden ``BatchNorm1d`` of the channel branch needs a batch of at
    least 2 (as in the official code). The biases of the layers placed right before a BN are
    redundant in training mode (their gradient is zero up to round-off); they are kept to match
    the official parameter count.

    Formula:
        $$
        Y = X \odot \big(1 + \sigma(M_c(X) + M_s(X))\big), \qquad
        M_c = \mathrm{BN}(\mathrm{MLP}(\mathrm{GAP}(X))), \;
        M_s = \mathrm{BN}(f_{1\times1}(f^{d}_{3\times3}(f^{d}_{3\times3}(f_{1\times1}(X)))))
        $$

    Args:
        channels: Input channels ``C``.
        rd_ratio: Reduction ratio ``1/r`` of both branches (paper: r = 16).
        rd_channels: Hidden width; overrides ``rd_ratio``.
        dilation: Dilation ``d`` of the 3x3 convs (paper: 4).
        num_dilated: Number of dilated 3x3 convs (paper: 2).
        branch_norm: Final BN on each branch (paper: True; official code: False).
        fusion: ``"sum"`` (paper) or ``"product"`` (official code) of ``Mc`` and ``Ms``.
        act_layer: Hidden activation.
        gate_layer: Gate activation.
        spatial_dims: Spatial dims of the input: 1, 2 (the paper's images) or 3.

    Shape:
        - x: ``(B, C, H, W)`` -> same (``H != W`` is fine); ``(B, C, L)`` or
          ``(B, C, D, H, W)`` with ``spatial_dims=1`` or ``3`` (the spatial branch's
          convolutions then have that many dims; an instance takes the layout it was built for).

    Example:
        >>> bam = BAM(64)
        >>> bam(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in bam.parameters())
        1303
    """

    spatial_dims = (1, 2, 3)  # each instance takes the one layout its spatial_dims= built

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        dilation: int = 4,
        num_dilated: int = 2,
        branch_norm: bool = True,
        fusion: str = "sum",
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(channels)
        dims = check_spatial_dims(spatial_dims)
        self.spatial_dims = (dims,)  # this instance's layout
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        dilation = check_positive_int("dilation", dilation)
        num_dilated = check_positive_int("num_dilated", num_dilated, minimum=0)
        self.fusion = check_choice("fusion", fusion, ("sum", "product"))
        self.channel_mlp = nn.Sequential()
        self.channel_mlp.add_module("fc1", nn.Linear(channels, hidden))
        self.channel_mlp.add_module("bn", nn.BatchNorm1d(hidden))
        self.channel_mlp.add_module("act", create_act(act_layer))
        self.channel_mlp.add_module("fc2", nn.Linear(hidden, channels))
        self.channel_norm = nn.BatchNorm1d(channels) if branch_norm else nn.Identity()

        self.spatial_convs = nn.Sequential()
        self.spatial_convs.add_module(
            "reduce",
            ConvNormAct(channels, hidden, 1, bias=True, act_layer=act_layer, spatial_dims=dims),
        )
        for i in range(num_dilated):
            conv = ConvNormAct(
                hidden,
                hidden,
                3,
                dilation=dilation,
                bias=True,
                act_layer=act_layer,
                spatial_dims=dims,
            )
            self.spatial_convs.add_module(f"dilated{i}", conv)
        self.spatial_convs.add_module("final", CONVS[dims](hidden, 1, 1))
        self.spatial_norm = NORMS[dims](1) if branch_norm else nn.Identity()
        self.gate = create_act(gate_layer, "gate_layer")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate ``sigmoid(Mc + Ms)`` of shape ``(B, C, *spatial)`` (before ``1 +``)."""
        spatial = tuple(range(2, x.dim()))
        mc = self.channel_norm(self.channel_mlp(x.mean(dim=spatial)))  # (B, C)
        mc = mc.view(*mc.shape, *(1,) * len(spatial))  # (B, C, 1, ...)
        ms = self.spatial_norm(self.spatial_convs(x))  # (B, 1, *spatial)
        return self.gate(mc + ms if self.fusion == "sum" else mc * ms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x * (1 + self.attention(x))
