"""additive_attention, nadaraya_watson and masked modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo import masks
from attnzoo.functional import additive_score, attention_reference, nadaraya_watson


def test_additive_module_equals_functional_definition():
    attn = attnzoo.create("additive_attention", 6, context_dim=3, head_dim=5).double().eval()
    x, ctx = torch.randn(2, 4, 6, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
    lens = torch.tensor([3, 7])
    out, w = attn(x, ctx, valid_lens=lens, need_weights=True)
    scores = additive_score(
        x, ctx, attn.q_proj.weight, attn.k_proj.weight, attn.score_vector[0]
    )  # (B, L, S) with the module's own W_q, W_k, w_v
    keep = torch.arange(7)[None, None, :] < lens[:, None, None]
    weights = torch.softmax(scores.masked_fill(~keep, -math.inf), -1)
    assert_close(w[:, 0], weights)
    assert_close(out, attn.out_proj(weights @ attn.v_proj(ctx)))
    assert torch.equal(w[0, 0, :, 3:], torch.zeros(4, 4, dtype=torch.float64))


def test_additive_hand_computed_single_query():
    attn = attnzoo.create("additive_attention", 1, head_dim=1).double()
    with torch.no_grad():
        attn.q_proj.weight.fill_(1.0)
        attn.k_proj.weight.fill_(2.0)
        attn.score_vector.fill_(3.0)
        attn.v_proj.weight.fill_(1.0)
        attn.out_proj.weight.fill_(1.0)
        attn.out_proj.bias.zero_()
    x = torch.tensor([[[0.5]]], dtype=torch.float64)
    ctx = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    # scores: 3 tanh(0.5 + 0) and 3 tanh(0.5 + 2); output = softmax-weighted mean of [0, 1]
    s0, s1 = 3 * math.tanh(0.5), 3 * math.tanh(2.5)
    want = math.exp(s1) / (math.exp(s0) + math.exp(s1))
    assert_close(attn(x, ctx), torch.tensor([[[want]]], dtype=torch.float64))


def test_nadaraya_watson_untrained_equals_gaussian_pooling():
    nw = attnzoo.create("nadaraya_watson", 1).double()
    keys = torch.linspace(0, 5, 50, dtype=torch.float64)
    values_fn = 2 * torch.sin(keys) + keys**0.8
    queries = torch.tensor([0.3, 2.2, 4.9], dtype=torch.float64)
    # keys double as values in the module (context); compare weights, then outputs on the keys
    _, w = nw(queries.view(1, 3, 1), keys.view(1, 50, 1), need_weights=True)
    pred, want_w = nadaraya_watson(queries, keys, values_fn)
    assert_close(w[0, 0], want_w)
    assert_close(w[0, 0] @ values_fn, pred)


def test_nadaraya_watson_learns_bandwidth_on_survey_data():
    # d2l 10.2.4: train w on the survey's data with leave-one-out keys, SGD lr 0.5, 5 epochs.
    gen = torch.Generator().manual_seed(0)
    x_train, _ = torch.sort(torch.rand(50, generator=gen) * 5)
    y_train = 2 * torch.sin(x_train) + x_train**0.8 + torch.normal(0.0, 0.5, (50,), generator=gen)
    x_test = torch.arange(0, 5, 0.1)
    y_truth = 2 * torch.sin(x_test) + x_test**0.8
    nw = attnzoo.create("nadaraya_watson", 1)
    keys, values = x_train.view(1, 50, 1), y_train.view(1, 50, 1)
    leave_one_out = ~torch.eye(50, dtype=torch.bool)[None]  # (1, L, S)
    opt = torch.optim.SGD(nw.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        pred = nw(keys, keys, values=values, mask=leave_one_out)
        loss = ((pred - values) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with torch.no_grad():
        pred = nw(x_test.view(1, -1, 1), keys, values=values)[0, :, 0]
    mse_trained = ((pred - y_truth) ** 2).mean()
    mse_average = ((y_train.mean() - y_truth) ** 2).mean()
    assert mse_trained < mse_average


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_nadaraya_watson_distances_do_not_cancel_far_from_the_origin(offset):
    # keys and queries around 1e4: the |q|^2 + |k|^2 - 2 q.k expansion loses every digit of
    # |q - k|^2 in float32; differences keep them. The float64 reference gets the same inputs.
    gen = torch.Generator().manual_seed(0)
    x = (offset + torch.randn(2, 6, 4, generator=gen)).float()
    context = (offset + torch.randn(2, 9, 4, generator=gen)).float()
    nw = attnzoo.create("nadaraya_watson", 4)
    _, weights = nw(x, context, need_weights=True)
    diff = x.double()[:, :, None] - context.double()[:, None]  # (B, L, S, C)
    want = torch.softmax(-diff.square().sum(-1) / 2, dim=-1)  # w = 1
    assert_close(weights[:, 0].double(), want, atol=1e-5, rtol=1e-4)


def test_nadaraya_watson_module_gradient_reaches_w():
    nw = attnzoo.create("nadaraya_watson", 4, num_heads=2)
    nw(torch.randn(2, 3, 4), torch.randn(2, 6, 4)).sum().backward()
    assert nw.w.grad is not None and torch.isfinite(nw.w.grad).all()


@pytest.mark.parametrize("projections", [False, True])
@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        (torch.randn(3, 5, 4), ValueError, r"^values must be \(B, S, C_v\) with the batch of x"),
        (torch.randn(1, 5, 4), ValueError, r"with the batch of x, B = 2"),
        (torch.randn(2, 4, 4), ValueError, r"one row per key, S = 5"),
        (torch.randn(2, 5, 4, dtype=torch.float64), TypeError, r"^values must match x in dtype"),
        ([[1.0]], TypeError, r"^values must be a torch.Tensor"),
    ],
)  # fmt: skip
def test_nadaraya_watson_values_must_match_the_queries(values, error, match, projections):
    nw = attnzoo.create("nadaraya_watson", 4, projections=projections)
    x, context = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    with pytest.raises(error, match=match):  # a batch-1 values used to broadcast silently
        nw(x, context, values=values)


def test_nadaraya_watson_values_width():
    x, context, values = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    plain = attnzoo.create("nadaraya_watson", 4)  # no projections: any width, output C_v
    assert plain(x, context, values=values).shape == (2, 3, 6)
    assert plain(x[0], context[0], values=values[0]).shape == (3, 6)
    projected = attnzoo.create("nadaraya_watson", 4, projections=True)
    with pytest.raises(ValueError, match=r"^values must have C_v = context_dim = 4 channels"):
        projected(x, context, values=values)


def test_masked_equals_dense_with_materialized_mask():
    mod = masks.or_masks(masks.sliding_window(2), masks.global_tokens([0]))
    attn = attnzoo.create("masked", 32, num_heads=4, mask_mod=mod).double().eval()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[1, -3:] = False
    out, w = attn(x, mask=pad, is_causal=True, need_weights=True)
    q = attn.q_proj(x).view(2, 11, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 11, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 11, 4, 8).transpose(1, 2)
    keep = masks.materialize(mod, 11) & pad[:, None, None, :]
    ref = attention_reference(q, k, v, mask=keep, is_causal=True)
    assert_close(out, attn.out_proj(ref.transpose(1, 2).reshape(2, 11, 32)))
    assert torch.equal(w * ~masks.materialize(mod, 11), torch.zeros_like(w))
    assert_close(attn(x[0]), attn(x[:1])[0])


def test_masked_without_pattern_is_mha():
    attn = attnzoo.create("masked", 16, num_heads=2).eval()
    mha = attnzoo.create("mha", 16, num_heads=2).eval()
    mha.load_state_dict(attn.state_dict())
    x = torch.randn(2, 5, 16)
    assert_close(attn(x), mha(x))
    with pytest.raises(TypeError, match="mask_mod"):
        attnzoo.create("masked", 16, num_heads=2, mask_mod=3)
