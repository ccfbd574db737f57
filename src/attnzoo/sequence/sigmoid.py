"""Sigmoid attention (Ramapuram et al. 2024): element-wise sigmoid weights, no normalisation."""

from __future__ import annotations

import math

import torch

from attnzoo._checks import check_finite
from attnzoo.registry import SEQUENCE, Paper
from attnzoo.sequence._scored import ScoredAttention

__all__ = ["SigmoidAttention"]


@SEQUENCE.register(
    "sigmoid_attention",
    paper=Paper(
        title="Theory, Analysis, and Best Practices for Sigmoid Self-Attention",
        authors="Ramapuram, Danieli, Dhekane, Weers, Busbridge, Ablin, Likhomanenko, Digani, "
        "Gu, Shidani, Webb",
        year=2024,
        url="https://arxiv.org/abs/2409.04431",
    ),
    tags=("dense", "self", "cross", "normalizer"),
    complexity="O(L S d) time, O(L S) memory",
)
class SigmoidAttention(ScoredAttention):
    r"""Sigmoid attention: ``out_i = sum_j sigmoid(q_i k_j^T / sqrt(hd) + b) v_j``.

    Ramapuram et al., "Theory, Analysis, and Best Practices for Sigmoid Self-Attention", 2024
    (ICLR 2025), https://arxiv.org/abs/2409.04431. Each weight is an independent sigmoid: rows
    do not sum to one and keys do not compete (the survey's soft attention without its softmax).
    The paper's bias ``b = -log(n)``, ``n`` the sequence length, keeps the initial row sums near
    one; here ``n`` is the number of *real* keys of each sample (padding excluded, so padding
    never changes a real token's output) unless ``bias`` fixes ``b``. Masked keys and causally
    hidden ones get weight exactly 0; a query with nothing visible returns zeros.

    Formula:
        $$
        \mathrm{out}_i = \sum_j \sigma\!\left(\frac{q_i k_j^\top}{\sqrt{d_h}} + b\right) v_j,
        \qquad b = -\log n
        $$

        with $n$ the number of real keys of the sample (unless `bias` fixes $b$); masked keys get 0.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Dropout on the weights (training only).
        proj_drop: Dropout after ``out_proj``.
        bias: Fixed score bias ``b``; None (default) uses ``-log(n)`` as the paper.
        context_dim: Width of ``context`` for cross-attention, default ``dim``.

    Shape:
        - x: ``(B, L, C)``; context: ``(B, S, C_ctx)``; mask as ``mha``
        - output: ``(B, L, C)``; weights ``(B, nh, L, S)`` with ``need_weights``

    Example:
        >>> attn = SigmoidAttention(32, num_heads=4).eval()
        >>> out, w = attn(torch.randn(2, 6, 32), need_weights=True)
        >>> out.shape, bool(((w > 0) & (w < 1)).all())
        (torch.Size([2, 6, 32]), True)
    """

    backend = "reference: dense scores, elementwise sigmoid"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        bias: float | None = None,
        context_dim: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            context_dim=context_dim,
        )
        self.bias = None if bias is None else check_finite("bias", bias)

    def scores(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, nh, L, S)
        if self.bias is not None:
            return scores + self.bias
        keys = k.shape[2]
        if mask is not None and mask.dtype == torch.bool and mask.shape[-2] == 1:
            real = mask.sum(-1, keepdim=True).clamp_min(1)  # (B | 1, nh | 1, 1, 1) real keys
            return scores - real.to(scores.dtype).log()
        return scores - math.log(max(keys, 1))

    def normalize(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            if mask.dtype == torch.bool:
                return torch.sigmoid(scores).masked_fill(~mask, 0.0)
            scores = scores + mask.to(scores.dtype)  # -inf entries give sigmoid 0
        return torch.sigmoid(scores)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias}"
