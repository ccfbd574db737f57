"""GSoP-Net channel block (Gao et al. 2019): channel gates from covariance (2nd-order) pooling."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.channel_ops import scale_channels
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.vision_utils import LayerType, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["GAO_2019", "GlobalSecondOrderPooling", "covariance_pool"]

GAO_2019 = Paper(
    title="Global Second-order Pooling Convolutional Networks",
    authors="Gao, Xie, Wang, Li",
    year=2019,
    url="https://arxiv.org/abs/1811.12006",
)


def covariance_pool(z: torch.Tensor) -> torch.Tensor:
    """Per-sample covariance of the channels of a map: ``Sigma = Z I_bar Z^T``.

    ``Z`` is ``(d, M)`` with ``M`` positions and ``I_bar = (1/M)(I - (1/M) 1 1^T)``, so
    ``Sigma`` is the biased (``1/M``) covariance of the centred features, as ``Covpool`` in the
    official MPN-COV code. Symmetric positive semi-definite, unchanged by adding a constant to
    a channel.

    Args:
        z: ``(B, d, *spatial)`` map.

    Returns:
        ``(B, d, d)`` covariance matrices.

    Example:
        >>> covariance_pool(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 8])
    """
    z = z.flatten(2)  # (B, d, H*W)
    centred = z - z.mean(dim=2, keepdim=True)  # (B, d, H*W)
    return centred @ centred.transpose(1, 2) / z.shape[2]  # (B, d, d)


@VISION.register(
    "gsop",
    paper=GAO_2019,
    tags=("channel", "gating", "second_order"),
    complexity="O(HWCd + HWd^2 + d^2 C)",
)
class GlobalSecondOrderPooling(VisionModule):
    r"""GSoP channel attention: ``x * sigmoid(fc(row_conv(BN(Cov(reduce(relu(x)))))))``.

    Gao, Xie, Wang, Li, "Global Second-order Pooling Convolutional Networks", 2019,
    https://arxiv.org/abs/1811.12006. The channel-wise GSoP block of GSoP-Net1, as in the official
    code (ZilinGao, ``Bottleneck.chan_att``, attention mode ``'1'``):

    1. ``relu(x)`` (not in place; ``input_relu``), then ``reduce``: 1x1 conv ``C -> d`` (bias,
       ``stride = reduce_stride``) + BN + ReLU;
    2. covariance pooling :func:`covariance_pool` -> ``(B, d, d)``, viewed as ``(B, d, d, 1)``;
    3. ``row_norm``: BN over the ``d`` rows; ``row_conv``: row-wise convolution, a
       ``Conv2d(d, 4d, kernel (d, 1), groups=d)`` (bias) -> ``(B, 4d, 1, 1)``;
    4. ``fc``: 1x1 conv ``4d -> C`` (bias), sigmoid ``gate``; ``out = x * gate``.

    Parameters: ``5Cd + 4d^2 + 9d + C`` (14,688 for ``C = 64, d = 32``; 230,784 for
    ``C = 256, d = 128``). The official code has no activation between ``row_conv`` and ``fc``
    (the README's "two non-linear steps" describe the position branch); we follow the code. The
    official block uses ``d = 128`` and a stride-2 reduction in the first ResNet stage
    (``reduce_stride=2``, which sub-samples the map before pooling) to save compute; our default
    stride is 1. Official names: ``conv_for_DR``/``bn_for_DR`` = ``reduce.conv``/``reduce.bn``,
    ``row_bn`` = ``row_norm``, ``row_conv_group`` = ``row_conv``, ``fc_adapt_channels`` = ``fc``.
    The gate lies in ``(0, 1)`` and is constant over space. A ``1 x 1`` map has zero
    covariance, so the gate then depends on the biases only and the layers before the pooling
    get zero gradients. 2-D maps only.

    Formula:
        $$
        Y = X \odot
        \sigma\Big(\mathrm{fc}\big(\mathrm{rowconv}(\mathrm{BN}(\mathrm{Cov}(Z)))\big)\Big),
        \qquad Z = \mathrm{reduce}(\mathrm{ReLU}(X)) \in \mathbb{R}^{d \times N}
        $$

        with $\mathrm{Cov}(Z) = Z \bar I Z^\top$ the $d \times d$ covariance over the $N$ positions.

    Args:
        channels: Input channels ``C``.
        rd_channels: Width ``d`` of the reduced map and of the covariance matrix (paper: 128).
        reduce_stride: Stride of the 1x1 reduction (official: 2 in the first stage, else 1).
        input_relu: Apply ReLU to ``x`` before the reduction, as the official block does (its
            input is the last BN output of the bottleneck, before the ReLU).
        gate_layer: Gate activation.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> gsop = GlobalSecondOrderPooling(64, rd_channels=32)
        >>> gsop(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_channels: int = 128,
        reduce_stride: int = 1,
        input_relu: bool = True,
        gate_layer: LayerType = "sigmoid",
    ) -> None:
        super().__init__(channels)
        d = check_positive_int("rd_channels", rd_channels)
        self.input_act = nn.ReLU() if input_relu else nn.Identity()
        self.reduce = ConvNormAct(
            channels, d, 1, stride=check_positive_int("reduce_stride", reduce_stride), bias=True
        )
        self.row_norm = nn.BatchNorm2d(d)
        self.row_conv = nn.Conv2d(d, 4 * d, kernel_size=(d, 1), groups=d, bias=True)
        self.fc = nn.Conv2d(4 * d, channels, kernel_size=1, bias=True)
        self.gate = create_act(gate_layer, "gate_layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z = self.reduce(self.input_act(x))  # (B, d, H', W')
        cov = covariance_pool(z).unsqueeze(-1)  # (B, d, d, 1)
        logits = self.fc(self.row_conv(self.row_norm(cov)))  # (B, C, 1, 1)
        weights = self.gate(logits.flatten(1))  # (B, C)
        return scale_channels(x, weights)
