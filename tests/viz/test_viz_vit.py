"""ViT Figure 7, left and right: mean attention distance and patch-embedding components."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.testing import assert_close
from viz_helpers import assert_png

from attnzoo.viz import (
    mean_attention_distance,
    patch_embedding_components,
    plot_attention_distance,
    plot_patch_components,
)


def coordinates(height, width):
    return list(itertools.product(range(height), range(width)))


def test_uniform_attention_gives_the_mean_pairwise_distance():
    height, width, patch = 3, 4, 16
    cells = coordinates(height, width)
    pairs = [math.dist(a, b) for a, b in itertools.product(cells, cells)]
    expected = patch * sum(pairs) / len(pairs)
    n = height * width
    attn = torch.full((2, 3, n, n), 1.0 / n, dtype=torch.float64)
    out = mean_attention_distance(attn, grid_size=(height, width), patch_size=patch)
    assert_close(out, torch.full((3,), expected, dtype=torch.float64))


def test_attention_on_self_gives_zero():
    eye = torch.eye(9).expand(2, 4, 9, 9)
    assert torch.equal(mean_attention_distance(eye, grid_size=3, patch_size=16), torch.zeros(4))


def test_a_known_shift_gives_its_length_times_the_patch_size():
    height, width, patch = 4, 6, 16
    cells = coordinates(height, width)
    attn = torch.zeros(1, 1, len(cells), len(cells), dtype=torch.float64)
    for q, (r, c) in enumerate(cells):  # half the grid away, with wrap: the same for every query
        attn[0, 0, q, cells.index(((r + 2) % height, (c + 3) % width))] = 1.0
    out = mean_attention_distance(attn, grid_size=(height, width), patch_size=patch)
    assert_close(out, torch.tensor([math.hypot(2, 3) * patch], dtype=torch.float64))


def test_non_square_patches_scale_each_axis():
    attn = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 1, 2, 2)  # 1 x 2 grid: one column
    out = mean_attention_distance(attn, grid_size=(1, 2), patch_size=(16, 4))
    assert_close(out, torch.tensor([4.0]))


def test_prefix_tokens_are_dropped_and_rows_renormalised():
    gen = torch.Generator().manual_seed(0)
    patches = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64).softmax(-1)
    expected = mean_attention_distance(patches, grid_size=2, patch_size=8)
    full = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    full[..., 1:, 1:] = patches * 0.7  # the class-token column takes the rest of each row
    full[..., 1:, 0] = 0.3
    out = mean_attention_distance(full, grid_size=2, patch_size=8, num_prefix_tokens=1)
    assert_close(out, expected)


@pytest.mark.parametrize(
    ("attn", "kwargs", "error", "match"),
    [
        (torch.rand(4, 4), {"grid_size": 2}, ValueError, "attn must be 4-D"),
        (torch.rand(1, 1, 5, 5), {"grid_size": 2}, ValueError, "num_prefix_tokens"),
        (torch.rand(1, 1, 4, 4), {"grid_size": 0}, ValueError, "grid_size"),
        (torch.rand(1, 1, 4, 4), {"grid_size": "2"}, TypeError, "grid_size"),
        (torch.rand(1, 1, 4, 4), {"grid_size": 2, "patch_size": 0}, ValueError, "patch_size"),
        (torch.ones(1, 1, 4, 4, dtype=torch.long), {"grid_size": 2}, TypeError, "floating"),
    ],
)
def test_distance_bad_inputs(attn, kwargs, error, match):
    with pytest.raises(error, match=match):
        mean_attention_distance(attn, **kwargs)


def test_plot_attention_distance_one_dot_per_head(tmp_path):
    distances = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])]
    fig = plot_attention_distance(distances, reference=3.5, out=tmp_path / "d.png")
    assert_png(tmp_path / "d.png")
    dots = [c.get_offsets() for c in fig.axes[0].collections]
    assert [list(d[:, 0]) for d in dots] == [[1, 1, 1], [2, 2, 2]]
    assert fig.axes[0].get_xlabel() == "network depth (layer)"
    plot_attention_distance(torch.rand(3, 2))  # a (layers, nh) tensor works too
    with pytest.raises(TypeError, match="distances"):
        plot_attention_distance([])
    with pytest.raises(ValueError, match=r"distances\[0\]"):
        plot_attention_distance([torch.rand(2, 2)])


def rank_one_plus_noise(dim=32, channels=3, patch=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(channels * patch * patch, generator=gen, dtype=torch.float64)
    scale = 10 * torch.randn(dim, 1, generator=gen, dtype=torch.float64)
    noise = 0.1 * torch.randn(dim, channels * patch * patch, generator=gen, dtype=torch.float64)
    return (scale * direction + noise).reshape(dim, channels, patch, patch)  # (D, C, p, p)


def test_components_are_orthonormal_and_the_first_is_the_leading_singular_vector():
    weight = rank_one_plus_noise()
    comps = patch_embedding_components(weight, n=5)
    assert comps.shape == (5, 3, 4, 4) and comps.dtype == torch.float64
    flat = comps.flatten(1)
    assert_close(flat @ flat.T, torch.eye(5, dtype=torch.float64))
    centred = weight.flatten(1) - weight.flatten(1).mean(0)
    leading = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    assert_close(flat[0].abs(), leading.abs())
    assert_close(abs(float(flat[0] @ leading)), 1.0)
    assert flat[0][flat[0].abs().argmax()] > 0  # the documented sign convention


def test_components_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="n must be <= min"):
        patch_embedding_components(torch.randn(4, 3, 2, 2), n=5)
    with pytest.raises(ValueError, match="weight must be 4-D"):
        patch_embedding_components(torch.randn(4, 12))
    with pytest.raises(TypeError, match="n must be an int"):
        patch_embedding_components(torch.randn(4, 3, 2, 2), n=2.0)


def test_plot_patch_components(tmp_path):
    comps = patch_embedding_components(rank_one_plus_noise(), n=6)
    plot_patch_components(comps, ncols=3, out=tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    plot_patch_components(torch.randn(2, 1, 3, 3))  # grey filters
