"""T5 bucketed relative position bias (Raffel et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.positional.base import check_length, check_lengths
from attnzoo.positional.relative import relative_positions
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["T5RelativeBias", "t5_bucket"]

RAFFEL_2020 = Paper(
    title="Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
    authors="Raffel, Shazeer, Roberts, Lee, Narang, Matena, Zhou, Li, Liu",
    year=2020,
    url="https://arxiv.org/abs/1910.10683",
)


def t5_bucket(
    relative_position: torch.Tensor,
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> torch.Tensor:
    """Map ``j - i`` to a bucket: exact for small distances, logarithmic up to ``max_distance``.

    Bidirectional: half the buckets for keys before the query, half for keys after. Within each
    half, distances below ``n/2`` (``n`` = buckets per half) have their own bucket; larger ones
    share ``n/2`` log-spaced buckets up to ``max_distance``, beyond which all fall in the last.
    Unidirectional (causal): keys after the query all map to bucket 0.

    Example:
        >>> t5_bucket(torch.tensor([0, -1, 1, -8, -20, -128, -1000]))
        tensor([ 0,  1, 17,  8, 10, 15, 15])
    """
    n = num_buckets
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        n //= 2
        bucket = bucket + (relative_position > 0).long() * n
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp_min(0)
    exact = n // 2
    scaled = torch.log(distance.float().clamp_min(1) / exact) / math.log(max_distance / exact)
    large = exact + (scaled * (n - exact)).long()
    large = large.clamp_max(n - 1)
    return bucket + torch.where(distance < exact, distance, large)


@POSITIONAL.register(
    "t5_bias", paper=RAFFEL_2020, tags=("relative", "learned", "score_bias"), complexity="O(L S)"
)
class T5RelativeBias(nn.Module):
    r"""Learned scalar bias per head and relative-distance bucket, added to the scores.

    Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer", 2020, https://arxiv.org/abs/1910.10683: 32 buckets, log-spaced up to 128
    tokens, bidirectional in the encoder and unidirectional in the decoder. T5 adds the bias to
    unscaled scores (it does not divide by ``sqrt(hd)``); pass it as an additive float mask.
    Queries are aligned to the end of the keys (bottom-right) when ``L != S``.

    Formula:
        $$
        \mathrm{softmax}\!\left(q_i k_j^\top + b_{h,\, \mathrm{bucket}(j - i)}\right)
        $$

        with 32 buckets: exact for small $|j - i|$, log-spaced up to 128, separate signs when
        bidirectional; T5 does not scale by $1/\sqrt{d_h}$.

    Args:
        num_heads: Heads (one bias per head and bucket).
        num_buckets: Buckets (32).
        max_distance: Distance beyond which all keys share the last bucket (128).
        bidirectional: Separate buckets for keys after the query (encoder); ``False`` for causal.
        max_len: Optional sequence-length limit (``None``: any).

    Shape:
        - forward(q_len, kv_len): ``(1, nh, L, S)``

    Example:
        >>> bias = T5RelativeBias(4)
        >>> bias(5, 7).shape
        torch.Size([1, 4, 5, 7])
    """

    def __init__(
        self,
        num_heads: int,
        *,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_buckets = check_positive_int("num_buckets", num_buckets, minimum=4)
        self.max_distance = check_positive_int("max_distance", max_distance, minimum=2)
        self.bidirectional = bidirectional
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)
        self.relative_attention_bias = nn.Embedding(self.num_buckets, self.num_heads)

    def forward(self, q_len: int, kv_len: int | None = None) -> torch.Tensor:
        q_len, kv_len = check_lengths(q_len, kv_len)
        check_length(type(self).__name__, max(q_len, kv_len), self.max_len)
        device = self.relative_attention_bias.weight.device
        buckets = t5_bucket(
            relative_positions(q_len, kv_len, device),
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )  # (L, S)
        bias = self.relative_attention_bias(buckets)  # (L, S, nh)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, nh, L, S)
