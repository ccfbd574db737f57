"""Scoring functions against element-by-element definitions and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from attnzoo.functional import (
    additive_score,
    attention_pooling,
    bilinear_score,
    cosine_score,
    dot_score,
    scaled_dot_score,
)

f64 = torch.float64


def test_dot_and_scaled_dot_elementwise():
    q, k = torch.randn(2, 3, 5, dtype=f64), torch.randn(2, 4, 5, dtype=f64)
    want = torch.tensor(
        [[[float(q[b, i] @ k[b, j]) for j in range(4)] for i in range(3)] for b in range(2)],
        dtype=f64,
    )
    assert_close(dot_score(q, k), want)
    assert_close(scaled_dot_score(q, k), want / math.sqrt(5))
    assert_close(scaled_dot_score(q, k, scale=0.3), want * 0.3)


def test_additive_hand_computed():
    # q = [1, 2], k = [0.5, -1, 2]; W_q = I, W_k = [[1, 1, 0], [0, 0, 1]], w_v = [2, -1]
    # W_q q + W_k k = [1 + (-0.5), 2 + 2] = [0.5, 4]; score = 2 tanh(0.5) - tanh(4)
    q = torch.tensor([[1.0, 2.0]], dtype=f64)
    k = torch.tensor([[0.5, -1.0, 2.0]], dtype=f64)
    w_q = torch.eye(2, dtype=f64)
    w_k = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=f64)
    w_v = torch.tensor([2.0, -1.0], dtype=f64)
    expected = 2 * math.tanh(0.5) - math.tanh(4.0)
    assert_close(additive_score(q, k, w_q, w_k, w_v), torch.tensor([[expected]], dtype=f64))


def test_additive_per_head_and_preprojected():
    q, k = torch.randn(2, 3, 4, 6, dtype=f64), torch.randn(2, 3, 5, 6, dtype=f64)
    w_v = torch.randn(3, 6, dtype=f64)
    got = additive_score(q, k, None, None, w_v)
    for h in range(3):
        assert_close(got[:, h], additive_score(q[:, h], k[:, h], None, None, w_v[h]))


def test_d2l_additive_attention_example():
    # d2l 10.3: queries (2, 1, 20), keys (2, 10, 2), values 0..39 reshaped (2, 10, 4), valid [2, 6].
    # With W = 1, w_v = 1 and identical keys every score is equal, so weights are uniform over
    # the valid keys and the output is the mean of the first 2 / 6 values.
    queries, keys = torch.normal(0, 1, (2, 1, 20)), torch.ones(2, 10, 2)
    values = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4).repeat(2, 1, 1)
    scores = additive_score(queries, keys, torch.ones(8, 20), torch.ones(8, 2), torch.ones(8))
    out, w = attention_pooling(scores, values, valid_lens=torch.tensor([2, 6]))
    assert_close(out[0, 0], values[0, :2].mean(0))
    assert_close(out[1, 0], values[1, :6].mean(0))
    assert torch.equal(w[0, 0, 2:], torch.zeros(8))


def test_bilinear_and_cosine():
    q, k = torch.randn(3, 4, dtype=f64), torch.randn(5, 6, dtype=f64)
    weight = torch.randn(4, 6, dtype=f64)
    want = torch.tensor(
        [[float(q[i] @ weight @ k[j]) for j in range(5)] for i in range(3)], dtype=f64
    )
    assert_close(bilinear_score(q, k, weight), want)
    q2 = torch.randn(3, 6, dtype=f64)
    cos = torch.nn.functional.cosine_similarity(q2[:, None], k[None], dim=-1)
    assert_close(cosine_score(q2, k, scale=2.0), 2 * cos)
    assert torch.equal(cosine_score(torch.zeros(1, 6), torch.ones(2, 6)), torch.zeros(1, 2))


def test_scoring_errors():
    with pytest.raises(ValueError, match="same feature size"):
        dot_score(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="w_k"):
        additive_score(
            torch.randn(2, 3),
            torch.randn(2, 4),
            torch.randn(5, 3),
            torch.randn(5, 3),
            torch.randn(5),
        )
    with pytest.raises(ValueError, match=r"\(dq, dk\)"):
        bilinear_score(torch.randn(2, 3), torch.randn(2, 4), torch.randn(4, 3))
    with pytest.raises(TypeError, match="dtype"):
        dot_score(torch.randn(2, 3), torch.randn(2, 3, dtype=f64))
