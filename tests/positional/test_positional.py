"""Positional encodings: golden values, paper algorithms, relative invariances, length limits.

A comment ``# item N`` names the failure mode of docs/design.md section 10 a test tries.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo import KVCache
from attnzoo.functional import attention_reference
from attnzoo.positional import alibi_slopes, t5_bucket

# ---------------------------------------------------------------- sinusoidal / learned


def test_sinusoidal_golden_values():  # item 29
    pe = attnzoo.create("sinusoidal", 6, max_len=50).pe.double()
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    for pos in (1, 7, 49):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert_close(pe[pos, 2 * i].item(), math.sin(angle), atol=1e-7, rtol=0)
            assert_close(pe[pos, 2 * i + 1].item(), math.cos(angle), atol=1e-7, rtol=0)


def test_sinusoidal_odd_dim_last_channel_is_sine():
    pe = attnzoo.create("sinusoidal", 5, max_len=10).pe
    assert_close(pe[3, 4].item(), math.sin(3 / 10000 ** (4 / 5)), atol=1e-7, rtol=0)


def test_sinusoidal_forward_offset_dropout_and_state_dict():
    pe = attnzoo.create("sinusoidal", 8, max_len=20, dropout=0.1).eval()
    x = torch.randn(2, 5, 8)
    assert_close(pe(x, offset=3), x + pe.pe[3:8])
    assert "pe" not in pe.state_dict()
    pe.train()
    torch.manual_seed(0)
    a = pe(x)
    assert (a == 0).any()


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_length_beyond_max_len_raises(name):  # item 29
    module = attnzoo.create(name, 8, max_len=10)
    module(torch.zeros(1, 10, 8))
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.zeros(1, 4, 8), offset=7)


def test_learned_trains():
    pos = attnzoo.create("learned", 8, max_len=16)
    pos(torch.zeros(2, 5, 8)).sum().backward()
    assert torch.equal(pos.weight.grad[5:], torch.zeros(11, 8))
    assert (pos.weight.grad[:5] == 2).all()


# ---------------------------------------------------------------- ALiBi


def reference_press_slopes(n):
    """Press et al. reference algorithm (written independently from the module)."""

    def power_of_two(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_two(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_two(closest) + reference_press_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_eight_heads():
    assert_close(alibi_slopes(8), torch.tensor([2.0**-k for k in range(1, 9)]))


@pytest.mark.parametrize("heads", [1, 2, 3, 6, 12, 16, 24])
def test_alibi_slopes_match_press_algorithm(heads):  # item 31
    slopes = alibi_slopes(heads)
    assert_close(slopes, torch.tensor(reference_press_slopes(heads), dtype=torch.float32))
    assert (slopes > 0).all()
    if math.log2(heads).is_integer():
        assert_close(slopes[0].item(), 2 ** (-8 / heads))


def test_alibi_bias_values_and_causal_form():
    bias = attnzoo.create("alibi", 4)(3, 5)  # L=3 queries at positions 2, 3, 4
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(3):
            for j in range(5):
                assert_close(bias[0, h, i, j].item(), -slopes[h].item() * abs(i + 2 - j))


# ---------------------------------------------------------------- RoPE


def test_rope_preserves_norms_and_depends_on_relative_offset():
    rope = attnzoo.create("rope", 16).double()
    q, k = (
        torch.randn(1, 1, 1, 16, dtype=torch.float64),
        torch.randn(1, 1, 1, 16, dtype=torch.float64),
    )
    assert_close(rope(q, 5).norm(dim=-1), q.norm(dim=-1))
    dots = [(rope(q, m) * rope(k, n)).sum().item() for m, n in [(3, 1), (10, 8), (102, 100)]]
    assert_close(dots[0], dots[1])
    assert_close(dots[0], dots[2])
    assert abs(dots[0] - (rope(q, 3) * rope(k, 3)).sum().item()) > 1e-6  # it does depend on m-n


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_matches_complex_rotation(interleaved):
    rope = attnzoo.create("rope", 8, interleaved=interleaved)
    x = torch.randn(3, 8, dtype=torch.float64)
    got = rope(x, offset=2)
    theta = 10000 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    angles = torch.arange(2, 5, dtype=torch.float64)[:, None] * theta
    pairs = x.view(3, 4, 2) if interleaved else torch.stack(x.chunk(2, -1), -1)
    rotated = torch.view_as_real(
        torch.view_as_complex(pairs.contiguous()) * torch.polar(torch.ones_like(angles), angles)
    )
    want = rotated.flatten(-2) if interleaved else torch.cat(rotated.unbind(-1), -1)
    assert_close(got, want)


def test_rope_cached_decoding_equals_prefill():  # item 30
    rope = attnzoo.create("rope", 8).double()
    q = torch.randn(1, 2, 6, 8, dtype=torch.float64)
    k, v = torch.randn_like(q), torch.randn_like(q)
    qr, kr = rope.rotate(q, k)
    full = attention_reference(qr, kr, v, is_causal=True)
    cache = KVCache()
    outs = []
    for t in range(6):
        qt, kt = rope.rotate(q[:, :, t : t + 1], k[:, :, t : t + 1], offset=len(cache))
        keys, values = cache.update(kt, v[:, :, t : t + 1])
        outs.append(attention_reference(qt, keys, values, is_causal=True))
    assert_close(torch.cat(outs, 2), full)
    assert not torch.equal(rope(q[:, :, :1], 0), rope(q[:, :, :1], 1))  # no stale cache


def test_rope_errors():
    with pytest.raises(ValueError, match="even"):
        attnzoo.create("rope", 7)
    with pytest.raises(ValueError, match="max_len=4"):
        attnzoo.create("rope", 8, max_len=4)(torch.zeros(1, 5, 8))


# ---------------------------------------------------------------- T5 and Shaw


def test_t5_buckets_hand_computed():
    # bidirectional, 32 buckets -> 16 per side, exact below 8, log-spaced up to 128
    rel = torch.tensor([0, -1, -7, -8, -20, -127, -128, -500, 1, 9])
    want = [0, 1, 7, 8, 10, 15, 15, 15, 17, 16 + 8]
    assert t5_bucket(rel).tolist() == want
    causal = t5_bucket(torch.tensor([3, 0, -5, -200]), bidirectional=False)
    assert causal.tolist() == [0, 0, 5, 31]


def test_t5_bias_is_a_lookup_of_relative_distance():
    bias = attnzoo.create("t5_bias", 3, num_buckets=8, max_distance=16)
    table = bias.relative_attention_bias.weight  # (buckets, nh)
    out = bias(4, 6)
    rel = torch.arange(6)[None] - (torch.arange(4)[:, None] + 2)
    buckets = t5_bucket(rel, num_buckets=8, max_distance=16)
    assert_close(out[0], table[buckets].permute(2, 0, 1))


def test_shaw_relative_attention_equals_formula():
    rel = attnzoo.create("relative", 4, max_distance=2).double()
    q, k, v = (torch.randn(1, 1, 5, 4, dtype=torch.float64) for _ in range(3))
    out, w = rel.attention(q, k, v, need_weights=True)
    idx = lambda i, j: max(-2, min(2, j - i)) + 2  # noqa: E731
    aK, aV = rel.keys_table.detach(), rel.values_table.detach()
    e = torch.tensor(
        [
            [float(q[0, 0, i] @ (k[0, 0, j] + aK[idx(i, j)])) / 2 for j in range(5)]
            for i in range(5)
        ],
        dtype=torch.float64,
    )
    alpha = torch.softmax(e, -1)
    z = torch.stack(
        [sum(alpha[i, j] * (v[0, 0, j] + aV[idx(i, j)]) for j in range(5)) for i in range(5)]
    )
    assert_close(w[0, 0], alpha)
    assert_close(out[0, 0], z)


# ---------------------------------------------------------------- 2-D encodings


def test_sincos_2d_matches_detr_formula():
    pos = attnzoo.create("sincos_2d", 8)
    mask = torch.ones(1, 3, 4, dtype=torch.bool)
    enc = pos.encoding(mask)[0].double()
    for y in range(3):
        for x in range(4):
            ny, nx = (y + 1) / (3 + 1e-6) * 2 * math.pi, (x + 1) / (4 + 1e-6) * 2 * math.pi
            for c, value in enumerate([ny, nx]):
                for i in range(2):
                    angle = value / 10000 ** (2 * i / 4)
                    assert_close(
                        enc[4 * c + 2 * i, y, x].item(), math.sin(angle), atol=1e-6, rtol=0
                    )
                    assert_close(
                        enc[4 * c + 2 * i + 1, y, x].item(), math.cos(angle), atol=1e-6, rtol=0
                    )


def test_sincos_2d_is_mask_aware():
    pos = attnzoo.create("sincos_2d", 8)
    padded = torch.zeros(1, 5, 6, dtype=torch.bool)
    padded[:, :3, :4] = True  # a 3x4 image padded to 5x6
    assert_close(
        pos.encoding(padded)[..., :3, :4], pos.encoding(torch.ones(1, 3, 4, dtype=torch.bool))
    )
    with pytest.raises(ValueError, match="multiple of 4"):
        attnzoo.create("sincos_2d", 6)


def test_learned_2d_interpolation_and_resize():
    pos = attnzoo.create("learned_2d", 4, grid_size=(3, 5))
    x = torch.zeros(2, 4, 3, 5)
    assert torch.equal(pos(x)[0], pos.weight[0])
    assert pos(torch.zeros(1, 4, 6, 10)).shape == (1, 4, 6, 10)
    constant = attnzoo.create("learned_2d", 2, grid_size=4, mode="bilinear")
    with torch.no_grad():
        constant.weight.fill_(0.5)
    assert_close(constant(torch.zeros(1, 2, 7, 9)), torch.full((1, 2, 7, 9), 0.5))
    pos.resize((6, 10))
    assert pos.grid_size == (6, 10) and pos.weight.shape == (1, 4, 6, 10)
    fixed = attnzoo.create("learned_2d", 4, grid_size=3, interpolate=False)
    with pytest.raises(ValueError, match="grid_size"):
        fixed(torch.zeros(1, 4, 4, 4))
