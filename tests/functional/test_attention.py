"""attention() vs attention_reference(), and failure modes 1-28 of docs/design.md section 10.

A comment ``# item N`` names the failure mode a test tries.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from attnzoo.functional import attention, attention_reference

f64 = torch.float64


def naive(q, k, v, keep=None, scale=None):
    """Loop-free but independent oracle: explicit exp/sum, float64, keep = bool mask."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("...ld,...sd->...ls", q.double(), k.double()) * scale
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    if keep is not None:
        weights = weights * keep
    total = weights.sum(-1, keepdim=True)
    weights = torch.where(total > 0, weights / total, torch.zeros_like(weights))
    return weights @ v.double(), weights


def qkv(b=2, h=3, lq=5, lk=7, d=8, dv=None, dtype=f64, **kw):
    return (
        torch.randn(b, h, lq, d, dtype=dtype, **kw),
        torch.randn(b, h, lk, d, dtype=dtype, **kw),
        torch.randn(b, h, lk, dv or d, dtype=dtype, **kw),
    )


# ---------------------------------------------------------------- reference and fast path


@pytest.mark.parametrize(("lq", "lk", "d"), [(1, 1, 1), (2, 5, 8), (5, 2, 8), (113, 127, 59)])
def test_reference_matches_independent_oracle(lq, lk, d):
    q, k, v = qkv(lq=lq, lk=lk, d=d)
    keep = torch.rand(2, 1, lq, lk) > 0.3
    out, w = attention_reference(q, k, v, mask=keep, need_weights=True)
    want_out, want_w = naive(q, k, v, keep)
    assert_close(out, want_out)
    assert_close(w, want_w)


@pytest.mark.parametrize("alignment", ["bottom_right", "top_left"])
@pytest.mark.parametrize(("lq", "lk"), [(1, 1), (1, 6), (2, 5), (5, 2), (6, 6), (17, 33)])
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_equals_reference(lq, lk, alignment, masked):
    q, k, v = qkv(lq=lq, lk=lk)
    mask = (torch.rand(2, 1, 1, lk) > 0.3) if masked else None
    kwargs = {"mask": mask, "is_causal": True, "causal_alignment": alignment}
    assert_close(attention(q, k, v, **kwargs), attention_reference(q, k, v, **kwargs))


def test_causal_alignments_match_verified_matrices():  # item 10
    q, k, v = qkv(b=1, h=1, lq=2, lk=5)
    _, bottom = attention_reference(q, k, v, is_causal=True, need_weights=True)
    _, top = attention_reference(
        q, k, v, is_causal=True, need_weights=True, causal_alignment="top_left"
    )
    assert ((bottom[0, 0] > 0).int().tolist()) == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert ((top[0, 0] > 0).int().tolist()) == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    q, k, v = qkv(b=1, h=1, lq=5, lk=2)
    for fn in (attention, attention_reference):
        out = fn(q, k, v, is_causal=True)
        assert torch.equal(out[0, 0, :3], torch.zeros(3, 8, dtype=f64))
        assert not torch.isnan(out).any()


def test_gqa_equals_repeated_heads():
    q = torch.randn(2, 8, 5, 4, dtype=f64)
    k, v = torch.randn(2, 2, 6, 4, dtype=f64), torch.randn(2, 2, 6, 4, dtype=f64)
    repeated = attention_reference(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))
    assert_close(attention(q, k, v), repeated)
    assert_close(attention_reference(q, k, v), repeated)
    with pytest.raises(ValueError, match="multiple"):
        attention(q, torch.randn(2, 3, 6, 4, dtype=f64), torch.randn(2, 3, 6, 4, dtype=f64))


@pytest.mark.parametrize("fn", [attention, attention_reference])
def test_gradcheck(fn):
    q, k, v = qkv(b=1, h=2, lq=3, lk=4, d=3, requires_grad=True)
    mask = torch.tensor([True, True, False, True]).view(1, 1, 1, 4)
    assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, mask=mask), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, is_causal=True), (q, k, v))


# ---------------------------------------------------------------- masks (items 1-10)


@pytest.mark.parametrize("fn", [attention, attention_reference])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_is_exact_zero_with_zero_grad(fn, kind):  # item 1
    q, k, v = qkv(requires_grad=True)
    keep = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    keep[:, :, 2] = False
    mask = (
        keep if kind == "bool" else torch.zeros(2, 1, 5, 7, dtype=f64).masked_fill(~keep, -math.inf)
    )
    out = fn(q, k, v, mask=mask)
    out.sum().backward()
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert torch.equal(q.grad[:, :, 2], torch.zeros_like(q.grad[:, :, 2]))
    for t in (q.grad, k.grad, v.grad):
        assert torch.isfinite(t).all()
    _, w = attention(q, k, v, mask=mask, need_weights=True)
    assert torch.equal(w[:, :, 2], torch.zeros_like(w[:, :, 2]))


def test_whole_sample_padded_and_others_unchanged():  # item 2
    q, k, v = qkv()
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[1] = False
    out = attention(q, k, v, mask=keep)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert_close(out[0], attention(q[:1], k[:1], v[:1])[0])


def test_polarity_keep_only_key_j_returns_v_j():  # item 3
    q, k, v = qkv()
    keep = torch.zeros(1, 1, 1, 7, dtype=torch.bool)
    keep[..., 4] = True
    for fn in (attention, attention_reference):
        assert_close(fn(q, k, v, mask=keep), v[:, :, 4:5].expand(-1, -1, 5, -1))
    all_true = torch.ones(1, 1, 5, 7, dtype=torch.bool)
    assert torch.equal(attention_reference(q, k, v, mask=all_true), attention_reference(q, k, v))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16])
def test_mask_dtype_rejected(dtype):  # item 4
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(TypeError, match="bool"):
        attention(q, k, v, mask=torch.ones(5, 7, dtype=dtype))


def test_mixed_masks_merge_like_one_float_mask():  # item 5: documented merge via causal + float
    q, k, v = qkv(lq=6, lk=6)
    bias = torch.randn(1, 1, 6, 6, dtype=f64)
    tri = torch.ones(6, 6, dtype=torch.bool).tril()
    merged = bias.masked_fill(~tri, -math.inf)
    for fn in (attention, attention_reference):
        assert_close(fn(q, k, v, mask=bias, is_causal=True), fn(q, k, v, mask=merged))


@pytest.mark.parametrize("shape", [(6, 7), (2, 4, 5, 7), (3, 1, 5, 7)])
def test_non_broadcastable_mask(shape):  # item 6
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"does not broadcast"):
        attention(q, k, v, mask=torch.ones(shape, dtype=torch.bool))


def test_one_dimensional_mask_rejected():  # item 7
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        attention(q, k, v, mask=torch.ones(7, dtype=torch.bool))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_float_mask_with_nan_or_plus_inf(bad):  # item 8
    q, k, v = qkv()
    mask = torch.zeros(5, 7, dtype=f64)
    mask[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        attention(q, k, v, mask=mask[None])


def test_large_negative_fill_in_fp16_does_not_overflow():  # item 8
    q, k, v = qkv(dtype=torch.float16)
    mask = torch.zeros(1, 1, 5, 7, dtype=torch.float16)
    mask[..., :3] = torch.finfo(torch.float16).min
    for fn in (attention, attention_reference):
        assert torch.isfinite(fn(q, k, v, mask=mask)).all()


def test_causal_with_mask_is_intersection():  # item 9
    q, k, v = qkv(lq=6, lk=6)
    keep = torch.rand(2, 1, 6, 6) > 0.3
    tri = torch.ones(6, 6, dtype=torch.bool).tril()
    for fn in (attention, attention_reference):
        assert_close(fn(q, k, v, mask=keep, is_causal=True), fn(q, k, v, mask=keep & tri))


# ---------------------------------------------------------------- shapes and dtypes (11-19)


def test_zero_lengths():  # item 11
    q, k, v = qkv(lq=0)
    assert attention(q, k, v).shape == (2, 3, 0, 8)
    q, k, v = qkv(lk=0, requires_grad=True)
    for fn in (attention, attention_reference):
        out = fn(q, k, v)
        assert torch.equal(out, torch.zeros(2, 3, 5, 8, dtype=f64))
        (grad,) = torch.autograd.grad(out.sum(), q, allow_unused=True)
        assert grad is None or torch.equal(grad, torch.zeros_like(q))
    q, k, v = qkv(b=0, requires_grad=True)
    out = attention(q, k, v)
    assert out.shape == (0, 3, 5, 8)
    out.sum().backward()


def test_dtype_mismatch():  # item 12
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(TypeError, match=r"float32.*float16.*float16"):
        attention(q, k.half(), v.half())


@pytest.mark.gpu
def test_device_mismatch():  # item 13
    q, k, v = qkv(dtype=torch.float32)
    with pytest.raises(ValueError, match="device"):
        attention(q.cuda(), k, v)


def test_head_dim_mismatch_and_different_value_dim():  # item 14
    q, k, v = qkv(dv=3)
    assert attention(q, k, v).shape == (2, 3, 5, 3)
    with pytest.raises(ValueError, match="head dim"):
        attention(q, k[..., :4], v)


@pytest.mark.parametrize("lq", [1, 2, 15, 16, 17, 113, 127])
@pytest.mark.parametrize("d", [1, 59, 111])
def test_odd_and_boundary_lengths(lq, d):  # item 17
    q, k, v = qkv(b=1, h=1, lq=lq, lk=lq, d=d)
    assert_close(attention(q, k, v, is_causal=True), naive(q, k, v, torch.ones(lq, lq).tril())[0])


def test_non_contiguous_inputs():  # item 18
    qkv_packed = torch.randn(2, 5, 3, 4, 8)  # (B, L, 3, nh, hd)
    q, _k, v = qkv_packed.permute(2, 0, 3, 1, 4).unbind(0)  # views with strides
    k_expanded = torch.randn(2, 1, 5, 8).expand(2, 4, 5, 8)
    mask = torch.ones(1, 1, 1, 5, dtype=torch.bool).expand(2, 4, 5, 5)
    for fn in (attention, attention_reference):
        got = fn(q, k_expanded, v, mask=mask)
        want = fn(q.contiguous(), k_expanded.contiguous(), v.contiguous(), mask=mask.contiguous())
        assert_close(got, want, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_error_within_twice_naive(dtype):  # items 19, low-precision rule
    q, k, v = qkv(b=2, h=2, lq=33, lk=33, d=16, dtype=torch.float32)
    exact = naive(q, k, v)[0]
    qh, kh, vh = q.to(dtype), k.to(dtype), v.to(dtype)
    scores = (qh @ kh.transpose(-2, -1)) / 4  # naive in the low precision
    naive_low = torch.softmax(scores, -1) @ vh
    naive_err = (naive_low.double() - exact).abs().max().item()
    for fn in (attention, attention_reference):
        out = fn(qh, kh, vh)
        assert out.dtype == dtype
        err = (out.double() - exact).abs().max().item()
        assert err <= 2 * naive_err + 1e-3


def test_fp16_large_inputs_stay_finite():  # item 20
    q = torch.full((1, 1, 4, 64), 300.0, dtype=torch.float16)
    assert torch.isinf(q @ q.transpose(-2, -1)).all()  # the naive product overflows
    for fn in (attention, attention_reference):
        out = fn(q, q, q)
        assert torch.isfinite(out).all()
        assert_close(out.float(), torch.full((1, 1, 4, 64), 300.0))


def test_scale_edge_cases():  # item 21
    q, k, v = qkv()
    assert_close(attention(q, k, v, scale=0.0), v.mean(-2, keepdim=True).expand(-1, -1, 5, -1))
    assert_close(attention(q, k, v, scale=-0.7), naive(q, k, v, scale=-0.7)[0])
    assert_close(attention(q, k, v), naive(q, k, v, scale=1 / math.sqrt(8))[0])
    with pytest.raises(ValueError, match="scale"):
        attention(q, k, v, scale=math.inf)


def test_single_key_returns_value_exactly():  # item 22
    q, k, v = qkv(lk=1)
    for fn in (attention, attention_reference):
        assert torch.equal(fn(q, k, v), v.expand(-1, -1, 5, -1))


def test_nan_propagates_but_padded_nan_does_not_leak():  # item 23
    q, k, v = qkv()
    v_nan = v.clone()
    v_nan[:, :, 0] = math.nan
    assert torch.isnan(attention(q, k, v_nan)).all()
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[..., 0] = False
    clean = attention_reference(q, k, v, mask=keep)
    for fn in (attention, attention_reference):
        assert_close(fn(q, k, v_nan, mask=keep), clean)
    k_nan = k.clone()
    k_nan[:, :, 0] = math.nan
    for fn in (attention, attention_reference):  # NaN in padded keys too
        assert_close(fn(q, k_nan, v_nan, mask=keep), clean)
    for fn in (attention, attention_reference):  # also when causality is merged in
        assert_close(
            fn(q, k, v_nan, mask=keep, is_causal=True),
            attention_reference(q, k, v, mask=keep, is_causal=True),
        )
    garbage = v.clone()
    garbage[:, :, 0] = 1e4
    assert torch.equal(attention_reference(q, k, garbage, mask=keep), clean)


def test_dropout():  # item 24
    q, k, v = qkv()
    with pytest.raises(ValueError, match="dropout_p"):
        attention(q, k, v, dropout_p=1.5)
    torch.manual_seed(3)
    a = attention_reference(q, k, v, dropout_p=0.3)
    torch.manual_seed(3)
    b = attention_reference(q, k, v, dropout_p=0.3)
    assert torch.equal(a, b)
    weights = torch.full((200, 200), 0.5)
    kept = F.dropout(weights, p=0.3) != 0  # the dropout attention_reference applies
    assert abs(kept.float().mean().item() - 0.7) < 0.01


def test_need_weights_path_equals_fast_path_with_dead_rows():  # item 25
    q, k, v = qkv()
    keep = torch.rand(2, 3, 5, 7) > 0.5
    keep[:, 1] = False  # a fully masked head
    out, _ = attention(q, k, v, mask=keep, need_weights=True)
    assert_close(out, attention(q, k, v, mask=keep))


def test_batched_with_padding_equals_one_by_one():  # item 28
    torch.manual_seed(1)
    lengths = [7, 4]
    q, k, v = qkv(b=2, lk=7, dtype=torch.float32)
    keep = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    batched = attention(q, k, v, mask=keep[:, None, None, :])
    for b, n in enumerate(lengths):
        alone = attention(q[b : b + 1], k[b : b + 1, :, :n], v[b : b + 1, :, :n])
        assert_close(batched[b : b + 1], alone)


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager():  # item 27
    q, k, v = qkv(dtype=torch.float32)
    keep = torch.rand(2, 1, 1, 7) > 0.3
    compiled = torch.compile(lambda a, b, c: attention(a, b, c, mask=keep), fullgraph=True)
    assert_close(compiled(q, k, v), attention(q, k, v, mask=keep))
