"""Numerics away from the happy path: every input scale, and half precision.

- Scale scan: at input scales 1, 4, 16 and 64 the approximate mechanisms (linear, nystrom,
  reformer, routing, sinkhorn, synthesizer, aft, linformer; performer has its own file) return
  finite outputs that are their own float64 evaluation to float32 rounding — non-causal,
  causal and padded where they support it — so no stabiliser underflows or overflows. Where a
  mechanism approximates softmax attention with a resolution knob (Nyström landmarks), the error
  against softmax attention falls as the knob grows, at every scale where it is informative.
- Low precision (the "2x naive" rule): ``mha`` and the pattern mechanisms in float16 and
  bfloat16 are no further from a float64 reference than twice the naive method — dense
  ``softmax(q k^T / sqrt(d)) v`` with the same mask, computed in the same precision.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from test_patterns import PATTERNS

import attnzoo
from attnzoo import masks

DIM, HEADS, LENGTH = 32, 2, 32
SCALES = (1.0, 4.0, 16.0, 64.0)
APPROXIMATE = {
    "linear": {},
    "nystrom": {"num_landmarks": 8},
    "reformer": {"bucket_size": 8},
    "routing": {"num_clusters": 4},
    "sinkhorn": {"bucket_size": 8, "seq_len": LENGTH},
    "synthesizer": {"seq_len": LENGTH},
    "aft": {"seq_len": LENGTH},
    "linformer": {"seq_len": LENGTH, "k": 8},
}


def inputs(scale, *, batch=2, length=LENGTH, seed=1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, length, DIM, generator=gen, dtype=dtype)


def relative(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def calls(module):
    """(is_causal, mask) pairs the module supports: plain, causal, padded."""
    real = torch.ones(2, LENGTH, dtype=torch.bool)
    real[1, 20:] = False
    cases = [(False, None)]
    if module.supports_causal:
        cases.append((True, None))
    if module.supports_mask:
        cases.append((False, real))
    return cases


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(APPROXIMATE))
def test_float32_equals_float64_at_every_scale(name, scale):
    torch.manual_seed(0)
    module = attnzoo.create(name, DIM, num_heads=HEADS, **APPROXIMATE[name]).eval()
    x = inputs(scale)
    for is_causal, mask in calls(module):
        with torch.no_grad():
            torch.manual_seed(5)  # mechanisms that draw (reformer's hashes) draw alike
            low = module.float()(x, mask=mask, is_causal=is_causal)
            torch.manual_seed(5)
            high = module.double()(x.double(), mask=mask, is_causal=is_causal)
        assert torch.isfinite(low).all(), (name, scale, is_causal)
        assert relative(low, high) < 1e-4, (name, scale, is_causal, relative(low, high))


def softmax_twin(module):
    mha = attnzoo.create("mha", DIM, num_heads=HEADS).double().eval()
    names = ("q_proj", "k_proj", "v_proj", "out_proj")
    mha.load_state_dict({k: v for k, v in module.state_dict().items() if k.split(".")[0] in names})
    return mha


@pytest.mark.parametrize("scale", SCALES)
def test_nystrom_error_stays_bounded_and_vanishes_with_every_landmark(scale):
    errors = []
    for landmarks in (4, 8, 16, 32):  # 32 = L: every token its own landmark
        torch.manual_seed(0)
        module = attnzoo.create(
            "nystrom", DIM, num_heads=HEADS, num_landmarks=landmarks, conv_kernel_size=None
        )
        module = module.double().eval()  # default iterative pinv (6 iterations, as the paper)
        x = inputs(scale, dtype=torch.float64)
        with torch.no_grad():
            errors.append(relative(module(x), softmax_twin(module)(x)))
    # Nystrom weights may be negative: not a convex combination, but never an explosion
    assert all(math.isfinite(e) and e < 10 for e in errors), errors
    assert errors[-1] < 0.05, errors  # the iterative pinv is not exact
    if scale <= 4:  # where the low-rank view is informative, more landmarks help throughout
        assert all(a > b for a, b in itertools.pairwise(errors)), errors


def test_aft_causal_rows_far_below_later_keys_are_exact():
    torch.manual_seed(0)
    module = attnzoo.create("aft", DIM, num_heads=HEADS, mode="simple").eval()
    x = inputs(1.0)
    x[:, 20:] *= 500  # later keys hundreds of nats above the prefix
    with torch.no_grad():
        out = module(x, is_causal=True)
        q, k, v = module.q_proj(x).double(), module.k_proj(x).double(), module.v_proj(x).double()
    hidden = torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1)  # (L, S): later keys
    logits = k[:, None].expand(-1, LENGTH, -1, -1).masked_fill(hidden[None, :, :, None], -math.inf)
    mixed = torch.sigmoid(q) * (torch.softmax(logits, dim=2) * v[:, None]).sum(2)  # (B, L, D)
    want = module.double().out_proj(mixed)
    assert relative(out[:, :20], want[:, :20]) < 1e-5  # before: the prefix underflowed to 0
    assert relative(out, want) < 1e-5


# ----------------------------------------------------------------------------- 2x naive rule
def split_heads(module, linear, x):
    out = F.linear(x, linear.weight, linear.bias)  # (B, L, nh * hd)
    return out.view(*x.shape[:2], module.num_heads, -1).transpose(1, 2)  # (B, nh, L, hd)


def naive(module, x, allowed):
    """Dense masked softmax attention from the module's weights, in the dtype of ``x``."""
    q, k, v = (split_heads(module, p, x) for p in (module.q_proj, module.k_proj, module.v_proj))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, nh, L, S)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # (B, nh, L, hd)
    merged = out.transpose(1, 2).reshape(*x.shape[:2], -1)  # (B, L, C)
    return F.linear(merged, module.out_proj.weight, module.out_proj.bias)


LOW_PRECISION = {"mha": ({}, None)} | {
    name: (options, pattern) for name, (options, pattern, _, _) in PATTERNS.items()
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(LOW_PRECISION))
def test_half_precision_error_at_most_twice_the_naive_method(name, dtype):
    options, pattern = LOW_PRECISION[name]
    torch.manual_seed(0)
    module = attnzoo.create(name, 16, num_heads=2, **options).double().eval()
    length = 40
    x = torch.randn(2, length, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    if pattern is None:  # dense
        allowed = torch.ones(length, length, dtype=torch.bool)
    else:
        allowed = masks.materialize(pattern(length, length), length, length)  # (L, S)
    with torch.no_grad():
        exact = module(x)  # float64: the reference (equal to dense masked attention, tested)
        low_module = module.to(dtype)
        low = low_module(x.to(dtype))
        naive_low = naive(low_module, x.to(dtype), allowed)
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert relative(low, exact) <= 2 * relative(naive_low, exact), (name, dtype)


# ----------------------------------------------------------------------------- autocast
def _mixers():
    return attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")


@pytest.mark.parametrize("name", _mixers())
def test_autocast_gives_one_dtype_on_every_path(name):
    """Under ``torch.autocast`` every path of a mechanism returns the same dtype (no error)."""
    options = {"seq_len": 24} if getattr(attnzoo.info(name).obj, "fixed_length", False) else {}
    torch.manual_seed(0)
    module = attnzoo.create(name, DIM, num_heads=HEADS, **options).eval()
    x = inputs(1.0, length=24)
    real = torch.ones(2, 24, dtype=torch.bool)
    real[1, 18:] = False
    calls = [{}]
    if module.supports_causal:
        calls.append({"is_causal": True})
    if module.supports_mask:
        calls.append({"mask": real})
    dtypes = set()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for kwargs in calls:
            out = module(x, **kwargs)
            assert torch.isfinite(out).all(), (name, kwargs)
            dtypes.add(out.dtype)
    assert len(dtypes) == 1, (name, dtypes)
