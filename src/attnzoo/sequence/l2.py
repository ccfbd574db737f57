"""L2 self-attention (Kim, Papamakarios, Mnih 2021): distance scores, Lipschitz by construction."""

from __future__ import annotations

import torch

from attnzoo.functional.scoring import squared_distances
from attnzoo.registry import SEQUENCE, Paper
from attnzoo.sequence._scored import ScoredAttention

__all__ = ["L2Attention"]


@SEQUENCE.register(
    "l2_attention",
    paper=Paper(
        title="The Lipschitz Constant of Self-Attention",
        authors="Kim, Papamakarios, Mnih",
        year=2021,
        url="https://arxiv.org/abs/2006.04710",
    ),
    tags=("dense", "self", "distance", "lipschitz"),
    complexity="O(L^2 d) time, O(L^2) memory",
)
class L2Attention(ScoredAttention):
    r"""L2 multi-head self-attention: ``P_ij = softmax_j(-|x_i W^Q - x_j W^K|^2 / sqrt(hd))``.

    Kim, Papamakarios and Mnih, "The Lipschitz Constant of Self-Attention", ICML 2021,
    https://arxiv.org/abs/2006.04710. Dot-product self-attention is not Lipschitz; replacing
    the dot product by a negative squared distance — the Gaussian kernel of the survey's
    Nadaraya–Watson regression — and tying ``W^K = W^Q`` makes it so. The paper's head is
    ``f_h(X) = P_h X A_h W^V_h`` with ``A_h = W^Q_h W^Q_h^T / sqrt(hd)``: the values are
    ``(x W^Q_h) (W^Q_h^T W^V_h) / sqrt(hd)``, computed here from ``q_proj`` and ``v_proj`` in
    ``O(L hd^2)`` (``lipschitz=True``, the default; ``k_proj`` is then ``q_proj`` itself and the
    paper's projections have no bias). ``lipschitz=False`` keeps the distance scores with free
    ``k_proj`` and ordinary values ``x W^V``. Distances are computed from the differences (exact
    to rounding far from the origin). Self-attention only, as in the paper.

    Formula:
        $$
        P_{ij} = \mathrm{softmax}_j\!\left(-\frac{\lVert x_i W^Q - x_j W^Q
        \rVert^2}{\sqrt{d_h}}\right),
        \qquad f(X) = P\, X A W^V, \quad A = \frac{W^Q W^{Q\top}}{\sqrt{d_h}}
        $$

        per head (`lipschitz=True`); with `lipschitz=False` the keys use their own $W^K$ and the
        values are $X W^V$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections (the paper: none).
        attn_drop: Dropout on the weights (training only).
        proj_drop: Dropout after ``out_proj``.
        lipschitz: Tie ``W^K = W^Q`` and use the paper's values ``X A_h W^V``.

    Shape:
        - x: ``(B, L, C)``; mask as ``mha``
        - output: ``(B, L, C)``; weights ``(B, nh, L, L)`` with ``need_weights``

    Example:
        >>> attn = L2Attention(32, num_heads=4).eval()
        >>> attn.k_proj is attn.q_proj
        True
        >>> attn(torch.randn(2, 6, 32)).shape
        torch.Size([2, 6, 32])
    """

    backend = "reference: dense squared distances (l2_score), masked softmax"

    supports_cross = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        lipschitz: bool = True,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        if not isinstance(lipschitz, bool):
            raise TypeError(f"lipschitz must be a bool, got {lipschitz!r}")
        self.lipschitz = lipschitz
        if lipschitz:
            self.k_proj = self.q_proj  # W^K = W^Q: one parameter

    def project_values(self, x: torch.Tensor, context: torch.Tensor | None):
        if not self.lipschitz:
            return self.project(x, context)
        q = self.project_query(x)  # (B, nh, L, hd)
        heads, width = self.num_heads, self.head_dim
        w_q = self.q_proj.weight.view(heads, width, -1)  # (nh, hd, C): W^Q_h transposed
        w_v = self.v_proj.weight.view(heads, width, -1)  # (nh, hd, C): W^V_h transposed
        mixing = w_q @ w_v.transpose(-2, -1) * width**-0.5  # (nh, hd, hd): W^Q_h^T W^V_h / sqrt
        v = q @ mixing  # (B, nh, L, hd) = x A_h W^V_h (bias-free by the paper's definition)
        if self.v_proj.bias is not None:
            v = v + self.v_proj.bias.view(heads, 1, width)  # (nh, 1, hd) broadcast
        return q, q, v

    def scores(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return -squared_distances(q, k) * self.head_dim**-0.5  # (B, nh, L, S)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lipschitz={self.lipschitz}"
