"""Disentangled non-local block (Yin et al. 2020): whitened pairwise term plus a unary term."""

from __future__ import annotations

import torch

from attnzoo._checks import check_finite
from attnzoo.registry import VISION, Paper
from attnzoo.vision.gc import GlobalAttentionPool
from attnzoo.vision.non_local import NonLocal2d

__all__ = ["DisentangledNonLocal2d"]

YIN_2020 = Paper(
    title="Disentangled Non-Local Neural Networks",
    authors="Yin, Yao, Cao, Li, Zhang, Lin, Hu",
    year=2020,
    url="https://arxiv.org/abs/2006.06668",
)


@VISION.register(
    "dnl",
    paper=YIN_2020,
    tags=("self_attention",),
    complexity="O((HW)^2 C)",
)
class DisentangledNonLocal2d(NonLocal2d):
    r"""Disentangled non-local block: ``x + W_z sum_j (w_pair(i, j) + w_unary(j)) g(x_j)``.

    Yin, Yao, Cao, Li, Zhang, Lin, Hu, "Disentangled Non-Local Neural Networks", 2020,
    https://arxiv.org/abs/2006.06668. The embedded-Gaussian :class:`NonLocal2d` (same
    ``theta``, ``phi``, ``g``, ``conv_out`` and ``probe``) with its attention split in two:

    - whitened pairwise term ``softmax_j((q_i - mu_q)^T (k_j - mu_k) / (sqrt(d) * tau))``,
      ``mu`` the spatial means of ``theta(x)`` and ``phi(x)``, temperature ``tau = 0.05``; its
      ``(B, 1, HW, HW)`` weights go through ``probe``;
    - unary term ``softmax_j(W_m x_j)`` with ``W_m`` a ``1x1`` convolution ``C -> 1``
      (``unary.conv_mask``, with bias), the global attention pooling of
      :class:`~attnzoo.vision.gc.GlobalAttentionPool`; its ``(B, 1, 1, HW)`` weights go through
      ``unary.probe``.

    The sum of both weighted sums of ``g`` passes once through ``W_z`` (``conv_out``), as in the
    paper's equation and the official code (yinmh17/DNL-Semantic-Segmentation). mmseg's
    ``DisentangledNonLocal2d`` applies ``conv_out`` to each term separately, which adds its bias
    (and norm) twice. Defaults: inner width ``C/2``, ``use_scale=True`` and ``tau = 0.05`` as
    in mmseg's ``DNLHead`` (the official code has the same ``sqrt(d)`` scale); no norm after
    ``conv_out``, which starts at zero, so the block is exactly the identity at init and only
    ``conv_out`` receives a non-zero gradient until it moves. ``norm=True`` adds a BatchNorm
    with zero scale and shift (``conv_out`` keeps its bias, unlike mmcv's ``ConvModule``). The
    biases of ``theta`` and ``phi`` are removed by the whitening and the ``conv_mask`` bias by
    the softmax, so these three always get zero gradients. The official code's
    zero-initialised gain on the pairwise term is not used (``conv_out`` already starts at
    zero). No sub-sampling.

    Formula:
        $$
        z_i = x_i + W_z \sum_j \Big[\mathrm{softmax}_j\Big(\frac{(q_i - \mu_q)^\top (k_j - \mu_k)}
        {\sqrt{d}\, \tau}\Big) + \mathrm{softmax}_j(W_m x_j)\Big]\, g(x_j)
        $$

        whitened pairwise term plus unary term, $\tau = 0.05$.

    Args:
        channels: Input channels ``C``.
        rd_ratio: Inner width ratio (1/2).
        rd_channels: Inner width; overrides ``rd_ratio``.
        temperature: ``tau`` dividing the pairwise logits.
        use_scale: Also divide the pairwise logits by ``sqrt(d)``.
        norm: BatchNorm (zero-initialised) after ``conv_out``.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> dnl = DisentangledNonLocal2d(64)
        >>> x = torch.randn(2, 64, 9, 7)
        >>> torch.equal(dnl(x), x), sum(p.numel() for p in dnl.parameters())
        (True, 8417)
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        temperature: float = 0.05,
        use_scale: bool = True,
        norm: bool = False,
    ) -> None:
        super().__init__(
            channels,
            mode="embedded_gaussian",
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            use_scale=use_scale,
            norm=norm,
            sub_sample=False,
        )
        self.temperature = check_finite("temperature", temperature, positive=True)
        self.scale = self.scale / self.temperature
        self.unary = GlobalAttentionPool(channels)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whitened query and key tokens (spatial mean removed) and the value tokens."""
        query, key, value = super().embed(x)
        query = query - query.mean(dim=-2, keepdim=True)  # (B, 1, HW, d)
        key = key - key.mean(dim=-2, keepdim=True)  # (B, 1, HW, d)
        return query, key, value

    def aggregate(
        self, x: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """Pairwise plus unary weighted sums of ``g``, ``(B, 1, HW, C/2)``."""
        pairwise = super().aggregate(x, query, key, value)  # (B, 1, HW, C/2)
        return pairwise + self.unary(x, value)  # (B, 1, 1, C/2) broadcast over HW

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature:g}"
