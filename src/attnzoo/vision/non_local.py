"""Non-local block (Wang et al. 2018): every position is updated from all positions."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice, type_name
from attnzoo.functional.attention import attention
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.probe import AttentionProbe
from attnzoo.layers.vision_utils import reduced_channels
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["NL_MODES", "NonLocal2d"]

WANG_2018 = Paper(
    title="Non-local Neural Networks",
    authors="Wang, Girshick, Gupta, He",
    year=2018,
    url="https://arxiv.org/abs/1711.07971",
)

NL_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
_SOFTMAX_MODES = ("embedded_gaussian", "gaussian")


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` map as ``(B, 1, H*W, C)`` tokens (one head)."""
    return x.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, H*W, C)


@VISION.register(
    "non_local",
    paper=WANG_2018,
    tags=("self_attention",),
    complexity="O((HW)^2 C)",
)
class NonLocal2d(VisionModule):
    r"""Non-local block: ``z_i = x_i + BN(W_z sum_j f(x_i, x_j) g(x_j) / C(x))``.

    Wang, Girshick, Gupta, He, "Non-local Neural Networks", 2018,
    https://arxiv.org/abs/1711.07971. ``theta``, ``phi`` and ``g`` are ``1x1`` convolutions
    ``C -> C/2`` (with bias); ``conv_out`` is ``W_z`` (``C/2 -> C``, with bias) followed by
    ``norm`` (BatchNorm). The pairwise function ``f`` and its normaliser ``C(x)`` (paper eqs.
    2-6) are chosen by ``mode``:

    - ``"embedded_gaussian"`` (default): ``softmax_j(theta_i^T phi_j * scale)``;
    - ``"gaussian"``: ``softmax_j(x_i^T x_j * scale)`` (no ``theta``/``phi``);
    - ``"dot_product"``: ``theta_i^T phi_j / N``;
    - ``"concatenation"``: ``ReLU(w_f^T [theta_i, phi_j]) / N`` (``concat_project`` is ``w_f``,
      no bias).

    ``N`` is the number of key positions. The post-normalisation ``(B, 1, HW, N)`` weights go
    through ``probe``; the softmax modes use ``F.scaled_dot_product_attention`` (no
    ``HW x HW`` tensor) unless the probe is recording. ``sub_sample=True`` max-pools the ``phi``
    and ``g`` inputs ``2x2`` (paper section 3.3; ``ceil_mode`` so odd and ``1x1`` maps work).

    Initialisation follows the paper and the official Caffe2 code: ``N(0, 0.01)`` weights, zero
    biases, and the BN scale and shift zero-initialised, so the block is exactly the identity at
    init. With ``norm=False`` (mmcv's default) ``conv_out`` itself starts at zero instead.
    Consequently, at init only the BN parameters (``conv_out`` without norm) receive non-zero
    gradients; the projections do once the output layer has moved. In the softmax modes the
    ``phi`` bias never changes the output (``theta_i^T b`` is constant over ``j``), so its
    gradient is zero.

    Deviation: the paper's embedded Gaussian has no scale; like the official code and mmcv,
    ``use_scale=True`` (default) divides the logits by ``sqrt(d)`` (``d = C/2``, or ``C`` in
    ``"gaussian"`` mode). ``use_scale=False`` gives the paper's equation. timm's
    ``NonLocalAttn`` scales by ``C**-0.5`` instead and defaults to ``C/8`` inner channels.

    Formula:
        $$
        y_i = \sum_j \mathrm{softmax}_j\big(\theta(x_i)^\top \phi(x_j)\big)\, g(x_j), \qquad
        z_i = x_i + \mathrm{BN}(W_z\, y_i)
        $$

        (`mode="embedded_gaussian"`; $\theta, \phi, g$ are 1x1 convolutions $C \to C/2$).

    Args:
        channels: Input channels ``C``.
        mode: Pairwise function, one of :data:`NL_MODES`.
        rd_ratio: Inner width ratio (paper: 1/2).
        rd_channels: Inner width; overrides ``rd_ratio``.
        use_scale: Scale the softmax logits by ``d**-0.5``.
        norm: BatchNorm after ``conv_out`` (paper and official code); False gives mmcv's
            default block.
        sub_sample: Max-pool ``phi`` and ``g`` by 2.

    Shape:
        - x: ``(B, C, H, W)`` -> same

    Example:
        >>> nl = NonLocal2d(64)
        >>> x = torch.randn(2, 64, 9, 7)
        >>> torch.equal(nl(x), x), sum(p.numel() for p in nl.parameters())
        (True, 8480)
    """

    def __init__(
        self,
        channels: int,
        *,
        mode: str = "embedded_gaussian",
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        use_scale: bool = True,
        norm: bool = True,
        sub_sample: bool = False,
    ) -> None:
        super().__init__(channels)
        self.mode = check_choice("mode", mode, NL_MODES)
        for name, flag in (("use_scale", use_scale), ("norm", norm), ("sub_sample", sub_sample)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type_name(flag)}")
        self.inter_channels = inter = reduced_channels(channels, rd_ratio, rd_channels)
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.theta = self.phi = self.concat_project = None
        if mode != "gaussian":
            self.theta = nn.Conv2d(channels, inter, kernel_size=1)
            self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        if mode == "concatenation":
            self.concat_project = nn.Conv2d(2 * inter, 1, kernel_size=1, bias=False)
        self.pool = nn.MaxPool2d(kernel_size=2, ceil_mode=True) if sub_sample else None
        self.conv_out = nn.Conv2d(inter, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels) if norm else None
        self.probe = AttentionProbe()
        embed_dim = channels if mode == "gaussian" else inter
        self.scale = embed_dim**-0.5 if use_scale else 1.0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``N(0, 0.01)`` projections, zero biases, zero last layer (identity block)."""
        for conv in (self.g, self.theta, self.phi, self.concat_project, self.conv_out):
            if conv is None:
                continue
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm is None:
            nn.init.zeros_(self.conv_out.weight)
        else:
            nn.init.zeros_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query ``theta(x)``, key ``phi(x)`` and value ``g(x)`` as one-head tokens.

        Returns ``(B, 1, HW, d)``, ``(B, 1, N, d)`` and ``(B, 1, N, C/2)`` (``N = HW``, or the
        sub-sampled count).
        """
        source = x if self.pool is None else self.pool(x)
        value = _tokens(self.g(source))  # (B, 1, N, C/2)
        if self.theta is None:  # gaussian: x itself is the embedding
            return _tokens(x), _tokens(source), value
        return _tokens(self.theta(x)), _tokens(self.phi(source)), value

    def pairwise(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Normalised pairwise weights ``f(x_i, x_j) / C(x)`` of shape ``(B, 1, HW, N)``."""
        if self.mode in _SOFTMAX_MODES:
            return safe_softmax((query * self.scale) @ key.transpose(-2, -1))  # (B, 1, HW, N)
        num_keys = key.shape[-2]
        if self.mode == "dot_product":
            return query @ key.transpose(-2, -1) / num_keys  # (B, 1, HW, N)
        w_f = self.concat_project.weight.flatten()  # (2*d,)
        w_query, w_key = w_f.split(self.inter_channels)
        scores = (query @ w_query).unsqueeze(-1) + (key @ w_key).unsqueeze(-2)  # (B, 1, HW, N)
        return torch.relu(scores) / num_keys

    def aggregate(
        self, x: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)`` as ``(B, 1, HW, C/2)`` tokens."""
        if self.mode in _SOFTMAX_MODES and not self.probe.recording:
            return attention(query, key, value, scale=self.scale)  # (B, 1, HW, C/2)
        return self.probe(self.pairwise(query, key)) @ value  # (B, 1, HW, C/2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        batch, _, height, width = x.shape
        query, key, value = self.embed(x)
        y = self.aggregate(x, query, key, value)  # (B, 1, HW, C/2)
        y = y.squeeze(1).transpose(1, 2)  # (B, C/2, HW)
        y = y.reshape(batch, y.shape[1], height, width)  # (B, C/2, H, W)
        z = self.conv_out(y)
        if self.norm is not None:
            z = self.norm(z)
        return x + z

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, inter_channels={self.inter_channels}"
