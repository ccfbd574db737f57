"""Training memory: the long-sequence mechanisms recompute their layer (or attention core) in
the backward pass instead of keeping its scores, and the recomputation is exact — the same
outputs and gradients as keeping everything, dropout masks and random rotations included."""

from __future__ import annotations

import pytest
import torch

import attnzoo
import attnzoo._recompute as recompute
from attnzoo.functional import block_sparse_attention, create_block_mask
from attnzoo.masks import sliding_window

# name -> options at L = 256: small blocks, so that the approximations are not dense
MECHANISMS = {
    "local": {"window": 16},
    "longformer": {"window": 16, "num_global": 2},
    "bigbird": {"block_size": 16},
    "strided": {"stride": 16},
    "sparse_transformer": {"block": 16, "num_summary": 2},
    "global": {"num_global": 4},
    "sinkhorn": {"seq_len": 256, "bucket_size": 32},
    "reformer": {"bucket_size": 32, "n_hashes": 2},
    "linear": {},
    "performer": {"nb_features": 32},
    "linformer": {"seq_len": 256, "k": 32},
    "nystrom": {"num_landmarks": 16},
}
LENGTH, DIM = 256, 32


def kept_everything(monkeypatch):
    """Make ``recomputed`` a plain call: autograd keeps every intermediate."""
    monkeypatch.setattr(recompute, "checkpoint", lambda fn, *args, use_reentrant: fn(*args))


def run(module, x, seed):
    torch.manual_seed(seed)  # the dropout masks, rotations and Gumbel noise of this step
    out = module(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    module.zero_grad(set_to_none=True)
    return out.detach(), x.grad.clone(), grads


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_recomputation_equals_keeping_everything_with_dropout(name, monkeypatch):
    options = {**MECHANISMS[name], "attn_drop": 0.2, "proj_drop": 0.2}
    module = attnzoo.create(name, DIM, num_heads=2, **options).double().train()
    x = torch.randn(2, LENGTH, DIM, dtype=torch.float64, requires_grad=True)
    out, dx, grads = run(module, x, seed=7)
    x.grad = None
    kept_everything(monkeypatch)
    out_ref, dx_ref, grads_ref = run(module, x, seed=7)
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-12)
    assert len(grads) == len(grads_ref)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while ``fn()`` runs (distinct storages)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_a_layer_keeps_little_more_than_its_input_for_backward(name, monkeypatch):
    module = attnzoo.create(name, DIM, num_heads=2, **MECHANISMS[name]).train()
    x = torch.randn(1, LENGTH, DIM, requires_grad=True)
    light = saved_bytes(lambda: module(x))
    kept_everything(monkeypatch)
    heavy = saved_bytes(lambda: module(x))
    inputs = x.numel() * x.element_size()
    assert light < heavy / 3, (light, heavy)
    assert light <= 4 * inputs + 64 * 1024, (light, inputs)  # x, a few (B, L) masks, buffers


def test_the_engine_recomputes_its_chunks_exactly():
    q, k, v = (torch.randn(1, 2, 512, 8, dtype=torch.float64, requires_grad=True) for _ in "qkv")
    block_mask = create_block_mask(sliding_window(40), None, None, 512, block_size=64)
    results = []
    for recompute_chunks in (True, False):
        torch.manual_seed(3)
        out = block_sparse_attention(q, k, v, block_mask, dropout_p=0.3, recompute=recompute_chunks)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        results.append((out, *grads))
    for light, heavy in zip(*results, strict=True):
        torch.testing.assert_close(light, heavy, rtol=1e-12, atol=1e-12)
    light = saved_bytes(lambda: block_sparse_attention(q, k, v, block_mask))
    heavy = saved_bytes(lambda: block_sparse_attention(q, k, v, block_mask, recompute=False))
    assert light < heavy / 4, (light, heavy)
    with pytest.raises(TypeError, match="recompute must be a bool"):
        block_sparse_attention(q, k, v, block_mask, recompute=1)


def test_inference_is_not_affected():
    """Without gradients nothing is checkpointed (no_grad and eval calls are plain calls)."""
    calls = []
    module = attnzoo.create("local", DIM, num_heads=2, window=16).eval()
    original = recompute.checkpoint
    try:
        recompute.checkpoint = lambda *a, **k: calls.append(1) or original(*a, **k)
        with torch.no_grad():
            module(torch.randn(1, LENGTH, DIM))
    finally:
        recompute.checkpoint = original
    assert calls == []


@pytest.mark.parametrize(
    "name", ["local", "sinkhorn", "reformer", "performer", "linformer", "nystrom"]
)
def test_recompute_false_keeps_the_activations_and_changes_nothing_else(name):
    module = attnzoo.create(name, DIM, num_heads=2, attn_drop=0.1, **MECHANISMS[name]).double()
    x = torch.randn(1, LENGTH, DIM, dtype=torch.float64, requires_grad=True)
    out, dx, grads = run(module.train(), x, seed=5)
    light = saved_bytes(lambda: module(x))
    module.recompute = False
    x.grad = None
    out_kept, dx_kept, grads_kept = run(module, x, seed=5)
    heavy = saved_bytes(lambda: module(x))
    assert light < heavy / 3, (light, heavy)
    torch.testing.assert_close(out, out_kept, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dx, dx_kept, rtol=1e-10, atol=1e-12)
    for grad, kept in zip(grads, grads_kept, strict=True):
        torch.testing.assert_close(grad, kept, rtol=1e-10, atol=1e-12)
