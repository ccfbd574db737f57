"""Heat maps and attention rollout: the numbers exactly, bad inputs, each plot writes a PNG."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close
from viz_helpers import assert_png

from attnzoo.viz import attention_rollout, plot_attention, plot_heads, plot_rollout


def random_maps(layers=3, batch=2, heads=2, tokens=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, heads, tokens, tokens, generator=gen, dtype=torch.float64).softmax(-1)
        for _ in range(layers)
    ]


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(6, dtype=torch.float64).expand(2, 3, 6, 6)
    for residual in (True, False):
        out = attention_rollout([eye] * 4, residual=residual)
        assert_close(out, torch.eye(6, dtype=torch.float64).expand(2, 6, 6))


def test_rollout_is_the_product_of_the_residual_maps_last_layer_first():
    maps = random_maps()
    eye = torch.eye(5, dtype=torch.float64)
    fused = [0.5 * m.mean(1) + 0.5 * eye for m in maps]  # rows already sum to one
    assert_close(attention_rollout(maps), fused[2] @ fused[1] @ fused[0])
    raw = [m.mean(1) for m in maps]
    assert_close(attention_rollout(maps, residual=False), raw[2] @ raw[1] @ raw[0])


def test_rollout_head_fusion_and_renormalisation():
    (one,) = random_maps(layers=1)
    for fusion, fused in (("max", one.amax(1)), ("min", one.amin(1))):
        expected = fused / fused.sum(-1, keepdim=True)
        assert_close(attention_rollout([one], head_fusion=fusion, residual=False), expected)
    out = attention_rollout(random_maps(), head_fusion="max")
    assert_close(out.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_rollout_discard_ratio_drops_the_smallest_weights():
    (one,) = random_maps(layers=1, batch=1, heads=1, tokens=4)
    out = attention_rollout([one], residual=False, discard_ratio=0.5)
    assert int((out == 0).sum()) == 8  # half of the 16 entries
    kept = one[0, 0] > one[0, 0].flatten().kthvalue(8).values
    assert torch.equal(out[0] > 0, kept)


def test_rollout_accepts_the_dict_of_record_attention_in_order():
    maps = random_maps()
    recorded = {f"blocks.{i}.attn": m for i, m in enumerate(maps)}
    assert_close(attention_rollout(recorded), attention_rollout(maps))
    assert not torch.allclose(attention_rollout(recorded), attention_rollout(maps[::-1]))


def test_rollout_keeps_the_dtype():
    maps = [m.float() for m in random_maps()]
    assert attention_rollout(maps).dtype == torch.float32


@pytest.mark.parametrize(
    ("maps", "kwargs", "error", "match"),
    [
        ([], {}, TypeError, "maps"),
        (torch.rand(1, 2, 3, 3), {}, TypeError, "maps"),
        ([torch.rand(2, 3, 3)], {}, ValueError, "maps\\[0\\]"),
        ([torch.rand(1, 2, 3, 4)], {}, ValueError, "square"),
        ([torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4)], {}, ValueError, "maps\\[1\\]"),
        ([torch.ones(1, 1, 3, 3, dtype=torch.long)], {}, TypeError, "floating"),
        ([torch.rand(1, 1, 3, 3)], {"head_fusion": "sum"}, ValueError, "head_fusion"),
        ([torch.rand(1, 1, 3, 3)], {"discard_ratio": 1.0}, ValueError, "discard_ratio"),
        ([torch.rand(1, 1, 3, 3)], {"residual": 1}, TypeError, "residual"),
    ],
)
def test_rollout_bad_inputs(maps, kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_rollout(maps, **kwargs)


def test_plot_attention_writes_a_png_with_labels(tmp_path):
    weights = torch.rand(3, 4).softmax(-1)
    fig = plot_attention(
        weights, x_labels=list("abcd"), y_labels=list("xyz"), title="t", out=tmp_path / "a.png"
    )
    assert_png(tmp_path / "a.png")
    axis = fig.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == list("abcd")
    assert (axis.get_xlabel(), axis.get_ylabel(), axis.get_title()) == ("keys", "queries", "t")


def test_plot_attention_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="weights must be 2-D"):
        plot_attention(torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="x_labels must have 3 entries"):
        plot_attention(torch.rand(3, 3), x_labels=["a"])
    with pytest.raises(TypeError, match="y_labels"):
        plot_attention(torch.rand(3, 3), y_labels="abc")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_attention(torch.rand(3, 3), out=tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        plot_attention(torch.rand(3, 3), out=tmp_path / "missing" / "a.png")


def test_plot_heads_draws_one_panel_per_head(tmp_path):
    fig = plot_heads(torch.rand(2, 3, 4, 4), batch_index=1, out=tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    assert [a.get_title() for a in fig.axes[:3]] == ["head 0", "head 1", "head 2"]
    with pytest.raises(ValueError, match="batch_index"):
        plot_heads(torch.rand(2, 3, 4, 4), batch_index=2)


def test_plot_heads_into_the_callers_axes():
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    axes = fig.subplots(1, 2)
    assert plot_heads(torch.rand(2, 3, 3), ax=axes) is fig
    with pytest.raises(ValueError, match="2 Axes"):
        plot_heads(torch.rand(2, 3, 3), ax=axes[:1])


def test_plot_rollout_grid_and_matrix(tmp_path):
    rollout = attention_rollout(random_maps(tokens=5))
    plot_rollout(rollout, grid_size=2, image=torch.rand(3, 16, 16), out=tmp_path / "r.png")
    assert_png(tmp_path / "r.png")
    fig = plot_rollout(rollout[0], out=tmp_path / "m.png")
    assert fig.axes[0].get_title() == "attention rollout"
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        plot_rollout(rollout, grid_size=(2, 3))
    with pytest.raises(ValueError, match="image"):
        plot_rollout(rollout, grid_size=2, image=torch.rand(2, 8, 8))
