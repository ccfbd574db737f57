"""Nadaraya–Watson pictures: the example's numbers and the two plots."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close
from viz_helpers import assert_png

from attnzoo.functional import average_pooling, nadaraya_watson
from attnzoo.viz import (
    nadaraya_watson_example,
    plot_nadaraya_watson,
    plot_nadaraya_watson_weights,
)


def test_example_numbers():
    ex = nadaraya_watson_example(n_train=20, epochs=3)
    assert ex.x_train.shape == (20,) and ex.x_test.shape == (50,)
    assert torch.equal(ex.x_train, ex.x_train.sort().values)
    average, gaussian, learned = ex.predictions
    assert average == "average" and gaussian == "gaussian (h=1)" and learned.startswith("learned")
    assert_close(ex.predictions["average"], average_pooling(ex.x_test, ex.x_train, ex.y_train))
    pred, weights = nadaraya_watson(ex.x_test, ex.x_train, ex.y_train)
    assert_close(ex.predictions[gaussian], pred)
    assert_close(ex.weights[gaussian], weights)
    for w in ex.weights.values():
        assert w.shape == (50, 20)
        assert_close(w.sum(-1), torch.ones(50))

    def mse(label):
        return float(((ex.predictions[label] - ex.y_truth) ** 2).mean())

    assert mse(gaussian) < mse("average")  # the survey's point
    again = nadaraya_watson_example(n_train=20, epochs=3)
    assert torch.equal(again.predictions[learned], ex.predictions[learned])


def test_untrained_learned_bandwidth_equals_the_gaussian_kernel():
    ex = nadaraya_watson_example(n_train=10, epochs=0)
    assert_close(ex.predictions["learned (w=1.00)"], ex.predictions["gaussian (h=1)"])


def test_example_bad_inputs():
    with pytest.raises(ValueError, match="bandwidth"):
        nadaraya_watson_example(bandwidth=0.0)
    with pytest.raises(ValueError, match="n_train"):
        nadaraya_watson_example(n_train=0)


def test_plots_write_pngs(tmp_path):
    ex = nadaraya_watson_example(n_train=15, epochs=1)
    fig = plot_nadaraya_watson(
        ex.x_train, ex.y_train, ex.x_test, ex.y_truth, ex.predictions, out=tmp_path / "f.png"
    )
    assert_png(tmp_path / "f.png")
    assert len(fig.axes[0].lines) == 1 + len(ex.predictions)
    shuffled = torch.randperm(15)
    weights = ex.weights["gaussian (h=1)"]
    fig = plot_nadaraya_watson_weights(
        weights[:, shuffled], x_test=ex.x_test, x_train=ex.x_train[shuffled], out=tmp_path / "w.png"
    )
    assert_png(tmp_path / "w.png")
    drawn = fig.axes[0].images[0].get_array()
    assert_close(torch.as_tensor(drawn.data), weights)  # columns sorted back by input


def test_plot_bad_inputs():
    x = torch.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="y_train must have 4 entries"):
        plot_nadaraya_watson(x, x[:3], x, x, {})
    with pytest.raises(ValueError, match=r"predictions\['p'\] must have 4 entries"):
        plot_nadaraya_watson(x, x, x, x, {"p": x[:2]})
    with pytest.raises(TypeError, match="predictions must be a dict"):
        plot_nadaraya_watson(x, x, x, x, [x])
    with pytest.raises(ValueError, match="x_train must have 3 entries"):
        plot_nadaraya_watson_weights(torch.rand(4, 3), x_train=x)
