"""Double attention (Chen et al. 2018, A^2-Nets): gather global descriptors, distribute them."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.layers.probe import AttentionProbe
from attnzoo.layers.vision_utils import reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["DoubleAttention"]

CHEN_2018 = Paper(
    title="A^2-Nets: Double Attention Networks",
    authors="Chen, Kalantidis, Li, Yan, Feng",
    year=2018,
    url="https://arxiv.org/abs/1810.11579",
)


@VISION.register(
    "a2",
    paper=CHEN_2018,
    tags=("spatial", "global_context"),
    complexity="O(HWC(m + n) + HWmn)",
)
class DoubleAttention(VisionModule):
    r"""Double attention block: ``Y = X + proj(A softmax_N(B)^T softmax_n(V))``.

    Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018,
    https://arxiv.org/abs/1810.11579. With ``N`` the number of positions (``H*W``) and 1x1
    convolutions ``phi: C -> m``, ``theta: C -> n``, ``rho: C -> n`` (biases):

    - ``A = phi(X)`` ``(m, N)``, ``B = theta(X)`` ``(n, N)``, ``V = rho(X)`` ``(n, N)``;
    - gather (paper eq. 4): ``G = A softmax(B)^T`` ``(m, n)``: each of the ``n`` attention maps
      is a softmax **over the positions**, so every descriptor ``G[:, j]`` is a convex
      combination of the columns of ``A``;
    - distribute (eq. 5): ``Z = G softmax(V)`` ``(m, N)``: at each position the softmax is
      **over the n descriptors**, so ``Z[:, i]`` is a convex combination of them;
    - ``Y = X + proj(Z)`` with ``proj: m -> C`` (1x1, bias), the residual of the paper's block.

    There is no public official code. External-Attention-pytorch's ``DoubleAttention`` calls
    ``F.softmax`` on 3-D tensors without ``dim`` (legacy dim 0: the batch axis) and drops the
    residual; some forks take the ``V`` softmax over positions. Both are wrong; here the axes
    follow the paper. The gather maps ``softmax_N(B)`` ``(B, 1, n, N)`` go through
    ``self.probe`` (rows sum to one over positions). Default ``m = n = C/4`` (``rd_ratio``) is
    our choice: the paper does not fix one width for all stages. C=64, m=n=16: 4,208 parameters.
    With a single position (``N = 1``) both softmaxes are constant, so ``theta`` and ``rho`` get
    zero gradients there.

    Formula:
        $$
        G = \phi(X)\, \mathrm{softmax}_{N}(\theta(X))^\top, \qquad
        Z = G\, \mathrm{softmax}_{n}(\rho(X)), \qquad Y = X + \mathrm{proj}(Z)
        $$

        gather: $n$ descriptors pooled over the $N = HW$ positions; distribute: each position mixes
        them.

    Args:
        channels: Input channels ``C``.
        rd_ratio: ``m / C`` when ``rd_channels`` is not given (default 1/4).
        rd_channels: Width ``m`` of the gathered features (``phi``).
        num_descriptors: Number ``n`` of global descriptors (``theta``, ``rho``); default ``m``.

    Shape:
        - x: ``(B, C, H, W)`` (also ``(B, C, L)``, ``(B, C, D, H, W)``: positions are flattened,
          as in the paper's video blocks) -> same

    Example:
        >>> a2 = DoubleAttention(64)
        >>> a2(torch.randn(2, 64, 9, 7)).shape
        torch.Size([2, 64, 9, 7])
        >>> sum(p.numel() for p in a2.parameters())
        4208
    """

    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        num_descriptors: int | None = None,
    ) -> None:
        super().__init__(channels)
        m = reduced_channels(channels, rd_ratio, rd_channels)
        n = m if num_descriptors is None else check_positive_int("num_descriptors", num_descriptors)
        self.phi = nn.Conv1d(channels, m, 1)
        self.theta = nn.Conv1d(channels, n, 1)
        self.rho = nn.Conv1d(channels, n, 1)
        self.proj = nn.Conv1d(m, channels, 1)
        self.probe = AttentionProbe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        flat = x.flatten(2)  # (B, C, N)
        a = self.phi(flat)  # (B, m, N)
        gather_attn = self.theta(flat).softmax(dim=-1)  # (B, n, N): over positions
        gather_attn = self.probe(gather_attn.unsqueeze(1)).squeeze(1)  # (B, n, N)
        distribute_attn = self.rho(flat).softmax(dim=1)  # (B, n, N): over descriptors
        descriptors = a @ gather_attn.transpose(1, 2)  # (B, m, n)
        z = descriptors @ distribute_attn  # (B, m, N)
        return x + self.proj(z).view_as(x)  # (B, C, *spatial)
