"""Low-rank (linformer, nystrom) and kernel (linear, performer) attention.

Exactness regimes of issue 3, failure modes 33 (Linformer), 34 (Performer) and 36 (Nystromformer)
of docs/design.md section 10, the recurrent form of linear attention and the shared kernel core.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import attnzoo
import attnzoo.efficient.linear
import attnzoo.efficient.linformer
import attnzoo.efficient.nystrom
import attnzoo.efficient.performer  # registers the mechanisms
from attnzoo.efficient._kernel import RecurrentState, orthogonal_gaussian, softmax_kernel_features
from attnzoo.efficient.linformer import linformer_projection
from attnzoo.efficient.nystrom import iterative_pinv, segment_means
from attnzoo.functional.attention import attention_reference

DIM, HEADS = 16, 2
F64 = torch.float64


def build(name, **kwargs):
    torch.manual_seed(0)
    return attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()


def x_(b=2, length=9, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, length, DIM, generator=gen, dtype=F64)


def twin_mha(module):
    """Dense ``mha`` with the same q/k/v/out projections."""
    mha = attnzoo.create("mha", DIM, num_heads=HEADS).double().eval()
    names = ("q_proj", "k_proj", "v_proj", "out_proj")
    state = {k: v for k, v in module.state_dict().items() if k.split(".")[0] in names}
    mha.load_state_dict(state)
    return mha


def heads(module, x, context=None):
    return module.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2


def closed_form(phi_q, phi_k, v, causal_offset=None, keep=None):
    """Explicit normalised phi(q) phi(k)^T (with a bottom-right causal mask) times v."""
    scores = phi_q @ phi_k.transpose(-2, -1)
    length, keys = scores.shape[-2:]
    allowed = torch.ones(length, keys, dtype=torch.bool)
    if causal_offset is not None:
        i, j = torch.arange(length)[:, None], torch.arange(keys)[None, :]
        allowed = j <= i + causal_offset
    if keep is not None:
        allowed = allowed & keep[:, None, None, :]
    scores = torch.where(allowed, scores, 0.0)
    total = scores.sum(-1, keepdim=True)
    weights = torch.where(total > 0, scores / torch.where(total > 0, total, 1.0), 0.0)
    return weights @ v, weights


def elu1(t):
    return torch.where(t > 0, t + 1, torch.exp(t))  # elu(t) + 1, written independently


# --------------------------------------------------------------------------- linear
@pytest.mark.parametrize("causal", [False, True])
def test_linear_equals_closed_form(causal):
    module = build("linear", eps=0.0, chunk_size=4)  # 4 does not divide L = 9
    x = x_()
    q, k, v = heads(module, x)
    out, _ = closed_form(elu1(q), elu1(k), v, causal_offset=0 if causal else None)
    assert_close(module(x, is_causal=causal), module.finish(out, False))


@pytest.mark.parametrize("q_len", [3, 5, 8])
def test_linear_causal_cross_is_bottom_right(q_len):
    module = build("linear", eps=0.0, chunk_size=2)
    x, context = x_(length=q_len), x_(length=5, seed=1)
    q, k, v = heads(module, x, context)
    out, _ = closed_form(elu1(q), elu1(k), v, causal_offset=5 - q_len)
    got = module(x, context, is_causal=True)
    assert_close(got, module.finish(out, False))
    if q_len == 8:  # the first three queries see no key: exact zeros before out_proj
        assert torch.equal(got[:, :3], module.out_proj.bias.expand(2, 3, DIM))


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_linear_parallel_equals_recurrent_token_by_token(chunk_size):
    module = build("linear", chunk_size=chunk_size)
    x = x_(length=11)
    parallel = module(x, is_causal=True)
    state = RecurrentState()
    steps = [module(x[:, t : t + 1], is_causal=True, cache=state) for t in range(11)]
    assert_close(torch.cat(steps, dim=1), parallel)
    assert len(state) == 11 and state.state.shape == (2, HEADS, DIM // HEADS, DIM // HEADS + 1)
    state.reset()
    prefill = module(x[:, :4], is_causal=True, cache=state)  # prefill then decode
    rest = [module(x[:, t : t + 1], is_causal=True, cache=state) for t in range(4, 11)]
    assert_close(torch.cat([prefill, *rest], dim=1), parallel)


def test_linear_cache_misuse_is_a_clear_error():
    module = build("linear")
    with pytest.raises(ValueError, match="is_causal"):
        module(x_(), cache=RecurrentState())
    with pytest.raises(ValueError, match="context"):
        module(x_(), x_(), is_causal=True, cache=RecurrentState())
    with pytest.raises(TypeError, match="RecurrentState"):
        module(x_(), is_causal=True, cache={})


def test_linear_probe_records_the_normalised_kernel_matrix():
    module = build("linear", eps=0.0)
    x = x_()
    q, k, _ = heads(module, x)
    with attnzoo.viz.record_attention(module) as maps:
        module(x, is_causal=True)
    _, expected = closed_form(elu1(q), elu1(k), q, causal_offset=0)
    assert_close(maps[""], expected)
    assert_close(maps[""].sum(-1), torch.ones(2, HEADS, 9, dtype=F64))


# --------------------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("name", ["linear", "performer", "nystrom", "linformer"])
def test_nan_in_padding_does_not_leak(name):
    module = build(name, **({"seq_len": 9} if name == "linformer" else {}))
    x = x_()
    real = torch.ones(2, 9, dtype=torch.bool)
    real[1, 5:] = False
    clean = module(x, mask=real)
    poisoned = x.clone()
    poisoned[1, 5:] = float("nan")
    out = module(poisoned, mask=real)
    assert_close(out[1, :5], clean[1, :5])
    assert_close(out[0], clean[0])


@pytest.mark.parametrize("name", ["linear", "performer", "nystrom", "linformer"])
def test_fully_padded_sample_is_exact_zero_before_out_proj(name):
    module = build(name, **({"seq_len": 9} if name == "linformer" else {}))
    x = x_().requires_grad_(True)
    real = torch.ones(2, 9, dtype=torch.bool)
    real[0] = False
    out = module(x, mask=real)
    assert torch.equal(out[0], module.out_proj.bias.expand(9, DIM))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["linear", "performer", "nystrom", "linformer"])
def test_per_query_masks_and_causal_are_refused_where_impossible(name):
    module = build(name, **({"seq_len": 9} if name == "linformer" else {}))
    with pytest.raises(NotImplementedError):
        module(x_(), mask=torch.ones(2, 9, 9, dtype=torch.bool).tril())
    if not module.supports_causal:
        with pytest.raises(NotImplementedError):
            module(x_(), is_causal=True)


@pytest.mark.parametrize("name", ["linear", "performer", "nystrom"])
def test_single_key_returns_the_value(name):
    kwargs = {"conv_kernel_size": None} if name == "nystrom" else {}
    module = build(name, **kwargs)
    x = x_(length=1)
    _, _, v = heads(module, x)
    assert_close(module(x), module.finish(v, False))


@pytest.mark.parametrize("name", ["linear", "performer"])
def test_key_column_dropout_is_applied_once_and_unbiased(name):
    # one head, identity projections, one-hot values: the output is the dropped weight matrix
    module = attnzoo.create(name, 8, num_heads=1, attn_drop=0.5).double().train()
    with torch.no_grad():
        for proj in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
            proj.weight.copy_(torch.eye(8))
            proj.bias.zero_()
    x = torch.eye(8, dtype=F64).expand(400, 8, 8)
    if name == "performer":
        module.redraw_interval = None
    torch.manual_seed(1)
    out = module(x)
    assert abs((out == 0).double().mean().item() - 0.5) < 0.02  # twice would give 0.75
    assert_close(out.mean(0), module.eval()(x[:1])[0], atol=0.02, rtol=0)


# --------------------------------------------------------------------------- performer
def test_performer_positive_features_are_strictly_positive():
    w = orthogonal_gaussian(64, 8)
    for scale in (0.1, 1.0, 4.0):
        x = scale * torch.randn(3, 20, 8)
        assert (softmax_kernel_features(x, w) > 0).all()
        assert (softmax_kernel_features(x, w, normalise_rows=True) > 0).all()
    module = build("performer", nb_features=64)
    q, k, _ = heads(module, x_(scale=3.0))
    phi_q, phi_k = module.feature_maps(q, k)
    assert (phi_q > 0).all() and (phi_k > 0).all() and torch.isfinite(phi_k).all()


def test_performer_features_are_unbiased_for_exp_qk():
    torch.manual_seed(0)
    hd, draws = 8, 400
    q, k = 0.6 * torch.randn(4, hd, dtype=F64), 0.6 * torch.randn(4, hd, dtype=F64)
    estimates = torch.stack(
        [
            (
                softmax_kernel_features(q, w := orthogonal_gaussian(64, hd, dtype=F64))
                * softmax_kernel_features(k, w)
            ).sum(-1)
            for _ in range(draws)
        ]
    )  # (draws, 4)
    truth = torch.exp((q * k).sum(-1) / math.sqrt(hd))
    sem = estimates.std(0) / math.sqrt(draws)
    assert ((estimates.mean(0) - truth).abs() < 4 * sem).all()
    assert (sem < 0.05 * truth).all()  # the bound is tight enough to mean something


def test_performer_error_falls_as_nb_features_grows():
    x = x_(length=16, scale=0.5)
    errors = []
    for m in (8, 32, 128, 512):
        err = 0.0
        for seed in range(4):
            module = build("performer", nb_features=m)
            torch.manual_seed(100 + seed)
            module.redraw_features()
            reference = twin_mha(module)(x)
            err += (module(x) - reference).norm().item() / reference.norm().item()
        errors.append(err / 4)
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.35 * errors[0], errors


def test_performer_redraws_only_in_training_at_the_interval():
    module = build("performer", nb_features=16, redraw_interval=3)
    first = module.projection.clone()
    x = x_()
    assert torch.equal(module(x), module(x))  # eval: no redraw, identical
    assert module.calls_since_redraw == 0 and torch.equal(module.projection, first)
    module.train()
    for call in range(1, 4):
        module(x)
        assert module.calls_since_redraw == call and torch.equal(module.projection, first)
    module(x)  # the 4th training call redraws
    assert module.calls_since_redraw == 1 and not torch.equal(module.projection, first)
    fixed = build("performer", nb_features=16, redraw_interval=None).train()
    kept = fixed.projection.clone()
    for _ in range(5):
        fixed(x)
    assert torch.equal(fixed.projection, kept)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_performer_half_inputs_keep_features_in_float32(dtype):
    module = attnzoo.create("performer", DIM, num_heads=HEADS, nb_features=32).eval()
    reference = module(x_(scale=4.0).float())
    half = module.to(dtype)
    assert half.projection.dtype == torch.float32
    out = half(x_(scale=4.0).to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert_close(out.float(), reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("kernel", ["softmax", "relu"])
def test_performer_causal_parallel_equals_recurrent(kernel):
    module = build("performer", nb_features=32, kernel=kernel, chunk_size=3)
    x = x_(length=10)
    state = RecurrentState()
    steps = torch.cat([module(x[:, t : t + 1], is_causal=True, cache=state) for t in range(10)], 1)
    assert_close(steps, module(x, is_causal=True))


def test_performer_equals_closed_form_of_its_features():
    module = build("performer", nb_features=32)
    x = x_()
    q, k, v = heads(module, x)
    w = module.projection
    phi_q, phi_k = softmax_kernel_features(q, w), softmax_kernel_features(k, w)
    for causal in (False, True):
        out, _ = closed_form(phi_q, phi_k, v, causal_offset=0 if causal else None)
        assert_close(module(x, is_causal=causal), module.finish(out, False))


# --------------------------------------------------------------------------- linformer
@pytest.mark.parametrize("sharing", ["none", "headwise", "kv"])
def test_linformer_identity_projections_equal_dense(sharing):
    module = build("linformer", seq_len=9, k=9, sharing=sharing)
    with torch.no_grad():
        for proj in (module.proj_e, module.proj_f):
            if proj is not None:
                proj.copy_(torch.eye(9).expand_as(proj))
    x = x_()
    assert_close(module(x), twin_mha(module)(x))


def test_linformer_shorter_input_slices_the_projection():
    module = build("linformer", seq_len=12, k=4)
    x = x_(length=7)
    q, k, v = heads(module, x)
    e, f = module.proj_e[:7], module.proj_f[:7]
    k_low = torch.einsum("sk,bhsd->bhkd", e, k)
    v_low = torch.einsum("sk,bhsd->bhkd", f, v)
    expected = module.finish(attention_reference(q, k_low, v_low), False)
    assert_close(module(x), expected)


@pytest.mark.parametrize("sharing", ["none", "headwise", "kv"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cross", [False, True])
def test_linformer_equals_projecting_every_token_then_compressing(sharing, bias, cross):
    """The shared-projection path compresses the tokens before projecting them: same maths."""
    module = build("linformer", seq_len=12, k=5, sharing=sharing, qkv_bias=bias)
    x = x_(length=7).requires_grad_()
    context = x_(length=10, seed=1) if cross else None
    keys = 10 if cross else 7
    real = torch.arange(keys)[None, :] < torch.tensor([[keys], [4]])  # (2, S): sample 2 padded
    q, k, v = heads(module, x, context)
    gone = ~real[:, None, :, None]  # (B, 1, S, 1)
    k, v = k.masked_fill(gone, 0.0), v.masked_fill(gone, 0.0)
    e = module.proj_e[..., :keys, :]  # (S, k) or (nh, S, k)
    f = (module.proj_e if module.proj_f is None else module.proj_f)[..., :keys, :]
    spec = "sk,bhsd->bhkd" if e.dim() == 2 else "hsk,bhsd->bhkd"
    expected = module.finish(
        attention_reference(q, torch.einsum(spec, e, k), torch.einsum(spec, f, v)), False
    )
    out = module(x, context, mask=real)
    assert_close(out, expected)
    weights = torch.linspace(-1, 1, DIM, dtype=F64)
    grad = torch.autograd.grad((out * weights).sum(), x)[0]
    grad_ref = torch.autograd.grad((expected * weights).sum(), x)[0]
    assert_close(grad, grad_ref)


def test_linformer_longer_input_raises_naming_seq_len():
    module = build("linformer", seq_len=8, k=4)
    with pytest.raises(ValueError, match="seq_len"):
        module(x_(length=9))
    with pytest.raises(ValueError, match="seq_len"):
        module(x_(length=3), x_(length=9))


def test_linformer_valid_outputs_do_not_depend_on_the_amount_of_padding():
    module = build("linformer", seq_len=12, k=6)
    x = x_(b=1, length=5)
    alone = module(x)
    for total in (7, 12):
        padded = torch.cat([x, 1e3 * x_(b=1, length=total - 5, seed=3)], dim=1)
        real = torch.arange(total)[None, :] < 5
        assert_close(module(padded, mask=real)[:, :5], alone)


def test_linformer_sharing_modes_and_layerwise_parameter():
    assert build("linformer", seq_len=9, k=4, sharing="none").proj_e.shape == (HEADS, 9, 4)
    headwise = build("linformer", seq_len=9, k=4)
    assert headwise.proj_e.shape == headwise.proj_f.shape == (9, 4)
    assert build("linformer", seq_len=9, k=4, sharing="kv").proj_f is None
    assert build("linformer", seq_len=9).k == 9  # k = 256 clamped to seq_len
    shared = linformer_projection(9, 4)
    one, two = (
        attnzoo.create(
            "linformer",
            DIM,
            num_heads=HEADS,
            seq_len=9,
            k=4,
            sharing="layerwise",
            projection=shared,
        )
        for _ in range(2)
    )
    assert one.proj_e is two.proj_e is shared
    (two(one(torch.randn(1, 9, DIM)))).sum().backward()
    assert shared.grad is not None and shared.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layerwise"):
        attnzoo.create("linformer", DIM, seq_len=9, k=4, projection=shared)
    with pytest.raises(ValueError, match="layerwise"):
        attnzoo.create("linformer", DIM, seq_len=9, sharing="layerwise")


def test_linformer_dropout_is_applied_once():
    # one head, identity everything, one-hot inputs: the output is the dropped (L, k) weights
    module = attnzoo.create("linformer", 8, num_heads=1, seq_len=8, k=8, attn_drop=0.5)
    with torch.no_grad():
        for proj in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
            proj.weight.copy_(torch.eye(8))
            proj.bias.zero_()
        module.proj_e.copy_(torch.eye(8))
        module.proj_f.copy_(torch.eye(8))
    torch.manual_seed(1)
    out = module.train()(torch.eye(8).expand(400, 8, 8))
    assert abs((out == 0).float().mean().item() - 0.5) < 0.02  # twice would give 0.75


# --------------------------------------------------------------------------- nystrom
@pytest.mark.parametrize("padded", [False, True])
def test_nystrom_all_landmarks_exact_pinv_no_conv_equals_dense(padded):
    module = build("nystrom", num_landmarks=9, pinv_iterations=None, conv_kernel_size=None)
    x = x_()
    real = None
    if padded:
        real = torch.ones(2, 9, dtype=torch.bool)
        real[1, 6:] = False
    assert_close(module(x, mask=real), twin_mha(module)(x, mask=real))


def test_nystrom_more_landmarks_than_tokens_uses_every_token():
    x = x_(length=7)
    assert_close(build("nystrom")(x), build("nystrom", num_landmarks=7)(x))


@pytest.mark.parametrize(("length", "m"), [(9, 4), (10, 3), (12, 4)])
def test_segment_means_handle_lengths_not_divisible(length, m):
    x = torch.randn(2, 3, length, 5, dtype=F64)
    keep = torch.rand(2, length, generator=torch.Generator().manual_seed(0)) > 0.3
    keep[1, : length // 2 + 1] = False  # some segments hold only padding
    means, live = segment_means(x, m, keep)
    plain, none = segment_means(x, m, None)
    assert none is None
    for s in range(m):
        idx = [i for i in range(length) if i * m // length == s]
        assert_close(plain[:, :, s], x[:, :, idx].mean(2))
        for b in range(2):
            real = [i for i in idx if keep[b, i]]
            assert bool(live[b, s]) == bool(real)
            if real:
                assert_close(means[b, :, s], x[b, :, real].mean(1))


def test_nystrom_odd_lengths_and_dead_landmarks_give_no_nan():
    module = build("nystrom", num_landmarks=4)
    x = x_(length=10).requires_grad_(True)
    real = torch.ones(2, 10, dtype=torch.bool)
    real[1, 3:] = False  # three of the four segments of sample 1 hold only padding
    out = module(x, mask=real)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    garbage = x.detach().clone()
    garbage[1, 3:] = 1e4
    assert_close(module(garbage, mask=real)[1, :3], out[1, :3])


def test_iterative_pinv_converges_to_the_moore_penrose_inverse():
    a = torch.softmax(2 * torch.randn(3, 2, 8, 8, dtype=F64), dim=-1)
    assert_close(iterative_pinv(a, 30), torch.linalg.pinv(a))
    singular = a.clone()
    singular[..., -1, :] = 0  # a zero row keeps a zero column in the inverse
    assert_close(iterative_pinv(singular, 40), torch.linalg.pinv(singular), atol=1e-8, rtol=0)


def _global_init_pinv(a, iterations=6):  # the buggy original: one scale for the whole batch
    z = a.transpose(-2, -1) / a.sum(-2).max()
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def test_iterative_pinv_initialisation_is_per_matrix():
    tiny = torch.softmax(0.01 * torch.randn(1, 8, 8, dtype=F64), -1)
    large = torch.softmax(20 * torch.randn(1, 8, 8, dtype=F64), -1)
    batch = torch.cat([tiny, large])
    assert_close(iterative_pinv(batch), torch.cat([iterative_pinv(tiny), iterative_pinv(large)]))
    buggy = _global_init_pinv(batch)  # the scenario discriminates: the batch-wide init differs
    assert not torch.allclose(buggy[:1], _global_init_pinv(tiny), atol=1e-3)


def test_nystrom_small_and_large_scale_samples_match_running_alone(monkeypatch):
    # item 36: with a batch-wide pinv initialisation the large sample's column sums shrink
    # the small sample's start, and 6 iterations do not make up for it
    module = build("nystrom", num_landmarks=8, qkv_bias=False)
    small, large = x_(b=1, length=16), x_(b=1, length=16, seed=1, scale=30.0)
    together = module(torch.cat([small, large]))
    assert_close(together, torch.cat([module(small), module(large)]))

    def batch_wide(a, iterations=6):
        return _global_init_pinv(a.reshape(-1, *a.shape[-2:]), iterations).reshape(a.shape)

    monkeypatch.setattr(attnzoo.efficient.nystrom, "iterative_pinv", batch_wide)
    assert not torch.allclose(module(torch.cat([small, large]))[:1], together[:1], atol=1e-3)


def test_nystrom_conv_skip_is_a_depthwise_sequence_convolution():
    module = build("nystrom", num_landmarks=3, conv_kernel_size=5)
    x = x_()
    _, _, v = heads(module, x)
    weight = module.conv.weight[:, 0, :, 0]  # (nh, 5)
    padded = F.pad(v, (0, 0, 2, 2))
    conv = sum(weight[None, :, t, None, None] * padded[:, :, t : t + 9] for t in range(5))
    without = module.conv
    module.conv = None
    base = module(x)
    module.conv = without
    expected = base + F.linear(conv.transpose(1, 2).reshape(2, 9, DIM), module.out_proj.weight)
    assert_close(module(x), expected)
    with pytest.raises(ValueError, match="odd"):
        attnzoo.create("nystrom", DIM, conv_kernel_size=4)


def test_nystrom_refuses_cross_attention():
    with pytest.raises(NotImplementedError):
        build("nystrom")(x_(), x_(length=5))


def test_nystrom_recorded_weights_match_the_output():
    module = build("nystrom", num_landmarks=3, conv_kernel_size=None)
    x = x_()
    _, _, v = heads(module, x)
    with attnzoo.viz.record_attention(module) as maps:
        recorded_out = module(x)
    assert maps[""].shape == (2, HEADS, 9, 9)
    assert_close(module.finish(maps[""] @ v, False), recorded_out)
    assert_close(recorded_out, module(x))  # reference path == fused SDPA path
