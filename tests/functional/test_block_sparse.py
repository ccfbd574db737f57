"""The block-sparse engine: block masks of any mask function, and attention on their blocks."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import attnzoo
from attnzoo import masks
from attnzoo.functional import (
    BlockMask,
    attention_reference,
    block_sparse_attention,
    create_block_mask,
)

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")
L = 70


def mask_cases() -> dict[str, tuple]:
    """``name: (mask function, L, S)`` over every attnzoo.masks function and combinations."""
    ids = torch.tensor([[0] * 30 + [1] * 25 + [2] * 15])
    return {
        "causal": (masks.causal(), L, L),
        "causal L<S": (masks.causal(q_len=30, kv_len=L), 30, L),
        "sliding_window": (masks.sliding_window(9), L, L),
        "sliding_window causal": (masks.sliding_window(9, causal=True), L, L),
        "dilated": (masks.dilated(3, window=4), L, L),
        "strided": (masks.strided(8), L, L),
        "fixed": (masks.fixed(16, 2, causal=True), L, L),
        "global_tokens": (masks.global_tokens([0, 33]), L, L),
        "random_blocks": (masks.random_blocks(8, 2, q_len=L), L, L),
        "longformer": (masks.longformer(5, num_global=2), L, L),
        "bigbird": (masks.bigbird(8, q_len=L), L, L),
        "prefix_lm": (masks.prefix_lm(12), L, L),
        "document": (masks.document(ids), L, L),
        "and(window, causal)": (masks.and_masks(masks.sliding_window(20), masks.causal()), L, L),
        "or(window, global)": (
            masks.or_masks(masks.sliding_window(3), masks.global_tokens(num_global=3)),
            L,
            L,
        ),
        "not(window)": (masks.not_mask(masks.sliding_window(40)), L, L),
        "nothing": (lambda b, h, q, kv: (q < 0) & (kv < 0), L, L),
        "everything": (lambda b, h, q, kv: (q >= 0) & (kv >= 0), L, 50),
    }


def qkv(q_len, kv_len, heads=4, kv_heads=2, dtype=F64, seed=0, batch=2):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, 8, generator=gen, dtype=dtype).requires_grad_()
    k = torch.randn(batch, kv_heads, kv_len, 8, generator=gen, dtype=dtype).requires_grad_()
    v = torch.randn(batch, kv_heads, kv_len, 6, generator=gen, dtype=dtype).requires_grad_()
    return q, k, v


@pytest.mark.parametrize("case", list(mask_cases()))
@pytest.mark.parametrize("block_size", [8, 16, (8, 32)])
def test_block_mask_stands_for_the_materialised_mask(case, block_size):
    mod, q_len, kv_len = mask_cases()[case]
    bm = create_block_mask(mod, None, None, q_len, kv_len, block_size=block_size)
    want = masks.materialize(mod, q_len, kv_len)
    assert torch.equal(bm.to_dense(), want)
    empty, full, partial = bm.counts()
    nq, nk = bm.num_blocks
    assert empty + full + partial == nq * nk
    assert bm.partial_masks.shape[0] == partial


def test_block_counts_of_a_causal_mask():
    # 4 x 4 blocks: 6 below the diagonal are full, 4 on it partial, 6 above it empty
    bm = create_block_mask(masks.causal(), None, None, 256, block_size=64)
    assert bm.counts() == (6, 6, 4)
    assert bm.kv_num_blocks.tolist() == [[[1, 2, 3, 4]]]
    assert bm.density() == pytest.approx(10 / 16)


@pytest.mark.parametrize("case", list(mask_cases()))
def test_engine_equals_dense_attention_in_float64(case):
    mod, q_len, kv_len = mask_cases()[case]
    bm = create_block_mask(mod, None, None, q_len, kv_len, block_size=16)
    dense = masks.materialize(mod, q_len, kv_len)
    real = torch.rand(2, kv_len, generator=torch.Generator().manual_seed(3)) > 0.2
    for padding in (None, real):
        q, k, v = qkv(q_len, kv_len)
        out = block_sparse_attention(q, k, v, bm, key_padding_mask=padding)
        mask = dense if padding is None else dense & padding[:, None, None, :]
        want = attention_reference(q, k, v, mask=mask)
        assert_close(out, want, rtol=1e-12, atol=1e-12)
        grad = torch.randn_like(out)
        mine = torch.autograd.grad(out, (q, k, v), grad)
        theirs = torch.autograd.grad(want, (q, k, v), grad)
        for a, b in zip(mine, theirs, strict=True):
            assert torch.isfinite(a).all()
            assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["causal", "bigbird", "document", "not(window)"])
def test_engine_equals_dense_attention_in_float32(case):
    mod, q_len, kv_len = mask_cases()[case]
    bm = create_block_mask(mod, None, None, q_len, kv_len)  # the default block size
    q, k, v = qkv(q_len, kv_len, dtype=torch.float32)
    want = attention_reference(q, k, v, mask=masks.materialize(mod, q_len, kv_len))
    assert_close(block_sparse_attention(q, k, v, bm), want)


def test_per_batch_and_per_head_masks_with_gqa_and_dead_rows():
    gen = torch.Generator().manual_seed(4)
    mask = torch.rand(2, 4, 40, 40, generator=gen) > 0.7
    mask[:, :, 3] = False  # a query that sees nothing, in every head
    mask[1, 2, 17] = False
    bm = BlockMask.from_mask(mask, block_size=16)
    assert bm.shape == (2, 4, 40, 40)
    assert torch.equal(bm.to_dense(), mask)
    q, k, v = qkv(40, 40)
    out = block_sparse_attention(q, k, v, bm)
    want = attention_reference(q, k, v, mask=mask)
    assert_close(out, want)
    assert out[:, :, 3].eq(0).all() and out[1, 2, 17].eq(0).all()
    mine = torch.autograd.grad(out.sum(), (q, k, v))
    theirs = torch.autograd.grad(want.sum(), (q, k, v))
    for a, b in zip(mine, theirs, strict=True):
        assert_close(a, b)


def test_a_mask_that_depends_on_the_batch_element():
    lengths = torch.tensor([10, 25])
    mod = masks.prefix_lm(lengths)  # per-sample prefixes
    bm = create_block_mask(mod, 2, None, 48, block_size=16)
    q, k, v = qkv(48, 48)
    dense = masks.materialize(mod, 48, batch=2)
    assert_close(block_sparse_attention(q, k, v, bm), attention_reference(q, k, v, mask=dense))


def test_nan_in_padded_keys_never_leaks():
    q, k, v = qkv(L, L)
    real = torch.ones(2, L, dtype=torch.bool)
    real[1, 50:] = False
    with torch.no_grad():
        k[1, :, 50:], v[1, :, 50:] = float("nan"), float("nan")
    bm = create_block_mask(masks.causal(), None, None, L, block_size=16)
    out = block_sparse_attention(q, k, v, bm, key_padding_mask=real)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_half_precision_returns_the_input_dtype_and_stays_close():
    mod, q_len, kv_len = mask_cases()["longformer"]
    bm = create_block_mask(mod, None, None, q_len, kv_len, block_size=16)
    q, k, v = qkv(q_len, kv_len)
    want = attention_reference(q, k, v, mask=masks.materialize(mod, q_len, kv_len))
    for dtype in (torch.float16, torch.bfloat16):
        half = [t.detach().to(dtype) for t in (q, k, v)]
        out = block_sparse_attention(*half, bm)
        naive = attention_reference(*half, mask=masks.materialize(mod, q_len, kv_len))
        assert out.dtype == dtype
        assert (out.double() - want).abs().max() <= 2 * (naive.double() - want).abs().max() + 1e-3


def test_empty_inputs():
    bm = create_block_mask(masks.causal(), None, None, 0, 0)
    q, k, v = qkv(0, 0)
    assert block_sparse_attention(q, k, v, bm).shape == (2, 4, 0, 6)


class _Work(TorchDispatchMode):
    """Largest tensor produced, and multiply-adds of every batched matrix product."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.largest = max(self.largest, out.numel())
            if func is torch.ops.aten.bmm.default:
                self.products += out.numel() * args[0].shape[-1]  # (b, n, p) x inner dim
        return out


def test_no_l_by_s_tensor_and_cost_follows_the_non_empty_blocks():
    length, block = 2048, 64
    q, k, v = (t.detach() for t in qkv(length, length, heads=2, kv_heads=2, batch=1))
    rows = length // block
    work = {}
    for keep in (1, 4, 16, 32):  # key blocks per query-block row: density keep / 32
        mod = masks.random_blocks(block, keep, q_len=length) if keep < rows else None
        bm = (
            create_block_mask(mod, None, None, length, block_size=block)
            if mod is not None
            else BlockMask.from_mask(torch.ones(length, length, dtype=torch.bool), block_size=block)
        )
        with torch.no_grad(), _Work() as mode:
            block_sparse_attention(q, k, v, bm)
        if keep <= rows // 8:  # chunks of scores, never one L x S tensor
            assert mode.largest <= length * length // 4
        full, partial = bm.counts()[1:]
        work[keep] = mode.products / ((full + partial) * block * block)
    # multiply-adds per computed block cell (q.k and weights.v): the same at every density
    assert max(work.values()) <= 1.05 * min(work.values()), work


def test_masked_module_runs_on_the_engine_and_equals_its_dense_path():
    torch.manual_seed(0)
    attn = attnzoo.create("masked", 32, num_heads=4, mask_mod=masks.sliding_window(5))
    attn = attn.double().eval()
    x = torch.randn(2, 40, 32, dtype=F64)
    real = torch.ones(2, 40, dtype=torch.bool)
    real[0, 30:] = False
    for kwargs in ({}, {"is_causal": True}, {"mask": real}):
        fast = attn(x, **kwargs)
        dense, _ = attn(x, need_weights=True, **kwargs)
        assert_close(fast, dense)
    assert len(attn._block_masks) == 2  # one block mask per (L, S, is_causal)
    with _Work() as mode:
        attn(torch.randn(1, 4096, 32, dtype=F64))
    assert mode.largest < 4096 * 4096 // 4


def test_masked_module_with_a_per_sample_pattern():
    ids = torch.tensor([[0] * 20 + [1] * 12, [0] * 5 + [1] * 27])
    attn = attnzoo.create("masked", 16, num_heads=2, mask_mod=masks.document(ids), block_size=8)
    attn = attn.double().eval()
    x = torch.randn(2, 32, 16, dtype=F64)
    assert_close(attn(x), attn(x, need_weights=True)[0])


def test_flex_dispatch_agrees_with_the_engine():
    mod = masks.longformer(6, num_global=1)
    bm = create_block_mask(mod, None, None, 256, block_size=128)
    q, k, v = (t.detach().float() for t in qkv(256, 256, kv_heads=4))
    with torch.no_grad():
        assert_close(
            block_sparse_attention(q, k, v, bm, backend="flex"),
            block_sparse_attention(q, k, v, bm, backend="engine"),
        )


def test_bad_inputs_raise_clear_errors():
    q, k, v = qkv(32, 32)
    bm = create_block_mask(masks.causal(), None, None, 32, block_size=16)
    with pytest.raises(TypeError, match=r"block_mask must be an attnzoo\.functional\.BlockMask"):
        block_sparse_attention(q, k, v, torch.ones(32, 32, dtype=torch.bool))
    other = create_block_mask(masks.causal(), None, None, 48, block_size=16)
    with pytest.raises(ValueError, match=r"built for \(L, S\) = \(48, 48\)"):
        block_sparse_attention(q, k, v, other)
    three = BlockMask.from_mask(torch.ones(3, 1, 32, 32, dtype=torch.bool), block_size=16)
    with pytest.raises(ValueError, match="does not broadcast"):
        block_sparse_attention(q, k, v, three)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, S\)"):
        block_sparse_attention(q, k, v, bm, key_padding_mask=torch.ones(2, 31, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool tensor"):
        block_sparse_attention(q, k, v, bm, key_padding_mask=torch.ones(2, 32))
    with pytest.raises(ValueError, match="no backward on CPU"):
        block_sparse_attention(q, k, v, bm, backend="flex")
    with pytest.raises(ValueError, match="backend must be one of"):
        block_sparse_attention(q, k, v, bm, backend="dense")
    with pytest.raises(TypeError, match="block_size must be an int"):
        create_block_mask(masks.causal(), None, None, 32, block_size="64")
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        create_block_mask(masks.causal(), None, None, 32, block_size=0)
    with pytest.raises(TypeError, match="mask_mod must return a bool tensor"):
        create_block_mask(lambda b, h, q, kv: q - kv, None, None, 32)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        BlockMask.from_mask(torch.ones(4, 4))
