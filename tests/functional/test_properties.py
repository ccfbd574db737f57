"""Hypothesis properties of attention (docs/design.md section 11)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from attnzoo.functional import attention, attention_reference

dims = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 6)
)
SETTINGS = settings(max_examples=25, deadline=None)


def draw(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    b, h, lq, lk, d = shape
    return (
        torch.randn(b, h, lq, d, generator=gen, dtype=torch.float64),
        torch.randn(b, h, lk, d, generator=gen, dtype=torch.float64),
        torch.randn(b, h, lk, d, generator=gen, dtype=torch.float64),
    )


@SETTINGS
@given(shape=dims, seed=st.integers(0, 10_000))
def test_permutation_equivariance(shape, seed):
    q, k, v = draw(shape, seed)
    perm_q = torch.randperm(q.shape[2], generator=torch.Generator().manual_seed(seed))
    perm_k = torch.randperm(k.shape[2], generator=torch.Generator().manual_seed(seed + 1))
    out = attention(q, k, v)
    assert_close(attention(q[:, :, perm_q], k, v), out[:, :, perm_q])
    assert_close(attention(q, k[:, :, perm_k], v[:, :, perm_k]), out)


@SETTINGS
@given(shape=dims, seed=st.integers(0, 10_000), data=st.data())
def test_causality(shape, seed, data):
    b, h, lq, _, d = shape
    q, k, v = draw((b, h, lq, lq, d), seed)
    t = data.draw(st.integers(0, lq - 1))
    out = attention(q, k, v, is_causal=True)
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[:, :, t:] += 1.0
    v2[:, :, t:] -= 2.0
    q2[:, :, t:] *= 3.0
    assert_close(attention(q2, k2, v2, is_causal=True)[:, :, :t], out[:, :, :t])


@SETTINGS
@given(shape=dims, seed=st.integers(0, 10_000))
def test_rows_sum_to_one_and_masked_entries_zero(shape, seed):
    q, k, v = draw(shape, seed)
    keep = (
        torch.rand(shape[0], 1, shape[2], shape[3], generator=torch.Generator().manual_seed(seed))
        > 0.4
    )
    _, w = attention_reference(q, k, v, mask=keep, need_weights=True)
    alive = keep.any(-1).expand_as(w[..., 0])
    assert_close(w.sum(-1)[alive], torch.ones(int(alive.sum()), dtype=torch.float64))
    assert torch.equal(
        w.masked_select(~keep.expand_as(w)),
        torch.zeros(int((~keep.expand_as(w)).sum()), dtype=torch.float64),
    )


@SETTINGS
@given(shape=dims, seed=st.integers(0, 10_000))
def test_single_key_returns_its_value(shape, seed):
    b, h, lq, _, d = shape
    q, k, v = draw((b, h, lq, 1, d), seed)
    assert torch.equal(attention_reference(q, k, v), v.expand(-1, -1, lq, -1))


@SETTINGS
@given(shape=dims, seed=st.integers(0, 10_000), data=st.data())
def test_batched_with_padding_equals_one_by_one(shape, seed, data):
    b, _h, _lq, lk, _d = shape
    q, k, v = draw(shape, seed)
    lengths = [data.draw(st.integers(1, lk)) for _ in range(b)]
    keep = torch.arange(lk)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    batched = attention(q, k, v, mask=keep[:, None, None, :])
    for i, n in enumerate(lengths):
        alone = attention(q[i : i + 1], k[i : i + 1, :, :n], v[i : i + 1, :, :n])
        assert_close(batched[i : i + 1], alone)
