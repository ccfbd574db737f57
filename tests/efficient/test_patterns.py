"""Pattern mechanisms (local, strided, sparse_transformer, global, longformer, bigbird) and the
exact chunked ``memory_efficient`` attention.

Exactness regimes (issue 3): every pattern mechanism equals dense ``attention_reference`` with
its ``attnzoo.masks`` mask function materialised (the block fast path, for lengths that do and
do not divide the block or window sizes, with padding, causality, cross-attention where
supported and L = 1); ``local`` with ``window >= L`` equals ``mha`` with the same weights;
``memory_efficient`` equals dense attention to 1e-12 in float64 for chunk sizes that do not
divide L. Expected values are computed here from the module's weights with ``F.linear``,
``materialize`` and ``attention_reference``, never with the code under test. Reliability items
32 (local / block-sparse) and 23 (NaN in padded keys) are checked at the end.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import attnzoo
import attnzoo.efficient.bigbird
import attnzoo.efficient.global_tokens
import attnzoo.efficient.local
import attnzoo.efficient.longformer
import attnzoo.efficient.memory_efficient
import attnzoo.efficient.sparse_transformer
import attnzoo.efficient.strided  # the imports register the mechanisms
from attnzoo import masks
from attnzoo.functional.attention import attention_reference

DIM, HEADS = 16, 2

# name -> (constructor options, the defining mask function for lengths (L, S), causal, cross)
PATTERNS = {
    "local": ({"window": 3}, lambda L, S: masks.sliding_window(3), True, True),
    "strided": ({"stride": 4}, lambda L, S: masks.strided(4), True, False),
    "sparse_transformer": (
        {"block": 5, "num_summary": 2},
        lambda L, S: masks.fixed(5, 2),
        True,
        False,
    ),
    "global": (
        {"global_tokens": [1, 6]},
        lambda L, S: masks.global_tokens([1, 6]),
        True,
        True,
    ),
    "longformer": (
        {"window": 2, "dilation": 3, "global_tokens": [4]},
        lambda L, S: masks.longformer(2, dilation=3, global_indices=[4]),
        True,
        False,
    ),
    "bigbird": (
        {"block_size": 3, "num_random_blocks": 2, "seed": 5},
        lambda L, S: masks.bigbird(3, q_len=L, num_random_blocks=2, seed=5),
        False,
        False,
    ),
}
# lengths: 1, smaller than a block, equal to / not dividing the block and window sizes
LENGTHS = [1, 2, 5, 12, 13, 30, 47]


def make(name, **kwargs):
    return attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()


def x_(batch=2, length=7, seed=0):
    return torch.randn(batch, length, DIM, generator=torch.Generator().manual_seed(seed)).double()


def heads(module, linear, x):
    """``linear(x)`` with the module's weights, split into heads ``(B, nh, L, hd)``."""
    batch, length, _ = x.shape
    out = F.linear(x, linear.weight, linear.bias)
    return out.view(batch, length, module.num_heads, module.head_dim).transpose(1, 2)


def expected(module, mask_mod, x, context=None, real=None, is_causal=False):
    """Dense attention with the materialised pattern, from the module's weights."""
    source = x if context is None else context
    q = heads(module, module.q_proj, x)
    k = heads(module, module.k_proj, source)
    v = heads(module, module.v_proj, source)
    q_len, kv_len = x.shape[1], source.shape[1]
    mask = masks.materialize(mask_mod, q_len, kv_len)
    if real is not None:
        mask = mask & real[:, None, None, :]
    out = attention_reference(q, k, v, mask=mask, is_causal=is_causal)
    merged = out.transpose(1, 2).reshape(x.shape[0], q_len, -1)
    return F.linear(merged, module.out_proj.weight, module.out_proj.bias)


def padding(batch, length, seed=1):
    """Random padding with one fully padded sample."""
    real = torch.rand(batch, length, generator=torch.Generator().manual_seed(seed)) > 0.3
    real[-1] = False
    return real


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", list(PATTERNS))
def test_fast_path_equals_dense_reference(name, length):
    options, pattern, causal_ok, cross_ok = PATTERNS[name]
    module = make(name, **options)
    x = x_(3, length)
    cases = [(False, None, None), (False, padding(3, length), None)]
    if causal_ok:
        cases += [(True, None, None), (True, padding(3, length), None)]
    if cross_ok:
        context = x_(3, length + 4, seed=2)
        cases += [(False, padding(3, length + 4), context), (causal_ok, None, context)]
    for is_causal, real, context in cases:
        got = module(x, context, mask=real, is_causal=is_causal)
        kv_len = length if context is None else context.shape[1]
        want = expected(module, pattern(length, kv_len), x, context, real, is_causal)
        assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(PATTERNS))
def test_reference_path_and_recorded_weights_agree_with_the_fast_path(name):
    options, pattern, _, _ = PATTERNS[name]
    module = make(name, **options)
    x, real = x_(2, 23), padding(2, 23)
    real[-1, :5] = True
    fast = module(x, mask=real)
    module.fast_path = False
    assert_close(module(x, mask=real), fast, rtol=1e-10, atol=1e-12)
    module.fast_path = True
    with attnzoo.viz.record_attention(module) as maps:
        recorded = module(x, mask=real)
    assert_close(recorded, fast, rtol=1e-10, atol=1e-12)
    weights = maps[""]  # (B, nh, L, S): zero outside the pattern, rows sum to one or zero
    allowed = masks.materialize(pattern(23, 23), 23) & real[:, None, None, :]
    assert torch.all(weights[~allowed.expand_as(weights)] == 0)
    sums = weights.sum(-1)
    assert_close(sums, allowed.any(-1).expand_as(sums).double())


@pytest.mark.parametrize("name", list(PATTERNS))
def test_gradients_of_the_fast_path_equal_the_reference(name):
    options, _, causal_ok, _ = PATTERNS[name]
    module = make(name, **options)
    x, real = x_(2, 29), padding(2, 29)
    grads = []
    for fast in (True, False):
        module.fast_path = fast
        module.zero_grad()
        leaf = x.clone().requires_grad_(True)
        out = module(leaf, mask=real, is_causal=causal_ok)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([leaf.grad, *(p.grad for p in module.parameters())])
    for fast_grad, ref_grad in zip(*grads, strict=True):
        assert torch.isfinite(fast_grad).all()
        assert_close(fast_grad, ref_grad, rtol=1e-9, atol=1e-12)


def _copy_into_mha(module):
    mha = attnzoo.create("mha", DIM, num_heads=HEADS).double().eval()
    mha.load_state_dict(module.state_dict())
    return mha


@pytest.mark.parametrize("length", [1, 6, 9])
def test_local_with_window_covering_the_sequence_is_mha(length):
    local = make("local", window=8)
    mha = _copy_into_mha(local)
    x, real = x_(2, length), padding(2, length)
    real[0, 0] = True
    for is_causal in (False, True):
        assert_close(local(x, is_causal=is_causal), mha(x, is_causal=is_causal))
        assert_close(
            local(x, mask=real, is_causal=is_causal), mha(x, mask=real, is_causal=is_causal)
        )


def test_local_window_zero_returns_each_tokens_own_value():  # failure mode 32
    local = make("local", window=0)
    x = x_(2, 11)
    v = F.linear(x, local.v_proj.weight, local.v_proj.bias)
    assert_close(local(x), F.linear(v, local.out_proj.weight, local.out_proj.bias))


def test_local_window_block_boundaries_and_defaults():
    assert make("local").window == 256  # Longformer's pretraining window w = 512, one-sided
    module = make("local", window=40)  # blocks of 16: L = 127 does not divide them
    x = x_(1, 127)
    want = expected(module, masks.sliding_window(40), x, is_causal=True)
    assert_close(module(x, is_causal=True), want, rtol=1e-10, atol=1e-12)


def test_block_plan_follows_option_changes():
    module = make("local", window=3)
    x = x_(1, 40)
    module(x)  # caches the plan for window 3
    module.window = 6
    assert_close(module(x), expected(module, masks.sliding_window(6), x), rtol=1e-10, atol=1e-12)


def test_strided_and_sparse_transformer_at_realistic_block_sizes():
    x, real = x_(2, 150), padding(2, 150)
    real[-1, :100] = True
    strided = make("strided", stride=12)  # 150 = 12 * 12 + 6
    want = expected(strided, masks.strided(12), x, real=real, is_causal=True)
    assert_close(strided(x, mask=real, is_causal=True), want, rtol=1e-10, atol=1e-12)
    fixed = make("sparse_transformer", block=16, num_summary=4)
    want = expected(fixed, masks.fixed(16, 4), x, real=real)
    assert_close(fixed(x, mask=real), want, rtol=1e-10, atol=1e-12)


def test_longformer_defaults_and_num_global():
    module = make("longformer", window=3, dilation=2, num_global=2)
    assert (make("longformer").window, make("longformer").num_global) == (256, 1)
    x = x_(2, 41)
    want = expected(module, masks.longformer(3, dilation=2, num_global=2), x, is_causal=True)
    assert_close(module(x, is_causal=True), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("length", [63, 64, 65, 130])
def test_bigbird_lengths_not_divisible_by_the_block_size(length):  # failure mode 32
    module = make("bigbird", block_size=8, seed=3)
    x, real = x_(2, length), padding(2, length)
    want = expected(module, masks.bigbird(8, q_len=length, seed=3), x, real=real)
    assert_close(module(x, mask=real), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("length", [1, 8, 55, 56])
def test_bigbird_short_sequences_are_dense_attention(length):
    module = make("bigbird", block_size=8)  # defaults: 7 blocks or fewer are all full
    mha = _copy_into_mha(module)
    x = x_(2, length)
    assert_close(module(x), mha(x))
    assert not masks.materialize(masks.bigbird(8, q_len=64), 64).all()  # 8 blocks are sparse


def test_bigbird_random_blocks_are_seeded():
    x = x_(1, 96)
    a, b = make("bigbird", block_size=4, seed=1), make("bigbird", block_size=4, seed=1)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(a(x), b(x))
    c = make("bigbird", block_size=4, seed=2)
    c.load_state_dict(a.state_dict())
    assert not torch.allclose(a(x), c(x))


@pytest.mark.parametrize("chunks", [(1, 1), (3, 5), (4, 7), (13, 6), (100, 100)])
def test_memory_efficient_equals_dense_for_any_chunk_size(chunks):
    query_chunk, key_chunk = chunks
    module = make("memory_efficient", query_chunk_size=query_chunk, key_chunk_size=key_chunk)
    mha = _copy_into_mha(module)
    x, context = x_(2, 13), x_(2, 17, seed=3)
    gen = torch.Generator().manual_seed(4)
    bool_mask = torch.rand(2, 13, 13, generator=gen) > 0.4
    float_mask = torch.randn(2, HEADS, 13, 17, generator=gen).double()
    for args, kwargs in [
        ((x,), {}),
        ((x,), {"is_causal": True}),
        ((x,), {"mask": padding(2, 13), "is_causal": True}),
        ((x,), {"mask": bool_mask}),
        ((x, context), {"mask": float_mask}),
        ((x, context), {"mask": padding(2, 17), "is_causal": True}),
        ((x[:, :1],), {}),
    ]:
        assert_close(module(*args, **kwargs), mha(*args, **kwargs), rtol=1e-12, atol=1e-12)


def test_memory_efficient_gradients_with_checkpointing_and_dead_rows():
    module = make("memory_efficient", query_chunk_size=4, key_chunk_size=3).train()
    mha = _copy_into_mha(module).train()
    x, real = x_(2, 11), padding(2, 11)
    results = []
    for layer in (module, mha):
        leaf = x.clone().requires_grad_(True)
        layer(leaf, mask=real, is_causal=True).sum().backward()
        results.append([leaf.grad, *(p.grad for p in layer.parameters())])
    for mine, theirs in zip(*results, strict=True):
        assert torch.isfinite(mine).all()
        assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def test_memory_efficient_options_are_checked():
    with pytest.raises(ValueError, match="query_chunk_size"):
        make("memory_efficient", query_chunk_size=0)
    with pytest.raises(TypeError, match="checkpoint"):
        make("memory_efficient", checkpoint=1)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("local", {"window": 16}),
        ("longformer", {"window": 8, "dilation": 2, "num_global": 2}),
        ("bigbird", {"block_size": 16}),
        ("global", {"num_global": 4}),
        ("memory_efficient", {"query_chunk_size": 128, "key_chunk_size": 128}),
    ],
)
def test_fast_path_never_builds_an_l_by_s_tensor(name, options):
    length = 1024
    module = attnzoo.create(name, DIM, num_heads=HEADS, **options).eval()
    x = torch.randn(1, length, DIM)
    real = torch.ones(1, length, dtype=torch.bool)
    with torch.no_grad(), _LargestTensor() as mode:
        module(x, mask=real)
    assert mode.largest < length * length // 4, f"{name} built a tensor of {mode.largest}"


def test_pattern_mask_functions_and_aliases():
    assert masks.MASK_FUNCTIONS["local"] is masks.sliding_window
    assert masks.MASK_FUNCTIONS["global"] is masks.global_tokens
    assert masks.MASK_FUNCTIONS["sparse_transformer"] is masks.fixed
    grid = masks.materialize(masks.fixed(4, 1), 8)[0, 0]
    own = torch.arange(8).view(-1, 1) // 4 == torch.arange(8) // 4
    summary = (torch.arange(8) % 4 == 3).expand(8, 8)
    assert torch.equal(grid, own | summary)
    with pytest.raises(ValueError, match="num_summary"):
        masks.fixed(4, 5)


def test_nan_in_padded_keys_does_not_leak():  # failure mode 23
    x, real = x_(2, 30), torch.ones(2, 30, dtype=torch.bool)
    real[:, 20:] = False
    x[:, 20:] = float("nan")
    for name, (options, _, _, _) in [*PATTERNS.items(), ("memory_efficient", ({}, 0, 0, 0))]:
        out = make(name, **options)(x, mask=real)
        assert torch.isfinite(out[:, :20]).all(), name


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("local", {"window": -1}, ValueError, "window"),
        ("strided", {"stride": 0}, ValueError, "stride"),
        ("sparse_transformer", {"block": 4, "num_summary": 5}, ValueError, "num_summary"),
        ("global", {"global_tokens": [0], "num_global": 1}, ValueError, "not both"),
        ("global", {"global_tokens": [-1]}, ValueError, "global_tokens"),
        ("longformer", {"dilation": 0}, ValueError, "dilation"),
        ("bigbird", {"num_window_blocks": 2}, ValueError, "odd"),
        ("bigbird", {"block_size": 0}, ValueError, "block_size"),
        ("bigbird", {"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_options_are_clear_errors(name, options, error, match):
    with pytest.raises(error, match=match):
        make(name, **options)


@pytest.mark.parametrize("name", ["strided", "sparse_transformer", "longformer", "bigbird"])
def test_unsupported_capabilities_raise(name):
    module = make(name, **PATTERNS[name][0])
    with pytest.raises(NotImplementedError, match="cross"):
        module(x_(), x_(length=5))
    if name == "bigbird":
        with pytest.raises(NotImplementedError, match="is_causal"):
            module(x_(), is_causal=True)


@pytest.mark.parametrize("name", [*PATTERNS, "memory_efficient"])
def test_empty_batch_and_empty_sequence(name):  # failure mode 11
    module = make(name, **PATTERNS.get(name, ({},))[0])
    assert module(x_(0, 9)).shape == (0, 9, DIM)
    assert module(x_(2, 0)).shape == (2, 0, DIM)


def test_half_precision_keeps_its_dtype():
    module = attnzoo.create("local", DIM, num_heads=HEADS, window=3).to(torch.bfloat16).eval()
    out = module(torch.randn(2, 20, DIM, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.slow
def test_flex_local_baseline_matches_local():
    from attnzoo.arena.efficiency import _build

    cfg = {"name": "flex_local", "dim": 32, "heads": 2, "causal": False, "options": {"window": 5}}
    flex, call = _build({**cfg, "dtype": "float32", "device": "cpu"}, 70)
    local = attnzoo.create("local", 32, num_heads=2, window=5).eval()
    local.load_state_dict(flex.state_dict())
    x = torch.randn(1, 70, 32)
    with torch.no_grad():
        assert_close(call(x), local(x), rtol=1e-4, atol=1e-5)
