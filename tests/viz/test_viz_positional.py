"""Sinusoid table, binary counter and position-embedding similarity: numbers and pictures."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close
from viz_helpers import assert_png

import attnzoo
from attnzoo.positional.sinusoidal import sinusoid_table
from attnzoo.viz import (
    binary_counter,
    plot_binary_counter,
    plot_position_similarity,
    plot_sinusoidal,
    position_embedding_similarity,
    sinusoid_heatmap,
)


def test_sinusoid_heatmap_is_the_library_table():
    assert torch.equal(sinusoid_heatmap(60, 32), sinusoid_table(torch.arange(60), 32))
    assert torch.equal(sinusoid_heatmap(5, 7, base=100.0), sinusoid_table(torch.arange(5), 7, 100))


def test_binary_counter_zero_to_seven():
    expected = [[int(b) for b in f"{i:03b}"] for i in range(8)]
    assert binary_counter(8).tolist() == expected
    assert binary_counter(8, msb_first=False).tolist() == [row[::-1] for row in expected]
    assert binary_counter(3, bits=4).tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    assert binary_counter(1).tolist() == [[0]]


def test_higher_bits_alternate_more_slowly():
    bits = binary_counter(16, msb_first=False)
    changes = (bits[1:] != bits[:-1]).sum(0).tolist()
    assert changes == [15, 7, 3, 1]


def test_binary_counter_bad_inputs():
    with pytest.raises(ValueError, match="bits must be >= 3"):
        binary_counter(8, bits=2)
    with pytest.raises(ValueError, match="n must be"):
        binary_counter(0)
    with pytest.raises(TypeError, match="n must be an int"):
        binary_counter(8.0)


def sincos(dim, height, width):
    grid = torch.ones(1, height, width, dtype=torch.bool)
    table = attnzoo.create("sincos_2d", dim, normalize=False).encoding(grid)  # (1, D, gh, gw)
    return table[0].flatten(1).T  # (gh * gw, D)


def test_sincos_similarity_peaks_on_each_patch_itself():
    height, width = 4, 5
    sim = position_embedding_similarity(sincos(32, height, width), grid_size=(height, width))
    assert sim.shape == (height, width, height, width)
    flat = sim.reshape(height * width, height * width)
    assert torch.equal(flat.argmax(-1), torch.arange(height * width))
    assert_close(flat.diagonal(), torch.ones(height * width))
    assert_close(flat, flat.T)


def test_similarity_drops_prefix_rows_and_accepts_a_batch_dim():
    table = sincos(16, 3, 3)
    with_cls = torch.cat([torch.randn(1, 16), table])[None]  # (1, 1 + 9, 16)
    expected = position_embedding_similarity(table, grid_size=3)
    assert_close(
        position_embedding_similarity(with_cls, grid_size=3, num_prefix_tokens=1), expected
    )


def test_similarity_of_hand_made_embeddings():
    table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]])
    sim = position_embedding_similarity(table, grid_size=(2, 2))
    half = 2**-0.5
    assert_close(sim[0, 0].flatten(), torch.tensor([1.0, 0.0, half, -1.0]))


@pytest.mark.parametrize(
    ("table", "kwargs", "match"),
    [
        (torch.randn(5, 4), {"grid_size": 2}, "num_prefix_tokens"),
        (torch.randn(2, 4, 4), {"grid_size": 2}, r"\(1, N, D\)"),
        (torch.randn(4), {"grid_size": 2}, "pos_embed must be 2-D or 3-D"),
    ],
)
def test_similarity_bad_inputs(table, kwargs, match):
    with pytest.raises(ValueError, match=match):
        position_embedding_similarity(table, **kwargs)


def test_plots_write_pngs(tmp_path):
    plot_sinusoidal(20, 16, columns=(2, 3), out=tmp_path / "s.png")
    plot_binary_counter(8, length=20, dim=16, out=tmp_path / "b.png")
    sim = position_embedding_similarity(sincos(16, 3, 3), grid_size=3)
    plot_position_similarity(sim, out=tmp_path / "p.png")
    for name in ("s", "b", "p"):
        assert_png(tmp_path / f"{name}.png")


def test_plot_sinusoidal_axes_and_columns():
    fig = plot_sinusoidal(10, 8, columns=())
    assert len(fig.axes) == 2  # the heat map and its colour bar
    with pytest.raises(ValueError, match="columns entries must be < dim"):
        plot_sinusoidal(10, 8, columns=(8,))
    with pytest.raises(ValueError, match="2 Axes"):
        plot_sinusoidal(10, 8, columns=(1, 2), ax=fig.axes[0])
