"""mha: equality with torch.nn.MultiheadAttention, GQA, KV cache, weights, errors.

A comment ``# item N`` names the failure mode of docs/design.md section 10 a test tries.
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import attnzoo
from attnzoo import KVCache
from attnzoo.functional import attention_reference
from attnzoo.sequence.interop import (
    from_torch,
    inverted_attn_mask,
    inverted_key_padding_mask,
    to_torch,
)


def pair(dim=32, heads=4, **kw):
    ref = nn.MultiheadAttention(dim, heads, batch_first=True, **kw).eval()
    return from_torch(ref).eval(), ref


def test_equals_torch_self_attention_with_padding():
    mha, ref = pair()
    x = torch.randn(3, 6, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2, [False] * 5 + [True]])
    ours, w = mha(x, mask=inverted_key_padding_mask(pad), need_weights=True)
    theirs, tw = ref(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert_close(w, tw, atol=1e-5, rtol=1e-5)
    assert_close(mha(x, mask=inverted_key_padding_mask(pad)), theirs, atol=1e-5, rtol=1e-5)


def test_equals_torch_causal_and_attn_mask():
    mha, ref = pair()
    x = torch.randn(2, 7, 32)
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    theirs = ref(x, x, x, attn_mask=causal, need_weights=False)[0]
    assert_close(mha(x, is_causal=True), theirs, atol=1e-5, rtol=1e-5)
    bool_mask = torch.rand(7, 7) > 0.7  # torch: True = masked
    bool_mask.fill_diagonal_(False)
    theirs = ref(x, x, x, attn_mask=bool_mask, need_weights=False)[0]
    ours = mha(x, mask=inverted_attn_mask(bool_mask)[None])
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_equals_torch_cross_attention_with_other_width():
    ref = nn.MultiheadAttention(32, 4, batch_first=True, kdim=12, vdim=12).eval()
    mha = from_torch(ref).eval()
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 9, 12)
    assert_close(mha(x, ctx), ref(x, ctx, ctx, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_interop_round_trip():
    mha = attnzoo.create("mha", 32, num_heads=4).eval()
    back = from_torch(to_torch(mha)).eval()
    x = torch.randn(2, 5, 32)
    assert_close(back(x), mha(x))
    with pytest.raises(ValueError, match="num_kv_heads"):
        to_torch(attnzoo.create("mha", 32, num_heads=4, num_kv_heads=2))
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        from_torch(nn.MultiheadAttention(32, 4, add_bias_kv=True))


def test_gqa_equals_repeated_kv_heads():
    mha = attnzoo.create("mha", 32, num_heads=8, num_kv_heads=2).eval()
    x = torch.randn(2, 5, 32)
    q = mha.q_proj(x).view(2, 5, 8, 4).transpose(1, 2)
    k = mha.k_proj(x).view(2, 5, 2, 4).transpose(1, 2).repeat_interleave(4, 1)
    v = mha.v_proj(x).view(2, 5, 2, 4).transpose(1, 2).repeat_interleave(4, 1)
    want = mha.out_proj(attention_reference(q, k, v).transpose(1, 2).reshape(2, 5, 32))
    assert_close(mha(x), want)
    assert mha.k_proj.out_features == 8  # 2 kv heads x 4


@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
@pytest.mark.parametrize("max_len", [None, 9])
def test_kv_cache_token_by_token_equals_one_causal_call(num_kv_heads, max_len):
    mha = attnzoo.create("mha", 32, num_heads=4, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    mha.double()
    full = mha(x, is_causal=True)
    cache = KVCache(max_len=max_len)
    with torch.no_grad():
        prefill = mha(x[:, :3], is_causal=True, cache=cache)
        steps = [mha(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(3, 9)]
    assert_close(torch.cat([prefill, *steps], 1), full)
    assert len(cache) == 9
    assert not cache.k.requires_grad


def test_kv_cache_with_gradients_and_padding():
    mha = attnzoo.create("mha", 16, num_heads=2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    real = torch.tensor([[True] * 5, [False, True, True, True, True]])  # left padding
    full = mha(x, mask=real, is_causal=True)
    cache = KVCache()
    outs = [
        mha(x[:, t : t + 1], mask=real[:, : t + 1], is_causal=True, cache=cache) for t in range(5)
    ]
    got = torch.cat(outs, 1)
    assert_close(got[1, 1:], full[1, 1:])
    assert_close(got[0], full[0])
    got.sum().backward()
    assert all(p.grad is not None for p in mha.parameters())


def test_kv_cache_capacity_contents_and_reset():  # item 38
    cache = KVCache(max_len=4)
    k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    cache.update(k, v)
    k2, v2 = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8)
    all_k, all_v = cache.update(k2, v2)
    assert torch.equal(all_k, torch.cat([k, k2], 2)) and torch.equal(all_v, torch.cat([v, v2], 2))
    with pytest.raises(ValueError, match="max_len=4"):
        cache.update(k2, v2)
    cache.reset()
    assert len(cache) == 0 and cache.k is None
    cache.update(k, v)
    with pytest.raises(ValueError, match="do not match"):
        cache.update(torch.randn(1, 3, 1, 8), torch.randn(1, 3, 1, 8))


def test_kv_cache_memory_is_flat_over_many_steps():  # item 38
    mha = attnzoo.create("mha", 16, num_heads=2).eval()
    cache = KVCache()
    x = torch.randn(1, 1, 16)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))

    with torch.no_grad():
        for _ in range(50):
            mha(x, is_causal=True, cache=cache)
        before = live_tensors()
        for _ in range(950):
            mha(x, is_causal=True, cache=cache)
        after = live_tensors()
    assert len(cache) == 1000
    assert after <= before + 2  # buffers are replaced, not accumulated
    assert cache._k.shape[2] < 2 * 1000 + 16  # doubling, not one buffer per step


def test_need_weights_unbatched_and_probe():
    mha = attnzoo.create("mha", 16, num_heads=2).eval()
    x = torch.randn(5, 16)
    out, w = mha(x, need_weights=True)
    assert out.shape == (5, 16) and w.shape == (2, 5, 5)
    assert_close(out, mha(x[None])[0])
    with attnzoo.viz.record_attention(mha) as maps:
        y = mha(x[None])
    assert_close(maps[""], w[None])
    assert_close(y[0], out)
    assert not mha.probe.recording


def test_square_batch_equals_length():  # item 16
    mha = attnzoo.create("mha", 16, num_heads=2).eval()
    x = torch.randn(4, 4, 16)
    assert_close(mha(x)[1], mha(x[1:2])[0])


def test_attention_dropout_only_in_training():  # item 24
    mha = attnzoo.create("mha", 16, num_heads=2, attn_drop=0.5)
    x = torch.randn(2, 6, 16)
    mha.eval()
    assert torch.equal(mha(x), mha(x))
    mha.train()
    torch.manual_seed(0)
    a = mha(x)
    torch.manual_seed(0)
    assert torch.equal(a, mha(x))
    assert not torch.equal(a, mha(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_heads": 3}, ValueError, "divisible"),  # item 15
        ({"num_heads": 4, "num_kv_heads": 3}, ValueError, "multiple"),
        ({"num_heads": 0}, ValueError, "num_heads"),
        ({"attn_drop": 1.0}, ValueError, "attn_drop"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        attnzoo.create("mha", 32, **kwargs)


def test_forward_errors():  # item 7
    mha = attnzoo.create("mha", 16, num_heads=2)
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=r"C = dim = 16"):
        mha(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"padding mask of shape \(B, S\)"):
        mha(x, mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be"):
        mha(x, mask=torch.ones(5, dtype=torch.bool))
    cross = KVCache()
    mha(x, torch.randn(2, 3, 16), cache=cross)
    with pytest.raises(ValueError, match="cross-attention cache serves one context"):
        mha(x, torch.randn(2, 4, 16), cache=cross)
    with pytest.raises(TypeError, match="is_causal"):
        mha(x, is_causal=1)


def test_cross_attention_cache_projects_the_context_once():
    mha = attnzoo.create("mha", 16, num_heads=2).double().eval()
    memory = torch.randn(2, 6, 16, dtype=torch.float64)
    steps = torch.randn(2, 4, 16, dtype=torch.float64)
    cache = KVCache()
    calls = []
    handle = mha.k_proj.register_forward_hook(lambda *_: calls.append(1))
    cached = [mha(steps[:, t : t + 1], memory, cache=cache) for t in range(4)]
    handle.remove()
    assert len(calls) == 1 and len(cache) == 6  # keys of the context, projected once
    assert_close(torch.cat(cached, dim=1), mha(steps, memory))
    cache.reorder(torch.tensor([1]))  # keep the second row: the cached keys are its context
    assert_close(mha(steps[:1], memory[:1] * 0, cache=cache)[0], mha(steps[:1], memory[1:])[0])


def test_empty_query_sequence():  # item 11 at module level
    mha = attnzoo.create("mha", 16, num_heads=2)
    out = mha(torch.randn(2, 0, 16), torch.randn(2, 3, 16))
    assert out.shape == (2, 0, 16)


def test_distinct_key_and_value_widths_equal_torch_both_ways():
    from attnzoo.sequence.interop import from_torch, to_torch

    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(16, 2, kdim=6, vdim=10, batch_first=True).double().eval()
    ours = from_torch(ref).eval()
    assert (ours.context_dim, ours.vdim) == (6, 10)
    q = torch.randn(2, 5, 16, dtype=torch.float64)
    k = torch.randn(2, 7, 6, dtype=torch.float64)
    v = torch.randn(2, 7, 10, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True  # torch polarity: True = padding
    want, want_w = ref(q, k, v, key_padding_mask=pad, average_attn_weights=False)
    got, got_w = ours(q, k, value=v, mask=~pad, need_weights=True)
    assert_close(got, want)
    assert_close(got_w, want_w)
    back = to_torch(ours).eval()
    assert_close(back(q, k, v, need_weights=False)[0], ref(q, k, v, need_weights=False)[0])
    with pytest.raises(ValueError, match=r"vdim=10 != kdim=6: pass the values as value="):
        ours(q, k)
    with pytest.raises(ValueError, match=r"value must be \(B, S, vdim\) = \(2, 7, 10\)"):
        ours(q, k, value=v[:, :3])
    with pytest.raises(ValueError, match="kdim"):
        attnzoo.create("mha", 16, kdim=6, context_dim=8)
