"""ALiBi: attention with linear biases (Press et al. 2022)."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.positional.base import check_length, check_lengths
from attnzoo.positional.relative import relative_positions
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["ALiBi", "alibi_slopes"]

PRESS_2022 = Paper(
    title="Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation",
    authors="Press, Smith, Lewis",
    year=2022,
    url="https://arxiv.org/abs/2108.12409",
)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Head slopes of Press et al.: a geometric sequence starting at ``2^(-8/n)``.

    For ``n`` a power of two, slope ``h`` (0-based) is ``2^(-8(h+1)/n)``. Otherwise the slopes of
    the closest smaller power of two ``m`` come first, followed by every other slope of ``2m``
    (the paper's reference implementation).

    Example:
        >>> alibi_slopes(8)
        tensor([0.5000, 0.2500, 0.1250, 0.0625, 0.0312, 0.0156, 0.0078, 0.0039])
    """
    num_heads = check_positive_int("num_heads", num_heads)

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(closest)
    if closest != num_heads:
        slopes += geometric(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


@POSITIONAL.register(
    "alibi", paper=PRESS_2022, tags=("relative", "fixed", "score_bias"), complexity="O(L S)"
)
class ALiBi(nn.Module):
    r"""Linear distance penalty per head, added to the attention scores.

    Press, Smith, Lewis, "Train Short, Test Long: Attention with Linear Biases Enables Input
    Length Extrapolation", 2022, https://arxiv.org/abs/2108.12409. Bias
    ``b_h(i, j) = -m_h |i - j|`` with the slopes of :func:`alibi_slopes`; under a causal mask it
    is the paper's ``m_h (j - i)``, and without one the symmetric form used by bidirectional
    ALiBi models. No parameters; queries are aligned to the end of the keys when ``L != S``.

    Formula:
        $$
        \mathrm{softmax}\!\left(\frac{q_i k_j^\top}{\sqrt{d_h}} - m_h\, |i - j|\right), \qquad
        m_h = 2^{-8h/n_h}, \; h = 1, \dots, n_h
        $$

        (slopes for a power-of-two $n_h$; otherwise interleaved as in the paper).

    Args:
        num_heads: Heads (one slope each).
        max_len: Optional sequence-length limit (``None``: any — ALiBi extrapolates).

    Shape:
        - forward(q_len, kv_len): ``(1, nh, L, S)`` float32 bias (pass it as an additive mask)

    Example:
        >>> alibi = ALiBi(num_heads=4)
        >>> alibi(3)[0, 0]  # head 0 of 4: slope 2^(-8/4) = 1/4
        tensor([[ 0.0000, -0.2500, -0.5000],
                [-0.2500,  0.0000, -0.2500],
                [-0.5000, -0.2500,  0.0000]])
    """

    def __init__(self, num_heads: int, *, max_len: int | None = None) -> None:
        super().__init__()
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)
        self.register_buffer("slopes", alibi_slopes(self.num_heads), persistent=False)

    def forward(self, q_len: int, kv_len: int | None = None) -> torch.Tensor:
        q_len, kv_len = check_lengths(q_len, kv_len)
        check_length(type(self).__name__, max(q_len, kv_len), self.max_len)
        distance = relative_positions(q_len, kv_len, self.slopes.device).abs()  # (L, S)
        return 0.0 - self.slopes.view(1, -1, 1, 1) * distance  # (1, nh, L, S); 0.0 - avoids -0.0

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"
