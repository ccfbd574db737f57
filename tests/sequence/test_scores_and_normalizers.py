"""Scores and normalisers between soft and hard attention: sparsemax, 1.5-entmax (functional and
as ``mha(normalizer=...)``), sigmoid, top-k and L2 attention.

Expected values come from independent float64 code written here from the papers' definitions
(a bisection for the simplex thresholds, explicit loops over the kept keys), never from the
code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo.functional import attention_reference, entmax15, l2_score, sparsemax

F64 = torch.float64
DIM, HEADS = 16, 2


def bisect_threshold(z, power):
    """``tau`` with ``sum(max(z - tau, 0) ** power) = 1``, by bisection (float64)."""
    low, high = z.max() - 1.0, z.max()
    for _ in range(200):
        mid = (low + high) / 2
        if ((z - mid).clamp_min(0) ** power).sum() > 1:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def reference_sparsemax(z):
    return (z - bisect_threshold(z, 1)).clamp_min(0)


def reference_entmax15(z):
    half = z / 2
    return (half - bisect_threshold(half, 2)).clamp_min(0) ** 2


@pytest.mark.parametrize(
    ("fn", "reference"), [(sparsemax, reference_sparsemax), (entmax15, reference_entmax15)]
)
def test_normalizers_equal_the_bisection_reference(fn, reference):
    gen = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(6, 11, generator=gen, dtype=F64)
    got = fn(scores)
    want = torch.stack([reference(row) for row in scores])
    assert_close(got, want, atol=1e-10, rtol=0)
    assert_close(got.sum(-1), torch.ones(6, dtype=F64))
    assert (got == 0).any()  # sparse: some keys get exactly zero


def test_sparsemax_known_answers():
    assert_close(sparsemax(torch.tensor([2.0, 1.0, -1.0])), torch.tensor([1.0, 0.0, 0.0]))
    assert_close(sparsemax(torch.tensor([0.5, 0.3, -1.0])), torch.tensor([0.6, 0.4, 0.0]))
    assert_close(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))  # ties: uniform


@pytest.mark.parametrize("fn", [sparsemax, entmax15])
def test_normalizers_masks_dead_rows_half_and_gradients(fn):
    scores = torch.randn(3, 5, dtype=F64, requires_grad=True)
    keep = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    weights = fn(scores, keep)
    assert weights[~keep].eq(0).all() and weights[1].eq(0).all()
    assert_close(weights[2], torch.tensor([1.0, 0, 0, 0, 0], dtype=F64))
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[1].eq(0).all()
    float_mask = torch.zeros(3, 5, dtype=F64).masked_fill(~keep, float("-inf"))
    assert_close(fn(scores.detach(), float_mask), weights.detach())
    half = fn(scores.detach().to(torch.bfloat16), keep)
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    x = torch.randn(4, 7, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, None), (x,))


def test_sparsemax_jacobian_is_the_papers():
    z = torch.tensor([0.9, 0.5, 0.4, -1.0], dtype=F64)
    jac = torch.autograd.functional.jacobian(sparsemax, z)
    support = (sparsemax(z) > 0).to(F64)
    want = torch.diag(support) - torch.outer(support, support) / support.sum()
    assert_close(jac, want)  # Martins & Astudillo 2016, eq. 12


@pytest.mark.parametrize("normalizer", ["sparsemax", "entmax15"])
def test_mha_normalizer_equals_reference_and_is_sparse(normalizer):
    torch.manual_seed(0)
    mha = attnzoo.create("mha", DIM, num_heads=HEADS, normalizer=normalizer).double().eval()
    x = 3 * torch.randn(2, 9, DIM, dtype=F64)
    out, weights = mha(x, need_weights=True, is_causal=True)
    q, k, v = mha.project(x, None)
    want = attention_reference(q, k, v, is_causal=True, normalizer=normalizer)
    assert_close(out, mha.finish(want, False))
    assert_close(mha(x, is_causal=True), out)  # without weights: the same path
    assert_close(weights.sum(-1), torch.ones(2, HEADS, 9, dtype=F64))
    visible = torch.ones(9, 9, dtype=torch.bool).tril()
    assert (weights[..., ~visible] == 0).all() and (weights[..., visible] == 0).any()
    with pytest.raises(ValueError, match="normalizer"):
        attnzoo.create("mha", DIM, normalizer="sparsest")


# ----------------------------------------------------------------------------- modules
def heads(module, linear, x):
    out = torch.nn.functional.linear(x, linear.weight, linear.bias)
    return out.view(*x.shape[:2], module.num_heads, -1).transpose(1, 2)  # (B, nh, L, hd)


def merge(module, out):
    merged = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)  # (B, L, C)
    return module.out_proj(merged)


def test_sigmoid_attention_equals_its_formula_with_real_key_count():
    torch.manual_seed(0)
    module = attnzoo.create("sigmoid_attention", DIM, num_heads=HEADS).double().eval()
    x = torch.randn(2, 7, DIM, dtype=F64)
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, 5:] = False
    q, k, v = (heads(module, p, x) for p in (module.q_proj, module.k_proj, module.v_proj))
    n = real.sum(-1).to(F64).view(2, 1, 1, 1)
    weights = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(DIM // HEADS) - n.log())
    weights = weights * real[:, None, None, :]
    assert_close(module(x, mask=real), merge(module, weights @ v))
    # padding never changes a real token: sample 1 alone, without its padding
    assert_close(module(x[1:, :5])[0], module(x, mask=real)[1, :5])
    fixed = attnzoo.create("sigmoid_attention", DIM, num_heads=HEADS, bias=-2.0).double()
    fixed.load_state_dict(module.state_dict())
    want = merge(fixed, torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(DIM // HEADS) - 2) @ v)
    assert_close(fixed(x), want)


def test_topk_attention_keeps_exactly_the_k_best_keys():
    torch.manual_seed(0)
    module = attnzoo.create("topk_attention", DIM, num_heads=HEADS, top_k=3).double().eval()
    x = torch.randn(2, 8, DIM, dtype=F64)
    q, k, v = (heads(module, p, x) for p in (module.q_proj, module.k_proj, module.v_proj))
    scores = q @ k.transpose(-2, -1) / math.sqrt(DIM // HEADS)
    want = torch.zeros_like(scores)
    for index in torch.cartesian_prod(*(torch.arange(n) for n in scores.shape[:3])):
        b, h, i = index.tolist()
        best = scores[b, h, i].argsort(descending=True)[:3]
        want[b, h, i, best] = torch.softmax(scores[b, h, i, best], dim=0)
    out, weights = module(x, need_weights=True)
    assert_close(weights, want)
    assert_close(out, merge(module, want @ v))
    wide = attnzoo.create("topk_attention", DIM, num_heads=HEADS, top_k=50).double().eval()
    mha = attnzoo.create("mha", DIM, num_heads=HEADS).double().eval()
    mha.load_state_dict(wide.state_dict())
    assert_close(wide(x, is_causal=True), mha(x, is_causal=True))  # top_k >= S: softmax


def test_topk_attention_never_selects_masked_keys():
    torch.manual_seed(0)
    module = attnzoo.create("topk_attention", DIM, num_heads=HEADS, top_k=2).double().eval()
    x = torch.randn(1, 6, DIM, dtype=F64)
    x[0, 4:] = 100.0  # padded keys with the largest scores
    real = torch.tensor([[True, True, True, True, False, False]])
    _, weights = module(x, mask=real, need_weights=True)
    assert weights[..., 4:].eq(0).all() and ((weights > 0).sum(-1) == 2).all()


@pytest.mark.parametrize("lipschitz", [True, False])
def test_l2_attention_equals_the_papers_formula(lipschitz):
    torch.manual_seed(0)
    module = attnzoo.create("l2_attention", DIM, num_heads=HEADS, lipschitz=lipschitz).double()
    x = torch.randn(2, 7, DIM, dtype=F64)
    hd = DIM // HEADS
    q = heads(module, module.q_proj, x)
    k = heads(module, module.k_proj, x)
    if lipschitz:
        assert module.k_proj is module.q_proj and "k_proj.weight" in module.state_dict()
        w_q = [module.q_proj.weight[h * hd : (h + 1) * hd].T for h in range(HEADS)]  # (C, hd)
        w_v = [module.v_proj.weight[h * hd : (h + 1) * hd].T for h in range(HEADS)]  # (C, hd)
        v = torch.stack(
            [x @ (w_q[h] @ w_q[h].T / math.sqrt(hd)) @ w_v[h] for h in range(HEADS)], dim=1
        )  # (B, nh, L, hd): X A_h W^V_h
    else:
        v = heads(module, module.v_proj, x)
    diff = q[:, :, :, None, :] - k[:, :, None, :, :]  # (B, nh, L, S, hd)
    weights = torch.softmax(-diff.square().sum(-1) / math.sqrt(hd), dim=-1)
    assert_close(module(x), merge(module, weights @ v))
    with pytest.raises((ValueError, NotImplementedError), match=r"cross|context"):
        module(x, torch.randn(2, 3, DIM, dtype=F64))


def test_l2_score_is_exact_far_from_the_origin():
    q = torch.tensor([[1e4 + 1.0, 1e4]], dtype=torch.float32)
    k = torch.tensor([[1e4, 1e4], [1e4 + 3.0, 1e4]], dtype=torch.float32)
    assert_close(l2_score(q, k, scale=1.0), torch.tensor([[-1.0, -4.0]]))
