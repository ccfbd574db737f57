"""Self-attention's q/k/v projections as one GEMM (``AttentionBase.project``).

From ``FUSED_PROJECTION_ROWS`` rows on, the three projections run as one ``F.linear`` on their
concatenated weights. It must compute what the three separate projections compute, values and
gradients, for every registered token mixer, and must step aside for anything that changes what
the separate calls would do (hooks, projections that are not plain ``nn.Linear``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import attnzoo
from attnzoo.layers import attention_base
from attnzoo.layers.attention_base import FUSED_PROJECTION_ROWS, AttentionBase

DIM, HEADS = 16, 2
LENGTH = FUSED_PROJECTION_ROWS  # B = 1: exactly the threshold
NAMES = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
# the mechanisms that project self-attention's q, k, v through AttentionBase: they must fuse
# (the others use their own projections: tied q/k, no keys, per-block kernels, compressions)
FUSING = {
    "additive_attention", "masked", "mha", "sigmoid_attention", "topk_attention", "bigbird",
    "global", "local", "longformer", "memory_efficient", "routing", "sinkhorn",
    "sparse_transformer", "strided",
}  # fmt: skip


def _count_fused(monkeypatch) -> list[int]:
    calls = [0]
    fused = AttentionBase._fused_qkv

    def counting(self, x):
        calls[0] += 1
        return fused(self, x)

    monkeypatch.setattr(AttentionBase, "_fused_qkv", counting)
    return calls


def _run(module: nn.Module, x: torch.Tensor, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output and the gradients of the input and every parameter, with a fixed RNG."""
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    torch.manual_seed(1)  # mechanisms that sample per call (hashing) sample the same
    out = module(x, **kwargs)
    out.square().sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters() if p.grad is not None]
    return out.detach(), grads


@pytest.mark.parametrize("name", NAMES)
def test_fused_projection_equals_separate_projections(name, monkeypatch):
    cls = attnzoo.info(name).obj
    kwargs = {"seq_len": LENGTH} if getattr(cls, "fixed_length", False) else {}
    torch.manual_seed(0)
    module = attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()
    x = torch.randn(1, LENGTH, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    calls = _count_fused(monkeypatch)
    fused_out, fused_grads = _run(module, x)
    with torch.no_grad():  # no-autograd fast paths too
        torch.manual_seed(1)
        fused_inference = module(x)
    fused_calls = calls[0]
    assert (fused_calls > 0) == (name in FUSING), f"{name}: {fused_calls} fused projections"
    monkeypatch.setattr(attention_base, "FUSED_PROJECTION_ROWS", 10**12)
    out, grads = _run(module, x)
    with torch.no_grad():
        torch.manual_seed(1)
        inference = module(x)
    assert calls[0] == fused_calls, "the threshold did not switch the fused path off"
    assert_close(fused_out, out)
    assert_close(fused_inference, inference)
    assert len(fused_grads) == len(grads)
    for fused_grad, grad in zip(fused_grads, grads, strict=True):
        assert_close(fused_grad, grad)


@pytest.mark.parametrize(
    "options",
    [{}, {"qkv_bias": False}, {"num_kv_heads": 1}, {"head_dim": 5}],
    ids=["bias", "no-bias", "gqa", "head-dim"],
)
@pytest.mark.parametrize("is_causal", [False, True])
def test_mha_fuses_at_the_threshold_and_matches(options, is_causal, monkeypatch):
    torch.manual_seed(0)
    module = attnzoo.create("mha", DIM, num_heads=4, **options).double()
    x = torch.randn(2, LENGTH // 2, DIM, dtype=torch.float64)
    calls = _count_fused(monkeypatch)
    fused_out, fused_grads = _run(module, x, is_causal=is_causal)
    assert calls[0] == 1
    monkeypatch.setattr(attention_base, "FUSED_PROJECTION_ROWS", 10**12)
    out, grads = _run(module, x, is_causal=is_causal)
    assert calls[0] == 1
    assert_close(fused_out, out)
    for fused_grad, grad in zip(fused_grads, grads, strict=True):
        assert_close(fused_grad, grad)


def test_below_the_threshold_and_cross_attention_project_separately(monkeypatch):
    module = attnzoo.create("mha", DIM, num_heads=HEADS)
    calls = _count_fused(monkeypatch)
    with torch.no_grad():
        module(torch.randn(1, LENGTH - 1, DIM))  # one row short
        module(torch.randn(1, LENGTH, DIM), torch.randn(1, 8, DIM))  # keys from a context
    assert calls[0] == 0
    with torch.no_grad():
        module(torch.randn(1, LENGTH, DIM))
    assert calls[0] == 1


def test_hooks_on_a_projection_still_fire(monkeypatch):
    module = attnzoo.create("mha", DIM, num_heads=HEADS)
    calls = _count_fused(monkeypatch)
    seen: list[tuple[int, ...]] = []
    handle = module.k_proj.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        module(torch.randn(1, LENGTH, DIM))
    handle.remove()
    assert seen == [(1, LENGTH, DIM)] and calls[0] == 0
    handle = nn.modules.module.register_module_forward_pre_hook(lambda _m, _i: None)
    try:
        with torch.no_grad():
            module(torch.randn(1, LENGTH, DIM))
    finally:
        handle.remove()
    assert calls[0] == 0


def test_backward_hooks_on_a_projection_still_fire(monkeypatch):
    module = attnzoo.create("mha", DIM, num_heads=HEADS)
    calls = _count_fused(monkeypatch)
    seen: list[tuple[int, ...]] = []
    module.q_proj.register_full_backward_hook(lambda _m, _gi, go: seen.append(go[0].shape))
    module(torch.randn(1, LENGTH, DIM, requires_grad=True)).sum().backward()
    assert seen == [(1, LENGTH, DIM)] and calls[0] == 0
    handle = nn.modules.module.register_module_full_backward_hook(lambda _m, _gi, _go: None)
    try:
        module(torch.randn(1, LENGTH, DIM))
    finally:
        handle.remove()
    assert calls[0] == 0


def test_a_replaced_projection_is_called(monkeypatch):
    """A wrapped projection (an adapter, a quantised layer) is not bypassed."""

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    module = attnzoo.create("mha", DIM, num_heads=HEADS).double()
    replaced = Scaled(DIM, DIM).double()
    replaced.load_state_dict(module.v_proj.state_dict())
    x = torch.randn(1, LENGTH, DIM, dtype=torch.float64)
    with torch.no_grad():
        before = module(x)
        module.v_proj = replaced
        calls = _count_fused(monkeypatch)
        after = module(x)
    assert calls[0] == 0
    assert_close(after - module.out_proj.bias, 2 * (before - module.out_proj.bias))
