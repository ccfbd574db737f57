"""Mask grids of mask functions and pattern mechanisms; their pictures."""

from __future__ import annotations

import pytest
import torch
from viz_helpers import assert_png

import attnzoo
from attnzoo import masks
from attnzoo.viz import demo_options, mask_grid, pattern_names, plot_mask, plot_patterns

PATTERNS = ["bigbird", "global", "local", "longformer", "sparse_transformer", "strided"]


def test_pattern_names_are_the_pattern_mechanisms():
    assert pattern_names() == PATTERNS


@pytest.mark.parametrize("name", PATTERNS)
def test_a_mechanism_name_draws_the_mechanisms_own_pattern(name):
    options = demo_options(name, 24)
    module = attnzoo.create(name, 16, num_heads=2, **options)
    expected = masks.materialize(module.pattern(24, 24), 24)[0, 0]
    grid = mask_grid(name, 24, **options)
    assert grid.dtype == torch.bool and torch.equal(grid, expected)


def test_mechanism_and_mask_function_agree_where_they_should():
    assert torch.equal(mask_grid("local", 10, window=2), mask_grid("sliding_window", 10, window=2))
    expected = (torch.arange(10)[:, None] - torch.arange(10)).abs() <= 2
    assert torch.equal(mask_grid("local", 10, window=2), expected)


def test_mask_function_names_and_callables():
    causal = mask_grid("causal", 3, kv_length=5)  # bottom-right aligned
    assert causal.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert torch.equal(mask_grid(masks.causal(), 4), torch.ones(4, 4, dtype=torch.bool).tril())
    grid = mask_grid("random_blocks", 8, block_size=2, num_random=1)  # q_len is filled in
    assert grid.shape == (8, 8)


def test_a_mechanism_without_a_pattern_is_named_with_the_choices():
    with pytest.raises(ValueError, match="'mha' is not a pattern mechanism") as info:
        mask_grid("mha", 8)
    assert all(name in str(info.value) for name in PATTERNS)


def test_bad_targets_and_options():
    with pytest.raises(ValueError, match="did you mean 'bigbird'"):
        mask_grid("bigbrid", 8)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['windw'\].*window"):
        mask_grid("local", 8, windw=2)
    with pytest.raises(TypeError, match="needs the option"):
        mask_grid("sliding_window", 8)
    with pytest.raises(ValueError, match="kv_length must equal"):
        mask_grid("local", 8, kv_length=4, window=1)
    with pytest.raises(TypeError, match="a mask_mod takes none"):
        mask_grid(masks.causal(), 4, window=1)
    with pytest.raises(ValueError, match="length"):
        mask_grid("local", 0, window=1)
    with pytest.raises(TypeError, match="name must be a str"):
        mask_grid(3, 4)


def test_plot_mask_and_patterns_write_pngs(tmp_path):
    fig = plot_mask("bigbird", 16, out=tmp_path / "m.png", **demo_options("bigbird", 16))
    assert_png(tmp_path / "m.png")
    assert fig.axes[0].get_title().startswith("bigbird\n")
    plot_mask(mask_grid("local", 6, window=1), out=tmp_path / "t.png")
    assert_png(tmp_path / "t.png")
    fig = plot_patterns(length=16, options={"local": {"window": 1}}, out=tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    assert [a.get_title().split("\n")[0] for a in fig.axes] == [
        "local",
        "strided",
        "global",
        "bigbird",
    ]
    assert "window=1" in fig.axes[0].get_title()


def test_plot_mask_bad_inputs():
    with pytest.raises(ValueError, match="length is required"):
        plot_mask("local", window=1)
    with pytest.raises(ValueError, match="bool mask"):
        plot_mask(torch.ones(3, 3))
    with pytest.raises(ValueError, match="not in names"):
        plot_patterns(("local",), 8, options={"global": {}})
    with pytest.raises(TypeError, match="names"):
        plot_patterns("local")
