"""Learned absolute position embeddings (Gehring et al. 2017; BERT, GPT-2, ViT)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_finite
from attnzoo.positional.base import AdditivePositionalTable
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["LearnedPositionalEmbedding"]

GEHRING_2017 = Paper(
    title="Convolutional Sequence to Sequence Learning",
    authors="Gehring, Auli, Grangier, Yarats, Dauphin",
    year=2017,
    url="https://arxiv.org/abs/1705.03122",
)


@POSITIONAL.register(
    "learned", paper=GEHRING_2017, tags=("absolute", "learned", "1d"), complexity="O(L d)"
)
class LearnedPositionalEmbedding(AdditivePositionalTable):
    r"""A trainable ``(max_len, dim)`` table added to the tokens, then dropout.

    Gehring et al., "Convolutional Sequence to Sequence Learning", 2017,
    https://arxiv.org/abs/1705.03122 (also BERT and GPT-2). Initialised from
    ``N(0, init_std^2)`` (0.02 as in BERT/GPT-2). Positions beyond ``max_len`` have no embedding
    and raise ``ValueError``.

    Formula:
        $$
        Y_t = \mathrm{Dropout}(X_t + P_{\mathrm{offset} + t}), \qquad
        P \in \mathbb{R}^{\mathrm{max\_len} \times d}, \quad P \sim \mathcal{N}(0, 0.02^2)
        $$

    Args:
        dim: Model width.
        max_len: Number of positions in the table.
        dropout: Dropout on ``x + P``.
        init_std: Standard deviation of the initial table.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)`` -> same

    Example:
        >>> pos = LearnedPositionalEmbedding(8, max_len=16)
        >>> pos(torch.zeros(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self, dim: int, *, max_len: int = 512, dropout: float = 0.0, init_std: float = 0.02
    ) -> None:
        super().__init__(dim, max_len=max_len, dropout=dropout)
        self.weight = nn.Parameter(torch.empty(self.max_len, self.dim))
        nn.init.normal_(self.weight, std=check_finite("init_std", init_std, positive=True))

    def table(self) -> torch.Tensor:
        return self.weight
