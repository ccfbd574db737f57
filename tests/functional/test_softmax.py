"""masked_softmax: d2l valid lengths, masks, fully masked rows, half precision, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from attnzoo.functional import masked_softmax


def test_d2l_valid_lens_1d_and_2d():
    scores = torch.rand(2, 2, 4)
    w = masked_softmax(scores, valid_lens=torch.tensor([2, 3]))
    assert torch.equal(w[0, :, 2:], torch.zeros(2, 2))
    assert torch.equal(w[1, :, 3:], torch.zeros(2, 1))
    assert_close(w.sum(-1), torch.ones(2, 2))
    assert_close(w[0, :, :2], torch.softmax(scores[0, :, :2], -1))
    w2 = masked_softmax(scores, valid_lens=torch.tensor([[1, 3], [2, 4]]))
    assert torch.equal(w2[0, 0, 1:], torch.zeros(3))
    assert_close(w2[1, 1], torch.softmax(scores[1, 1], -1))


def test_valid_lens_on_four_dim_scores_and_with_mask():
    scores = torch.randn(2, 3, 4, 5)
    keep = torch.rand(2, 1, 4, 5) > 0.2
    lens = torch.tensor([3, 5])
    got = masked_softmax(scores, keep, valid_lens=lens)
    manual = keep & (torch.arange(5) < lens.view(2, 1, 1, 1))
    assert_close(got, masked_softmax(scores, manual))


def test_fully_masked_rows_are_zero_with_zero_grad():
    scores = torch.randn(2, 3, 4, requires_grad=True)
    w = masked_softmax(scores, valid_lens=torch.tensor([0, 4]))
    assert torch.equal(w[0], torch.zeros(3, 4))
    (w * torch.randn_like(w)).sum().backward()
    assert torch.equal(scores.grad[0], torch.zeros(3, 4))
    assert torch.isfinite(scores.grad).all()


def test_float_mask_is_additive_and_minus_inf_forbids():
    scores = torch.randn(3, 4)
    bias = torch.tensor([0.0, 1.0, -math.inf, 2.0])
    want = torch.softmax(scores + bias, -1)
    assert_close(masked_softmax(scores, bias.expand(3, 4)), want)


def test_half_scores_normalised_in_float32():
    scores = torch.tensor([[10.0, 10.001, -5.0]], dtype=torch.float16)
    w = masked_softmax(scores)
    assert w.dtype == torch.float16
    assert_close(w.float(), torch.softmax(scores.float(), -1).half().float())


def test_gradcheck():
    scores = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(2, 3, 4) > 0.3
    keep[0, 0] = False
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, keep), (scores,))
    lens = torch.tensor([2, 0])
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, valid_lens=lens), (scores,))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mask": torch.ones(3, 4, dtype=torch.uint8)}, TypeError, "bool"),
        ({"mask": torch.ones(5, 4, dtype=torch.bool)}, ValueError, "broadcast"),
        ({"valid_lens": torch.tensor([1.5, 2.0])}, TypeError, "integer"),
        ({"valid_lens": torch.tensor([1, 2, 3])}, ValueError, r"\(B,\)"),
        ({"valid_lens": torch.tensor([-1, 2])}, ValueError, ">= 0"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        masked_softmax(torch.randn(2, 3, 4), **kwargs)
