"""Top-k attention (Zhao et al. 2019, Explicit Sparse Transformer): softmax over the k best keys."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int
from attnzoo.functional.softmax import safe_softmax
from attnzoo.registry import SEQUENCE, Paper
from attnzoo.sequence._scored import ScoredAttention

__all__ = ["TopKAttention", "top_k_mask"]


def top_k_mask(scores: torch.Tensor, top_k: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Bool ``(..., L, S)``: keys whose score reaches the row's ``top_k``-th largest visible one.

    Keys ``mask`` forbids never count; ties at the threshold are all kept (the paper's
    ``P_ij >= t_i`` rule); a row with fewer than ``top_k`` visible keys keeps them all.
    """
    work = scores.detach()
    if mask is not None:
        work = work.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else work + mask
    kth = min(top_k, work.shape[-1])
    if kth == 0:
        return torch.zeros_like(work, dtype=torch.bool)
    threshold = work.topk(kth, dim=-1).values[..., -1:]  # (..., L, 1)
    return (work >= threshold) & (work > float("-inf"))


@SEQUENCE.register(
    "topk_attention",
    paper=Paper(
        title="Explicit Sparse Transformer: Concentrated Attention Through Explicit Selection",
        authors="Zhao, Lin, Zhang, Ren, Su, Sun",
        year=2019,
        url="https://arxiv.org/abs/1912.11637",
    ),
    tags=("dense", "self", "cross", "sparse", "normalizer"),
    complexity="O(L S d) time, O(L S) memory",
)
class TopKAttention(ScoredAttention):
    r"""Top-k attention: each query attends to its ``top_k`` highest-scoring keys only.

    Zhao, Lin, Zhang, Ren, Su, Sun, "Explicit Sparse Transformer: Concentrated Attention Through
    Explicit Selection", 2019, https://arxiv.org/abs/1912.11637. Scores ``q k^T / sqrt(hd)``;
    every score below the row's ``k``-th largest (``t_i``) becomes ``-inf`` before the softmax,
    so the weights are a softmax over the selected keys and exactly 0 elsewhere — hard selection
    with soft weights, between the survey's soft and hard attention. Gradients flow to the
    selected scores only (the selection itself is piecewise constant). Masked keys are never
    selected; ties at ``t_i`` are all kept; ``top_k >= S`` is ordinary softmax attention.

    Formula:
        $$
        \mathrm{out}_i = \sum_j \mathrm{softmax}_j\big(\tilde s_{ij}\big)\, v_j, \qquad
        \tilde s_{ij} = \begin{cases} s_{ij} & s_{ij} \ge t_i \\ -\infty & \text{otherwise}
        \end{cases},
        \quad s_{ij} = \frac{q_i k_j^\top}{\sqrt{d_h}}
        $$

        with $t_i$ the `top_k`-th largest score of row $i$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Dropout on the weights (training only).
        proj_drop: Dropout after ``out_proj``.
        top_k: Keys kept per query (8, the paper's translation setting).
        context_dim: Width of ``context`` for cross-attention, default ``dim``.

    Shape:
        - x: ``(B, L, C)``; context: ``(B, S, C_ctx)``; mask as ``mha``
        - output: ``(B, L, C)``; weights ``(B, nh, L, S)`` with ``need_weights``

    Example:
        >>> attn = TopKAttention(32, num_heads=4, top_k=3).eval()
        >>> _, w = attn(torch.randn(2, 10, 32), need_weights=True)
        >>> int((w > 0).sum(-1).max())
        3
    """

    backend = "reference: dense scores, top-k selection, masked softmax"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        top_k: int = 8,
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
        self.top_k = check_positive_int("top_k", top_k)

    def normalize(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        selected = top_k_mask(scores, self.top_k, mask)  # (B, nh, L, S) bool
        if mask is not None and mask.dtype != torch.bool:  # an additive mask still adds
            scores = scores + mask.to(scores.dtype)
        return safe_softmax(scores, selected)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, top_k={self.top_k}"
