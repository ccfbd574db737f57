"""synthesizer, mixer, fnet and aft: known answers, exactness regimes, modes and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import attnzoo
import attnzoo.efficient.aft
import attnzoo.efficient.fnet
import attnzoo.efficient.mixer
import attnzoo.efficient.synthesizer  # the imports register the four mechanisms
from attnzoo.functional import attention_reference
from timm_compat import import_timm_module

DIM, HEADS, HD = 16, 2, 8
F64 = torch.float64


def build(name: str, **kwargs) -> torch.nn.Module:
    return attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()


def rand(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def heads(t: torch.Tensor) -> torch.Tensor:
    """(B, L, nh * hd) -> (B, nh, L, hd)."""
    return t.view(t.shape[0], t.shape[1], HEADS, HD).transpose(1, 2)  # (B, nh, L, hd)


def merge(t: torch.Tensor) -> torch.Tensor:
    """(B, nh, L, hd) -> (B, L, nh * hd)."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], HEADS * HD)  # (B, L, nh * hd)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


# Every mode of every mechanism, for the contract properties beyond the registry defaults.
MODES = [
    ("synthesizer", {"mode": m, "seq_len": 9})
    for m in ("dense", "random", "factorized_dense", "factorized_random", "random+vanilla")
] + [
    ("synthesizer", {"mode": "dense+random+factorized_random", "seq_len": 9, "rank": 3}),
    ("aft", {"mode": "full", "seq_len": 9}),
    ("aft", {"mode": "simple"}),
    ("aft", {"mode": "local", "seq_len": 9, "local_window": 2}),
    ("mixer", {"seq_len": 9}),
    ("fnet", {}),
]
IDS = [f"{n}-{kw.get('mode', 'default')}" for n, kw in MODES]


def randomise_biases(module: torch.nn.Module) -> None:
    """AFT biases start at zero; give them values so that tests see them."""
    bias = getattr(module, "pos_bias", None)
    if bias is not None:
        with torch.no_grad():
            bias.copy_(rand(*bias.shape, seed=5))


@pytest.mark.parametrize(("name", "kwargs"), MODES, ids=IDS)
def test_every_mode_gradients_reach_every_parameter(name, kwargs):
    module = build(name, **kwargs).train()
    randomise_biases(module)
    x = rand(2, 7, DIM).requires_grad_(True)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize(("name", "kwargs"), MODES, ids=IDS)
def test_every_mode_causality_or_clear_error(name, kwargs):
    module = build(name, **kwargs)
    randomise_biases(module)
    x = rand(2, 7, DIM)
    if not module.supports_causal:
        with pytest.raises(NotImplementedError, match="is_causal"):
            module(x, is_causal=True)
        return
    out = module(x, is_causal=True)
    for t in (1, 4):
        changed = x.clone()
        changed[:, t:] = rand(2, 7 - t, DIM, seed=t)
        assert_close(module(changed, is_causal=True)[:, :t], out[:, :t])


@pytest.mark.parametrize(("name", "kwargs"), MODES, ids=IDS)
@pytest.mark.parametrize("is_causal", [False, True])
def test_every_mode_padding_content_invariance_and_dead_rows(name, kwargs, is_causal):
    module = build(name, **kwargs)
    randomise_biases(module)
    if is_causal and not module.supports_causal:
        return
    x = rand(2, 7, DIM)
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, 4:] = False
    out = module(x, mask=real, is_causal=is_causal)
    garbage = x.clone()
    garbage[1, 4:] = float("nan")  # NaN in padded tokens must not reach valid outputs
    assert_close(module(garbage, mask=real, is_causal=is_causal)[1, :4], out[1, :4])
    dead_x = rand(2, 7, DIM).requires_grad_(True)
    dead = module(dead_x, mask=torch.zeros(2, 7, dtype=torch.bool), is_causal=is_causal)
    dead.sum().backward()
    assert torch.isfinite(dead).all() and torch.isfinite(dead_x.grad).all()


@pytest.mark.parametrize(("name", "kwargs"), [m for m in MODES if m[0] != "fnet"], ids=IDS[:-1])
def test_fixed_length_slices_shorter_and_rejects_longer_inputs(name, kwargs):
    module = build(name, **kwargs)
    assert module(rand(1, 3, DIM)).shape == (1, 3, DIM)
    if module.seq_len is not None:
        with pytest.raises(ValueError, match="seq_len=9"):
            module(rand(1, 10, DIM))


@pytest.mark.parametrize("name", ["synthesizer", "mixer", "aft"])
def test_fixed_length_mechanisms_need_seq_len(name):
    with pytest.raises(ValueError, match="seq_len"):
        attnzoo.create(name, DIM, num_heads=HEADS)


@pytest.mark.parametrize("name", ["synthesizer", "mixer", "fnet", "aft"])
def test_cross_attention_and_per_query_masks_raise_where_unsupported(name):
    module = build(name, **({} if name == "fnet" else {"seq_len": 7}))
    with pytest.raises(NotImplementedError, match="cross"):
        module(rand(2, 7, DIM), rand(2, 5, DIM))
    per_query = torch.ones(2, 7, 7, dtype=torch.bool).tril()
    if name == "synthesizer":  # explicit weights: any mask is honoured
        assert torch.isfinite(module(rand(2, 7, DIM), mask=per_query)).all()
    else:
        with pytest.raises(NotImplementedError, match="padding"):
            module(rand(2, 7, DIM), mask=per_query)


# ----------------------------------------------------------------------------------------------
# synthesizer


def synthesizer_output(syn, x, logits, mask=None):
    """out_proj(softmax(logits + mask) V) written out by hand."""
    if mask is not None:
        logits = logits.masked_fill(~mask, -math.inf)
    weights = torch.softmax(logits, dim=-1)
    return syn.out_proj(merge(weights @ heads(syn.v_proj(x))))


def test_synthesizer_random_equals_softmax_r_v_and_slices_r():
    syn = build("synthesizer", mode="random", seq_len=7)
    r = rand(HEADS, 7, 7, seed=3) * 2
    with torch.no_grad():
        syn.synth["random"].logits.copy_(r)
    x = rand(2, 5, DIM)
    assert_close(syn(x), synthesizer_output(syn, x, r[None, :, :5, :5]))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert_close(syn(x, is_causal=True), synthesizer_output(syn, x, r[None, :, :5, :5], causal))
    with attnzoo.viz.record_attention(syn) as maps:
        syn(x)
    assert_close(maps[""], torch.softmax(r[:, :5, :5], -1).expand(2, HEADS, 5, 5))


def test_synthesizer_dense_equals_per_token_mlp():
    syn = build("synthesizer", mode="dense", seq_len=8)
    x = rand(2, 6, DIM)
    dense = syn.synth["dense"]
    hidden = heads(torch.relu(x @ dense.fc1.weight.T + dense.fc1.bias))  # (B, nh, L, hd)
    logits = torch.einsum("bhld,hdj->bhlj", hidden, dense.weight2[..., :6])
    logits = logits + dense.bias2[None, :, None, :6]
    assert_close(syn(x), synthesizer_output(syn, x, logits))
    # row i of the logits depends on token i only
    changed = x.clone()
    changed[:, 3] += 1.0
    with attnzoo.viz.record_attention(syn) as maps:
        syn(x)
        before = maps[""].clone()
        syn(changed)
    assert_close(maps[""][:, :, [0, 1, 2, 4, 5]], before[:, :, [0, 1, 2, 4, 5]])


def test_synthesizer_factorized_dense_composes_outer_product():
    syn = build("synthesizer", mode="factorized_dense", seq_len=7, factors=(2, 4))
    x = rand(1, 7, DIM)
    dense = syn.synth["factorized_dense"]
    hidden = heads(torch.relu(dense.fc1(x)))
    out = torch.einsum("bhld,hdj->bhlj", hidden, dense.weight2) + dense.bias2[None, :, None]
    a, b = out[..., :2], out[..., 2:]
    logits = torch.stack([a[..., j // 4] * b[..., j % 4] for j in range(7)], dim=-1)
    assert_close(syn(x), synthesizer_output(syn, x, logits))
    assert build("synthesizer", mode="factorized_dense", seq_len=7).factors == (3, 3)


def test_synthesizer_factorized_random_is_low_rank_product():
    syn = build("synthesizer", mode="factorized_random", seq_len=6, rank=2)
    r1, r2 = syn.synth["factorized_random"].factor1, syn.synth["factorized_random"].factor2
    assert r1.shape == (HEADS, 6, 2)
    x = rand(2, 4, DIM)
    logits = torch.einsum("hik,hjk->hij", r1[:, :4], r2[:, :4])[None]
    assert_close(syn(x), synthesizer_output(syn, x, logits))


@pytest.mark.parametrize("is_causal", [False, True])
def test_synthesizer_random_plus_vanilla_with_zero_r_is_scaled_dot_product(is_causal):
    syn = build("synthesizer", mode="random+vanilla", seq_len=7)
    with torch.no_grad():
        syn.synth["random"].logits.zero_()
        syn.mix_logits.copy_(torch.tensor([0.4, -0.3]))
    alpha = torch.softmax(torch.tensor([0.4, -0.3], dtype=F64), 0)[1]
    x = rand(2, 7, DIM)
    q, k, v = heads(syn.q_proj(x)), heads(syn.k_proj(x)), heads(syn.v_proj(x))
    ref = attention_reference(q, k, v, is_causal=is_causal, scale=float(alpha) / math.sqrt(HD))
    assert_close(syn(x, is_causal=is_causal), syn.out_proj(merge(ref)))


@pytest.mark.parametrize("mode", ["dense", "random", "factorized_dense", "dense+vanilla"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_synthesizer_unmasked_fast_path_equals_masked_reference_path(mode, is_causal):
    syn = build("synthesizer", mode=mode, seq_len=7)
    x = rand(2, 6, DIM)
    all_real = torch.ones(2, 6, dtype=torch.bool)  # takes the safe-softmax path of AttentionBase
    assert_close(syn(x, is_causal=is_causal), syn(x, mask=all_real, is_causal=is_causal))
    with attnzoo.viz.record_attention(syn):
        assert_close(syn(x, is_causal=is_causal), syn(x, mask=all_real, is_causal=is_causal))


def test_synthesizer_masks_and_fixed_random():
    syn = build("synthesizer", mode="random", seq_len=7)
    x = rand(2, 7, DIM)
    r = syn.synth["random"].logits[None]
    per_query = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(1)) > 0.4
    per_query[:, 0] = False  # a fully masked row gives exact zeros before out_proj
    out = syn(x, mask=per_query)
    want = synthesizer_output(syn, x, r.expand(2, -1, -1, -1), per_query[:, None])
    want[:, 0] = syn.out_proj.bias
    assert_close(out, want)
    bias = rand(2, 7, 7, seed=2)
    assert_close(syn(x, mask=bias), synthesizer_output(syn, x, r + bias[:, None]))
    fixed = build("synthesizer", mode="random", seq_len=7, trainable_random=False)
    names = dict(fixed.named_parameters())
    assert "synth.random.logits" not in names and "synth.random.logits" in fixed.state_dict()
    assert fixed.q_proj is None and fixed.k_proj is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "attention"}, ValueError, "mode"),
        ({"mode": "vanilla"}, ValueError, "mha"),
        ({"mode": "random+random"}, ValueError, "twice"),
        ({"mode": 3}, TypeError, "mode"),
        ({"mode": "factorized_dense", "factors": (2, 3)}, ValueError, "a \\* b"),
        ({"seq_len": 0}, ValueError, "seq_len"),
        ({"seq_len": 7.0}, TypeError, "seq_len"),
        ({"rank": 0}, ValueError, "rank"),
    ],
)
def test_synthesizer_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        attnzoo.create("synthesizer", DIM, **{"seq_len": 7, **kwargs})


# ----------------------------------------------------------------------------------------------
# mixer


def test_mixer_equals_transposed_mlp_and_timm_token_mlp():
    mixer = build("mixer", seq_len=7)
    assert mixer.token_hidden == DIM // 2
    x = rand(2, 7, DIM)
    want = mixer.fc2(F.gelu(mixer.fc1(x.transpose(1, 2)))).transpose(1, 2)
    assert_close(mixer(x), want)
    timm_mixer = import_timm_module("timm.models.mlp_mixer")
    block = timm_mixer.MixerBlock(DIM, 7).double().eval()  # default mlp_ratio=(0.5, 4.0)
    block.mlp_tokens.load_state_dict(
        {"fc1.weight": mixer.fc1.weight, "fc1.bias": mixer.fc1.bias}
        | {"fc2.weight": mixer.fc2.weight, "fc2.bias": mixer.fc2.bias}
    )
    assert_close(mixer(x), block.mlp_tokens(x.transpose(1, 2)).transpose(1, 2))


def test_mixer_shorter_input_equals_zero_padding_and_right_padding_is_invariant():
    mixer = build("mixer", seq_len=9)
    x = rand(1, 5, DIM)
    padded = torch.cat([x, torch.zeros(1, 4, DIM, dtype=F64)], dim=1)
    assert_close(mixer(x), mixer(padded)[:, :5])
    for length in (6, 9):  # any amount of right padding gives the unpadded outputs
        garbage = torch.cat([x, rand(1, length - 5, DIM, seed=length) * 1e3], dim=1)
        real = torch.arange(length)[None] < 5
        assert_close(mixer(garbage, mask=real)[:, :5], mixer(x))


def test_mixer_hidden_dropout_is_attn_drop_and_off_in_eval():
    mixer = build("mixer", seq_len=7, attn_drop=0.5, token_hidden=64)
    x = rand(2, 7, DIM)
    assert torch.equal(mixer(x), mixer(x))
    mixer.train()
    assert not torch.equal(mixer(x), mixer(x))


# ----------------------------------------------------------------------------------------------
# fnet


def test_fnet_hand_examples():
    assert not list(build("fnet").parameters())
    fnet = attnzoo.create("fnet", 4)
    delta = torch.zeros(1, 3, 4, dtype=F64)
    delta[0, 0, 0] = 1.0  # the DFT of a delta at the origin is all ones
    assert_close(fnet(delta), torch.ones(1, 3, 4, dtype=F64))
    ones = torch.ones(1, 3, 4, dtype=F64)  # the DFT of a constant sits at frequency (0, 0)
    want = torch.zeros(1, 3, 4, dtype=F64)
    want[0, 0, 0] = 12.0
    assert_close(fnet(ones), want)
    fnet = attnzoo.create("fnet", 2)
    shifted = torch.zeros(1, 4, 2, dtype=F64)
    shifted[0, 1, 0] = 1.0  # delta at l = 1: Re exp(-2 pi i k / 4) = cos(pi k / 2)
    col = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=F64)
    assert_close(fnet(shifted), col[None, :, None].expand(1, 4, 2))


@pytest.mark.parametrize("shape", [(2, 7, DIM), (1, 6, 5), (3, 1, DIM), (2, 5, 1)])
def test_fnet_equals_fftn_real_and_the_cosine_sine_formula(shape):
    fnet = attnzoo.create("fnet", shape[-1]).double()
    x = rand(*shape)
    assert_close(fnet(x), torch.fft.fftn(x, dim=(-2, -1)).real)
    length, channels = shape[1:]

    def cos_sin(n):
        angle = 2 * math.pi * torch.outer(torch.arange(n), torch.arange(n)).to(F64) / n
        return torch.cos(angle), torch.sin(angle)

    cl, sl = cos_sin(length)
    cc, sc = cos_sin(channels)
    assert_close(fnet(x), cl @ x @ cc - sl @ x @ sc)  # Re((C - iS) X (C - iS))


def test_fnet_padding_zeroes_tokens_and_depends_on_padded_length():
    fnet = build("fnet")
    x = rand(1, 6, DIM)
    real = torch.arange(6)[None] < 4
    zeroed = x.clone()
    zeroed[:, 4:] = 0.0
    assert_close(fnet(x, mask=real), fnet(zeroed))
    # documented: valid outputs change with the amount of padding (DFT length L)
    assert not torch.allclose(fnet(x, mask=real)[:, :4], fnet(x[:, :4]))
    with pytest.raises(NotImplementedError):
        fnet(x, mask=torch.zeros(1, 6, dtype=F64))  # float masks are not padding masks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fnet_half_inputs_run_in_float32(dtype):
    x = rand(2, 5, DIM)
    out = build("fnet")(x.to(dtype))
    assert out.dtype == dtype
    assert_close(out.double(), torch.fft.fft2(x).real, atol=0.2, rtol=2e-2)


# ----------------------------------------------------------------------------------------------
# aft


def aft_closed_form(aft, x, bias=None, keep=None, is_causal=False):
    """Paper Eq. 2 written per query: softmax over t' of K[t'] + w[t, t'] weights V, times sigma(Q).

    Mirrors the paper, not the module: a loop over queries, torch.softmax per channel.
    """
    q, k, v = aft.q_proj(x), aft.k_proj(x), aft.v_proj(x)
    length = x.shape[1]
    bias = torch.zeros(length, length, dtype=F64) if bias is None else bias
    rows = []
    for t in range(length):
        logits = k + bias[t][None, :, None]  # (B, S, D)
        visible = torch.ones(x.shape[0], length, dtype=torch.bool)
        if keep is not None:
            visible = visible & keep
        if is_causal:
            visible[:, t + 1 :] = False
        weights = torch.softmax(logits.masked_fill(~visible[..., None], -math.inf), dim=1)
        weights = torch.nan_to_num(weights)  # rows with nothing visible give 0
        rows.append(torch.sigmoid(q[:, t]) * (weights * v).sum(dim=1))
    return aft.out_proj(torch.stack(rows, dim=1))


@pytest.mark.parametrize("is_causal", [False, True])
def test_aft_simple_equals_closed_form(is_causal):
    aft = build("aft", mode="simple")
    x = rand(2, 6, DIM)
    assert_close(aft(x, is_causal=is_causal), aft_closed_form(aft, x, is_causal=is_causal))
    if not is_causal:  # the paper's AFT-simple form: sigmoid(Q_t) * sum_t' softmax(K)_t' V_t'
        context = (torch.softmax(aft.k_proj(x), dim=1) * aft.v_proj(x)).sum(1, keepdim=True)
        assert_close(aft(x), aft.out_proj(torch.sigmoid(aft.q_proj(x)) * context))


@pytest.mark.parametrize("is_causal", [False, True])
def test_aft_full_with_zero_biases_equals_simple_and_full_equals_closed_form(is_causal):
    full, simple = build("aft", seq_len=8), build("aft", mode="simple")
    simple.load_state_dict({k: v for k, v in full.state_dict().items() if k != "pos_bias"})
    x = rand(2, 6, DIM)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert_close(full(x, mask=keep, is_causal=is_causal), simple(x, mask=keep, is_causal=is_causal))
    randomise_biases(full)
    want = aft_closed_form(full, x, full.pos_bias[:6, :6], keep, is_causal)
    assert_close(full(x, mask=keep, is_causal=is_causal), want)


@pytest.mark.parametrize(
    ("length", "window", "is_causal", "padded"),
    [
        (7, 2, False, False),
        (9, 3, True, False),
        (40, 4, False, True),
        (70, 5, True, True),
        (6, 40, False, False),
        (33, 1, False, True),
        (70, 33, True, False),
    ],
)
def test_aft_local_fast_path_equals_closed_form(length, window, is_causal, padded):
    aft = build("aft", mode="local", seq_len=80, local_window=window)
    randomise_biases(aft)
    x = rand(2, length, DIM)
    keep = None
    if padded:
        keep = torch.ones(2, length, dtype=torch.bool)
        keep[1, length // 2 :] = False
    s = min(window, 80)
    offset = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # t' - t
    band = aft.pos_bias[:length].gather(1, (offset + s - 1).clamp(0, 2 * s - 2))
    bias = torch.where(offset.abs() < s, band, torch.zeros_like(band))  # 0 outside the window
    assert_close(
        aft(x, mask=keep, is_causal=is_causal), aft_closed_form(aft, x, bias, keep, is_causal)
    )


def test_aft_local_with_wide_window_equals_full_with_the_same_biases():
    local = build("aft", mode="local", seq_len=6, local_window=50)
    full = build("aft", mode="full", seq_len=6)
    randomise_biases(local)
    full.load_state_dict(local.state_dict() | {"pos_bias": full.pos_bias})
    offset = torch.arange(6)[None, :] - torch.arange(6)[:, None]
    with torch.no_grad():
        full.pos_bias.copy_(local.pos_bias.gather(1, offset + 5))
    x = rand(2, 6, DIM)
    assert_close(local(x), full(x))
    assert_close(local(x, is_causal=True), full(x, is_causal=True))


@pytest.mark.parametrize("mode", ["full", "simple", "local"])
def test_aft_is_stable_with_huge_keys(mode):
    aft = attnzoo.create("aft", DIM, num_heads=HEADS, mode=mode, seq_len=8, local_window=2)
    with torch.no_grad():
        aft.k_proj.weight.mul_(300.0)  # keys far beyond float32's exp range (~88)
        if mode != "simple":
            aft.pos_bias.copy_(rand(*aft.pos_bias.shape, seed=5) * 3)
    ref = build("aft", mode=mode, seq_len=8, local_window=2)
    ref.load_state_dict(aft.state_dict())
    x = rand(2, 8, DIM)
    bias = None if mode == "simple" else ref.dense_bias(8, False)
    out = aft(x.float())
    assert_close(out.double(), aft_closed_form(ref, x, bias), atol=1e-4, rtol=1e-3)
    # causal: documented limit - the key shift is shared by all queries, so early queries may
    # underflow to zero, but nothing is ever inf or NaN
    causal = aft(x.float(), is_causal=True)
    assert torch.isfinite(causal).all()


def test_aft_fully_padded_rows_are_exact_zeros_before_out_proj():
    for mode in ("full", "simple", "local"):
        aft = build("aft", mode=mode, seq_len=7, local_window=2)
        out = aft(rand(2, 7, DIM), mask=torch.zeros(2, 7, dtype=torch.bool))
        assert torch.equal(out, aft.out_proj.bias.expand(2, 7, DIM))


@pytest.mark.parametrize("mode", ["full", "simple", "local"])
def test_aft_probe_records_per_head_mean_weights(mode):
    aft = build("aft", mode=mode, seq_len=7, local_window=2)
    randomise_biases(aft)
    x = rand(2, 7, DIM)
    keep = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    with attnzoo.viz.record_attention(aft) as maps:
        recorded = aft(x, mask=keep, is_causal=True)
    assert_close(recorded, aft(x, mask=keep, is_causal=True))
    weights = maps[""]
    assert weights.shape == (2, HEADS, 7, 7)
    assert_close(weights.sum(-1), torch.ones(2, HEADS, 7, dtype=F64))
    assert torch.equal(weights[1, :, :, 5:], torch.zeros(HEADS, 7, 2, dtype=F64))
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))
    if mode == "simple":  # row t: mean over the head's channels of softmax over K[:t + 1]
        k = heads(aft.k_proj(x))[0]  # (nh, L, hd)
        t = 3
        assert_close(weights[0, :, t, : t + 1], torch.softmax(k[:, : t + 1], dim=1).mean(-1))


@pytest.mark.parametrize(("mode", "kwargs"), [("simple", {}), ("local", {"local_window": 4})])
def test_aft_simple_and_local_never_build_an_l_by_l_tensor(mode, kwargs):
    length = 512
    aft = attnzoo.create("aft", DIM, num_heads=HEADS, mode=mode, seq_len=length, **kwargs)
    x = torch.randn(1, length, DIM)
    for is_causal in (False, True):
        with torch.no_grad(), LargestTensor() as probe:
            aft(x, is_causal=is_causal)
        assert probe.largest < length * length // 4, probe.largest


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "conv"}, ValueError, "mode"),
        ({"mode": "full"}, ValueError, "seq_len"),
        ({"mode": "local", "seq_len": 8, "local_window": 0}, ValueError, "local_window"),
    ],
)
def test_aft_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        attnzoo.create("aft", DIM, **kwargs)


def test_aft_simple_takes_any_length_without_seq_len():
    aft = build("aft", mode="simple")
    assert aft.seq_len is None and not hasattr(aft, "pos_bias")
    assert aft(rand(1, 300, DIM)).shape == (1, 300, DIM)
