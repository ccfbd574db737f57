"""Hard attention: argmax, sampling and straight-through Gumbel-softmax."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from attnzoo.functional import hard_attention


def test_argmax_one_hot_and_masked_rows():
    scores = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    keep = torch.tensor([[True, True, True], [False, True, True]])
    w = hard_attention(scores, keep)
    assert torch.equal(w, torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    dead = hard_attention(scores, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(dead, torch.zeros(2, 3))


def test_argmax_has_no_gradient_path():
    scores = torch.randn(4, 5, requires_grad=True)
    assert not hard_attention(scores).requires_grad


def test_sample_frequencies_follow_softmax():
    scores = torch.tensor([0.0, 1.0, 2.0]).expand(20000, 3)
    gen = torch.Generator().manual_seed(0)
    freq = hard_attention(scores, mode="sample", generator=gen).mean(0)
    assert_close(freq, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1), atol=0.015, rtol=0)


def test_sample_reproducible_and_respects_mask():
    scores = torch.randn(50, 6)
    keep = torch.rand(50, 6) > 0.5
    keep[:, 0] = True
    a = hard_attention(scores, keep, mode="sample", generator=torch.Generator().manual_seed(1))
    b = hard_attention(scores, keep, mode="sample", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(a * ~keep, torch.zeros_like(a))
    assert torch.equal(a.sum(-1), torch.ones(50))


def test_gumbel_straight_through():
    scores = torch.tensor([0.0, 1.0, 2.0]).repeat(20000, 1).requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    w = hard_attention(scores, mode="gumbel", tau=0.5, generator=gen)
    assert torch.equal(w.detach().sum(-1), torch.ones(20000))  # forward is one-hot
    assert_close(
        w.detach().mean(0), torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1), atol=0.015, rtol=0
    )  # Gumbel-max: argmax frequencies are the softmax probabilities
    (w[:, 0]).sum().backward()
    assert scores.grad.abs().sum() > 0  # gradient flows through the soft sample


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"mode": "max"}, ValueError), ({"mode": "gumbel", "tau": 0.0}, ValueError)],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        hard_attention(torch.randn(2, 3), **kwargs)
