"""examples/attention_as_convolution.py: a 9-head attnzoo ``mha`` equals a 3x3 ``nn.Conv2d``.

Cordonnier, Loukas and Jaggi, "On the Relationship between Self-Attention and Convolutional
Layers", ICLR 2020, https://arxiv.org/abs/1911.03584 (Lemma 1 / Theorem 1).
"""

from __future__ import annotations

import itertools
import math
import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

from attnzoo.sequence.multihead import MultiHeadAttention
from attnzoo.viz import record_attention

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attention_as_convolution.py"


@pytest.fixture(scope="module")
def ex():
    return runpy.run_path(str(EXAMPLE), run_name="attention_as_convolution")


def _conv_and_image(seed, channels, height, width, batch=2, bias=True):
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        if bias:
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    image = torch.randn(batch, channels, height, width, generator=gen)
    return conv, image


def _num_keys(height, width):
    return (height + 2) * (width + 2)


@pytest.mark.parametrize(
    ("seed", "channels", "height", "width", "bias"),
    [
        (0, 4, 12, 12, True),
        (1, 3, 7, 10, True),
        (2, 1, 5, 3, True),
        (3, 6, 9, 4, False),
        (4, 2, 1, 8, True),  # one row: every neighbour above and below is padding
    ],
)
def test_layer_equals_convolution(ex, seed, channels, height, width, bias):
    conv, image = _conv_and_image(seed, channels, height, width, bias=bias)
    alpha = ex["alpha_for"](_num_keys(height, width))
    mha, mask = ex["conv_as_attention"](conv, height, width, alpha=alpha)
    with torch.no_grad():
        got = ex["attention_conv"](image, mha, mask)
        want = conv(image)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert want.abs().max() > 1.0  # a real signal, not a comparison of zeros
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_layer_is_attnzoo_mha_with_positional_mask(ex):
    conv, _ = _conv_and_image(0, 4, 6, 5)
    mha, mask = ex["conv_as_attention"](conv, 6, 5, alpha=10.0)
    assert isinstance(mha, MultiHeadAttention)
    assert (mha.num_heads, mha.head_dim, mha.dim) == (9, 4, 4)
    assert mask.shape == (1, 9, _num_keys(6, 5), _num_keys(6, 5)) and mask.dtype == torch.float32
    for proj in (mha.q_proj, mha.k_proj):
        assert not proj.weight.any() and not proj.bias.any()
    # out_proj's bias is the conv's bias; its block for the centre head is the centre tap.
    torch.testing.assert_close(mha.out_proj.bias, conv.bias.detach())
    torch.testing.assert_close(mha.out_proj.weight[:, 4 * 4 : 5 * 4], conv.weight[:, :, 1, 1])


def test_error_falls_as_alpha_grows(ex):
    conv, image = _conv_and_image(5, 4, 8, 7)
    alpha_star = ex["alpha_for"](_num_keys(8, 7))
    errors = [ex["max_error"](conv, image, a) for a in (0.5, 1.0, 2.0, 4.0, 8.0, alpha_star)]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[1] > 1e-1  # alpha = 1: far from a convolution
    assert errors[1] > 1e4 * errors[-1]
    assert errors[-1] <= 1e-5


def test_alpha_for_meets_the_bound(ex):
    for num_keys in (9, 56, 196, 10_000):
        alpha = ex["alpha_for"](num_keys)
        assert num_keys * math.exp(-alpha) <= 1e-9


@pytest.mark.parametrize("alpha", [1.0, None])
def test_each_head_peaks_at_its_shifted_pixel(ex, alpha):
    height, width = 7, 6
    conv, image = _conv_and_image(6, 3, height, width, batch=1)
    exact = alpha is None
    alpha = ex["alpha_for"](_num_keys(height, width)) if exact else alpha
    mha, mask = ex["conv_as_attention"](conv, height, width, alpha=alpha)
    with record_attention(mha) as maps, torch.no_grad():
        got = ex["attention_conv"](image, mha, mask)  # the reference path, while recording
        want = conv(image)
    weights = maps[""][0]  # (9, P, P)
    assert weights.shape == (9, _num_keys(height, width), _num_keys(height, width))
    if exact:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # Interior queries, in padded-grid coordinates: corners, an edge and the centre.
    for row, col in [(1, 1), (1, width), (height, 1), (height, width), (4, 1), (4, 3)]:
        query = row * (width + 2) + col
        for head, (d1, d2) in enumerate(ex["SHIFTS"]):
            target = (row + d1) * (width + 2) + (col + d2)
            row_weights = weights[head, query]  # (P,)
            assert row_weights.argmax().item() == target, (head, row, col)
            if exact:
                assert row_weights[target] > 1 - 1e-6
            else:
                assert row_weights[target] < 0.9  # soft at alpha = 1: several pixels share


def test_shifts_cover_the_kernel_in_row_major_order(ex):
    expected = [(a - 1, b - 1) for a in range(3) for b in range(3)]
    assert list(ex["SHIFTS"]) == expected


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 5, padding=2),
        nn.Conv2d(4, 4, 3, padding=1, stride=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 4, 3, padding=0),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 6, 3, padding=1),
    ],
)
def test_rejects_other_convolutions(ex, conv):
    with pytest.raises(ValueError, match="conv"):
        ex["conv_as_attention"](conv, 5, 5, alpha=10.0)


def test_rejects_mask_for_another_size(ex):
    conv, image = _conv_and_image(0, 2, 5, 5)
    mha, mask = ex["conv_as_attention"](conv, 6, 5, alpha=10.0)
    with pytest.raises(ValueError, match="mask"):
        ex["attention_conv"](image, mha, mask)
