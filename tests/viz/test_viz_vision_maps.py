"""``vision_attention_maps``: one query pixel's weights per self-attention vision module."""

from __future__ import annotations

import pytest
import torch

from attnzoo.viz import VISION_MAPS, plot_vision_maps, vision_attention_maps


def test_each_module_looks_where_its_paper_says():
    maps = vision_attention_maps(size=10, query=(3, 6), seed=1)
    assert set(maps) == set(VISION_MAPS)
    for image in maps.values():
        assert image.shape == (10, 10) and torch.isfinite(image).all()
    # Non-local: a softmax over every pixel
    torch.testing.assert_close(maps["non_local"].sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    assert (maps["non_local"] > 0).all()
    # CCNet: the query's row and column only, the pixel counted once (H + W - 1 pixels)
    cross = torch.zeros(10, 10, dtype=torch.bool)
    cross[3, :] = cross[:, 6] = True
    assert ((maps["ccnet"] > 0) == cross).all()
    torch.testing.assert_close(maps["ccnet"].sum(), torch.tensor(1.0), rtol=0, atol=1e-5)


def test_gcnet_pools_one_map_for_every_query():
    image = torch.randn(1, 16, 6, 6)
    corner = vision_attention_maps(["gc"], image=image, query=(0, 0))["gc"]
    centre = vision_attention_maps(["gc"], image=image, query=(3, 3))["gc"]
    torch.testing.assert_close(corner, centre)
    nonlocal_corner = vision_attention_maps(["non_local"], image=image, query=(0, 0))["non_local"]
    nonlocal_centre = vision_attention_maps(["non_local"], image=image, query=(3, 3))["non_local"]
    assert not torch.allclose(nonlocal_corner, nonlocal_centre)


def test_bad_arguments():
    with pytest.raises(ValueError, match="have no pixel attention map"):
        vision_attention_maps(["se"])
    with pytest.raises(TypeError, match="names must be a non-empty list"):
        vision_attention_maps("ccnet")
    with pytest.raises(ValueError, match="query must be"):
        vision_attention_maps(["ccnet"], size=4, query=(4, 0))
    with pytest.raises(ValueError, match=r"image must be a \(1, C, H, W\)"):
        vision_attention_maps(["ccnet"], image=torch.randn(2, 4, 4, 4))
    with pytest.raises(TypeError, match="image must be a"):
        vision_attention_maps(["ccnet"], image=[[1.0]])
    with pytest.raises(TypeError, match="maps must be a non-empty mapping"):
        plot_vision_maps({})


def test_plot_marks_the_query():
    fig = plot_vision_maps({"a": torch.rand(4, 4), "b": torch.rand(4, 4)}, query=(1, 2))
    assert [a.get_title() for a in fig.axes] == ["a", "b"]
    assert fig.axes[0].lines[0].get_xdata()[0] == 2
