"""Performer's FAVOR+ at any input scale: log-scaled keys, online rescaling, exact decoding.

The key features ``exp(w^T k - |k|^2 / 2)`` leave the float range for moderately large keys;
the mechanism keeps each key's largest exponent apart and every sum relative to a running
maximum. These tests check that the float32 path is the same estimator as a float64 evaluation
at every scale, that causality, padding and RNN decoding hold exactly even where the exponents
span hundreds of nats, that gradients are those of the closed form, and (by trend) that the
estimate approaches softmax attention as ``nb_features`` grows.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.testing import assert_close

import attnzoo
import attnzoo.efficient.performer  # registers the mechanism
from attnzoo.efficient._kernel import RecurrentState
from attnzoo.efficient._kernel_core import kernel_weights
from attnzoo.efficient._kernel_features import softmax_kernel_features

DIM, HEADS = 32, 2
SCALES = (1.0, 4.0, 16.0, 64.0)


def performer(nb_features=64, seed=0, **kwargs):
    torch.manual_seed(seed)
    return attnzoo.create("performer", DIM, num_heads=HEADS, nb_features=nb_features, **kwargs)


def inputs(scale, b=2, length=24, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, length, DIM, generator=gen, dtype=dtype)


def softmax_twin(module):
    """Dense ``mha`` with the same projections: the exact softmax attention FAVOR+ estimates."""
    mha = attnzoo.create("mha", DIM, num_heads=HEADS).to(module.q_proj.weight.dtype).eval()
    names = ("q_proj", "k_proj", "v_proj", "out_proj")
    mha.load_state_dict({k: v for k, v in module.state_dict().items() if k.split(".")[0] in names})
    return mha


def heads_error(module, x, causal=False):
    """Relative error of the attention part (output bias removed) against softmax attention."""
    bias = module.out_proj.bias
    with torch.no_grad():
        out = module(x, is_causal=causal) - bias
        ref = softmax_twin(module)(x, is_causal=causal) - bias
    return ((out - ref).norm() / ref.norm()).item()


def test_issue_example_no_longer_returns_the_bias():
    torch.manual_seed(0)
    module = attnzoo.create("performer", 256, num_heads=4).eval()
    out = module(16 * torch.randn(2, 64, 256))
    rows_at_bias = (out - module.out_proj.bias).abs().amax(-1) == 0  # (B, L)
    assert torch.isfinite(out).all() and not rows_at_bias.any()


# At input scale 64 one key's features span ~600 nats, beyond float32's ~88: the weakest
# underflow and float32 departs from float64 (both then far from softmax; see the bound test).
@pytest.mark.parametrize("scale", SCALES[:3])
@pytest.mark.parametrize("causal", [False, True])
def test_float32_is_the_float64_estimator_up_to_scale_16(scale, causal):
    module = performer(chunk_size=5).eval()
    x = inputs(scale)
    out32 = module(x, is_causal=causal)
    out64 = module.double()(x.double(), is_causal=causal)
    assert torch.isfinite(out32).all()
    # exponents of hundreds of nats carry float32 rounding of ~1e-7 relative each
    err = ((out32.double() - out64).norm() / out64.norm()).item()
    assert err < 1e-3, err


def test_stable_features_equal_plain_features_where_both_are_finite():
    w = performer(nb_features=48).projection.double()
    k = 0.7 * torch.randn(3, 10, DIM // HEADS, dtype=torch.float64)
    plain = softmax_kernel_features(k, w)  # exp(w^T k' - |k'|^2 / 2) / sqrt(m)
    f, log_scale = softmax_kernel_features(k, w, normalise_rows=True, return_log_scale=True)
    assert f.amax(-1).eq(1).all()  # each key's largest feature is taken out
    assert_close(f * log_scale.exp() / math.sqrt(48), plain)
    with pytest.raises(ValueError, match="normalise_rows"):
        softmax_kernel_features(k, w, return_log_scale=True)


@pytest.mark.parametrize("scale", SCALES)
def test_error_stays_bounded_at_every_scale(scale):
    for causal in (False, True):
        err = (
            sum(
                heads_error(performer(256, seed=s).eval(), inputs(scale, seed=s), causal)
                for s in range(3)
            )
            / 3
        )
        # a convex combination of the values: no NaN, no collapse to the bias (error 1 exactly)
        assert math.isfinite(err) and err < 1.5, (scale, causal, err)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_error_falls_as_nb_features_grows(scale):
    errors = []
    for m in (16, 64, 256, 1024):
        errors.append(
            sum(heads_error(performer(m, seed=s).eval(), inputs(scale, seed=s)) for s in range(3))
            / 3
        )
    assert all(a > b for a, b in itertools.pairwise(errors)), errors


@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_causality_holds_whatever_later_keys_hold(scale):
    module = performer(chunk_size=4).eval()
    x = inputs(scale, length=20)
    later = x.clone()
    later[:, 13:] = 1e3 * torch.randn_like(later[:, 13:])  # exponents far above every earlier one
    assert_close(module(later, is_causal=True)[:, :13], module(x, is_causal=True)[:, :13])


@pytest.mark.parametrize("scale", [1.0, 16.0, 64.0])
@pytest.mark.parametrize("causal", [False, True])
def test_padded_keys_never_shift_the_stabiliser(scale, causal):
    module = performer(chunk_size=4).eval()
    module.block_size = 8  # several key blocks in the non-causal stream
    x = inputs(scale, length=21)
    keep = torch.ones(2, 21, dtype=torch.bool)
    keep[0, 15:] = False
    keep[1, 3:6] = False
    poisoned = x.clone()
    poisoned[0, 15:] = 1e4  # a key this large would dominate any max it entered
    poisoned[1, 3:6] = float("nan")
    out = module(poisoned, mask=keep, is_causal=causal)
    assert torch.isfinite(out[0]).all()
    # row 0: its padded keys are its last ones, so its first 15 queries equal the short call
    short = module(x[:1, :15], is_causal=causal)
    assert_close(out[0, :15], short[0], atol=1e-5, rtol=1e-4)
    with attnzoo.viz.record_attention(module) as maps:  # the explicit path agrees
        explicit = module(poisoned, mask=keep, is_causal=causal)
    # a padded query's own row is whatever its input makes it (NaN here); real rows must agree
    if scale <= 16:  # beyond, features span more than float32 holds: the paths round apart
        tol = {"atol": 1e-5 * scale, "rtol": 1e-3}
        assert_close(explicit[0, :15], out[0, :15], **tol)
        assert_close(explicit[1][keep[1]], out[1][keep[1]], **tol)
    assert torch.isfinite(explicit[0, :15]).all()
    (weights,) = maps.values()  # (B, nh, L, S)
    assert weights[0, :, :15, 15:].eq(0).all() and weights[1][:, keep[1]][..., 3:6].eq(0).all()
    clean = module(x, mask=keep, is_causal=causal)  # what padded positions hold never matters
    assert torch.equal(out[0, :15], clean[0, :15]) and torch.equal(
        out[1][keep[1]], clean[1][keep[1]]
    )


@pytest.mark.parametrize("scale", [1.0, 16.0])
def test_rnn_decoding_equals_one_causal_call_at_large_scale(scale):
    module = performer(chunk_size=3).eval()
    x = inputs(scale, length=12)
    x[:, 7] *= 4  # a new running maximum mid-sequence: the state must rescale
    state = RecurrentState()
    with torch.no_grad():
        steps = [module(x[:, :5], is_causal=True, cache=state)]
        steps += [module(x[:, t : t + 1], is_causal=True, cache=state) for t in range(5, 12)]
        whole = module(x, is_causal=True)
    assert state.log_scale.shape == (2, HEADS, 1, 1)
    assert_close(torch.cat(steps, 1), whole, atol=1e-5, rtol=1e-4)


def test_reorder_keeps_the_log_scale_with_its_state():
    module = performer().eval()
    x = inputs(16.0, length=6)
    state = RecurrentState()
    with torch.no_grad():
        module(x, is_causal=True, cache=state)
        state.reorder(torch.tensor([1, 1, 0]))
        assert state.log_scale.shape == (3, HEADS, 1, 1)
        nxt = inputs(16.0, b=1, length=1, seed=3).expand(3, 1, DIM)
        out = module(nxt, is_causal=True, cache=state)
        full = module(torch.cat([x[[1, 1, 0]], nxt], 1), is_causal=True)[:, -1:]
    assert_close(out, full, atol=1e-5, rtol=1e-4)


def test_weights_with_log_scales_equal_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    phi_q = torch.rand(2, 2, 5, 7, generator=gen, dtype=torch.float64)
    phi_k = torch.rand(2, 2, 6, 7, generator=gen, dtype=torch.float64)
    log_k = 3 * torch.randn(2, 2, 6, 1, generator=gen, dtype=torch.float64)
    true_k = phi_k * log_k.exp()
    for causal in (False, True):
        expected = kernel_weights(phi_q, true_k, is_causal=causal)
        assert_close(kernel_weights(phi_q, phi_k, is_causal=causal, log_k=log_k), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_are_those_of_the_closed_form(causal):
    module = performer(nb_features=8, chunk_size=3).double().eval()
    module.block_size = 4
    x = inputs(2.0, b=1, length=7, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: module(t, is_causal=causal), (x,))


def test_decoding_in_training_with_redraw_is_refused():
    module = performer(redraw_interval=2).train()
    x = inputs(1.0, length=1)
    with pytest.raises(ValueError, match=r"redraw_interval=2.*eval\(\)"):
        module(x, is_causal=True, cache=RecurrentState())
    fixed = performer(redraw_interval=None).train()  # fixed features: decoding is sound
    state = RecurrentState()
    fixed(x, is_causal=True, cache=state)
    assert len(state) == 1
