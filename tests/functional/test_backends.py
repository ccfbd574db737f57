"""``attention(..., backend=...)``: every backend equals the reference, or refuses clearly."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from attnzoo.functional import attention, attention_reference

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")


def qkv(seed=0, kv_heads=2):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 4, 9, 8, generator=gen, dtype=F64)
    k = torch.randn(2, kv_heads, 11, 8, generator=gen, dtype=F64)
    v = torch.randn(2, kv_heads, 11, 8, generator=gen, dtype=F64)
    return q, k, v


def cases():
    real = torch.ones(2, 11, dtype=torch.bool)
    real[1, 6:] = False
    per_query = torch.rand(2, 4, 9, 11, generator=torch.Generator().manual_seed(1)) > 0.4
    per_query[0, 0, 2] = False  # a query that sees nothing
    bias = torch.randn(1, 1, 9, 11, generator=torch.Generator().manual_seed(2), dtype=F64)
    return {
        "plain": {},
        "causal": {"is_causal": True},
        "padding": {"mask": real[:, None, None, :]},
        "padding+causal": {"mask": real[:, None, None, :], "is_causal": True},
        "per-query": {"mask": per_query},
        "float bias": {"mask": bias},
        "top-left": {"is_causal": True, "causal_alignment": "top_left"},
    }


BACKEND_CASES = [
    (backend, case)
    for backend in ("auto", "sdpa", "reference", "flex", "block_sparse")
    for case in cases()
    if not (backend == "block_sparse" and case == "float bias")  # refused: tested below
]


@pytest.mark.parametrize(("backend", "case"), BACKEND_CASES)
def test_every_backend_equals_the_reference(backend, case):
    kwargs = cases()[case]
    for kv_heads in (4, 2):  # MHA and GQA
        q, k, v = qkv(kv_heads=kv_heads)
        want = attention_reference(q, k, v, **kwargs)
        assert_close(attention(q, k, v, backend=backend, **kwargs), want)


@pytest.mark.parametrize("backend", ["auto", "sdpa", "reference", "flex", "block_sparse"])
def test_padded_nan_never_leaks_and_dead_rows_are_zero(backend):
    q, k, v = qkv()
    real = torch.ones(2, 11, dtype=torch.bool)
    real[1, 6:] = False
    k[1, :, 6:], v[1, :, 6:] = float("nan"), float("nan")
    out = attention(q, k, v, mask=real[:, None, None, :], backend=backend)
    assert torch.isfinite(out).all()
    none = torch.zeros(2, 1, 1, 11, dtype=torch.bool)
    assert attention(q, k, v, mask=none, backend=backend).eq(0).all()


def test_impossible_choices_raise():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"backend must be one of .*'block_sparse'"):
        attention(q, k, v, backend="blocksparse")
    for backend in ("sdpa", "flex", "block_sparse"):
        with pytest.raises(ValueError, match=rf"backend='{backend}' cannot return the weights"):
            attention(q, k, v, backend=backend, need_weights=True)
    with pytest.raises(ValueError, match="backend='flex' has no dropout"):
        attention(q, k, v, backend="flex", dropout_p=0.1)
    bias = torch.zeros(1, 1, 9, 11, dtype=F64)
    with pytest.raises(ValueError, match="block_sparse' takes a bool mask"):
        attention(q, k, v, mask=bias, backend="block_sparse")
    out, weights = attention(q, k, v, backend="reference", need_weights=True)
    want, want_w = attention(q, k, v, need_weights=True)
    assert_close(out, want) and assert_close(weights, want_w)


def test_flex_backend_refuses_training_on_cpu():
    q, k, v = (t.requires_grad_() for t in qkv())
    with pytest.raises(ValueError, match="no backward on CPU"):
        attention(q, k, v, backend="flex")
    with torch.no_grad():
        assert_close(attention(q, k, v, backend="flex"), attention_reference(q, k, v))
