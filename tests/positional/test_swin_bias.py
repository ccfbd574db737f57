"""Swin's 2-D relative position bias: timm's table gives timm's bias, resizing, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import attnzoo
from attnzoo.positional import window_relative_index
from timm_compat import import_timm_module


@pytest.mark.parametrize("window", [7, (3, 5)])
def test_bias_equals_timm_window_attention_with_the_same_table(window):
    swin = import_timm_module("timm.models.swin_transformer")
    torch.manual_seed(0)
    theirs = swin.WindowAttention(dim=24, num_heads=3, window_size=window)
    ours = attnzoo.create("swin_bias", 3, window_size=window)
    ours.load_state_dict({"relative_position_bias_table": theirs.relative_position_bias_table})
    assert_close(ours(), theirs._get_rel_pos_bias())
    win_h, win_w = (window, window) if isinstance(window, int) else window
    assert torch.equal(
        window_relative_index(win_h, win_w), swin.get_relative_position_index(win_h, win_w)
    )


def test_index_reads_the_offset_of_each_pair():
    index = window_relative_index(2, 3)  # token t at (t // 3, t % 3)
    for i in range(6):
        for j in range(6):
            dy, dx = i // 3 - j // 3, i % 3 - j % 3
            assert index[i, j] == (dy + 1) * 5 + (dx + 2)


def test_resize_is_bicubic_on_the_offset_grid_and_keeps_constants():
    torch.manual_seed(0)
    bias = attnzoo.create("swin_bias", 2, window_size=4)
    grid = bias.relative_position_bias_table.detach().T.reshape(1, 2, 7, 7).clone()
    bias.resize(6)
    assert bias.window_size == (6, 6) and bias().shape == (1, 2, 36, 36)
    want = F.interpolate(grid, size=(11, 11), mode="bicubic", align_corners=False)
    assert_close(bias.relative_position_bias_table.T.reshape(1, 2, 11, 11), want)
    flat = attnzoo.create("swin_bias", 2, window_size=3)
    with torch.no_grad():
        flat.relative_position_bias_table.fill_(0.25)
    flat.resize((5, 4))
    assert_close(flat(), torch.full((1, 2, 20, 20), 0.25))  # constants survive interpolation
    same = bias.relative_position_bias_table
    bias.resize(6)  # the same window: nothing changes
    assert bias.relative_position_bias_table is same


def test_loading_a_checkpoint_of_another_window_resizes_it():
    torch.manual_seed(0)
    small = attnzoo.create("swin_bias", 3, window_size=7)
    large = attnzoo.create("swin_bias", 3, window_size=12)
    large.load_state_dict(small.state_dict())  # window 7 -> 12, as fine-tuning at 384 px
    resized = attnzoo.create("swin_bias", 3, window_size=7)
    resized.load_state_dict(small.state_dict())
    resized.resize(12)
    assert_close(large(), resized())
    with pytest.raises(RuntimeError, match="relative_position_bias_table"):
        large.load_state_dict({"relative_position_bias_table": torch.zeros(10, 3)})


def test_bad_window_and_gradient():
    with pytest.raises(ValueError, match="window_size"):
        attnzoo.create("swin_bias", 2, window_size=0)
    with pytest.raises(TypeError, match="window_size"):
        attnzoo.create("swin_bias", 2, window_size=(2, 2, 2))
    with pytest.raises(ValueError, match="num_heads"):
        attnzoo.create("swin_bias", 0)
    bias = attnzoo.create("swin_bias", 2, window_size=3)
    bias().square().sum().backward()
    assert bias.relative_position_bias_table.grad.abs().sum() > 0
