"""Self-attention vision modules: non_local, gc, dnl, ccnet, psa, outlook.

Known answers come from the papers (docs/vision.md cites them: parameter counts, identity at
init, bias invariances, CCNet reach, Outlook's 9c interior) or from independent float64 code
written here from the papers' equations; timm supplies reference implementations for non_local,
gc and outlook.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
import attnzoo.vision.ccnet
import attnzoo.vision.dnl
import attnzoo.vision.gc
import attnzoo.vision.non_local
import attnzoo.vision.outlook
import attnzoo.vision.psa
from attnzoo.viz import record_attention
from timm_compat import import_timm_module

NAMES = ("non_local", "gc", "dnl", "ccnet", "psa", "outlook")

# (name, options) covering every variant; C = 32 below.
CONFIGS = [
    ("non_local", {}),
    ("non_local", {"mode": "gaussian"}),
    ("non_local", {"mode": "dot_product"}),
    ("non_local", {"mode": "concatenation"}),
    ("non_local", {"sub_sample": True}),
    ("non_local", {"norm": False}),
    ("gc", {}),
    ("gc", {"pooling": "avg"}),
    ("gc", {"fusion": "mul"}),
    ("gc", {"fusion": "both"}),
    ("dnl", {}),
    ("dnl", {"norm": True}),
    ("ccnet", {}),
    ("ccnet", {"recurrence": 1}),
    ("psa", {}),
    ("psa", {"mode": "sequential"}),
    ("outlook", {}),
    ("outlook", {"stride": 2}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in CONFIGS]

# Parameters whose gradient is zero for every input (train mode): a softmax ignores a constant
# shift of its logits (phi / conv_mask / key / ch_wq biases), DNL's whitening removes the theta and
# phi biases, and train-mode BatchNorm removes any per-channel constant in front of it: the
# conv_out bias and, when the attention rows have a constant sum (softmax), the g bias.
ZERO_GRAD = {
    ("non_local", ()): {"phi.bias", "g.bias", "conv_out.bias"},
    ("non_local", (("mode", "gaussian"),)): {"g.bias", "conv_out.bias"},
    ("non_local", (("mode", "dot_product"),)): {"conv_out.bias"},
    ("non_local", (("mode", "concatenation"),)): {"conv_out.bias"},
    ("non_local", (("sub_sample", True),)): {"phi.bias", "g.bias", "conv_out.bias"},
    ("non_local", (("norm", False),)): {"phi.bias"},
    ("gc", ()): {"context_pool.conv_mask.bias"},
    ("gc", (("pooling", "avg"),)): set(),
    ("gc", (("fusion", "mul"),)): {"context_pool.conv_mask.bias"},
    ("gc", (("fusion", "both"),)): {"context_pool.conv_mask.bias"},
    ("dnl", ()): {"theta.bias", "phi.bias", "unary.conv_mask.bias"},
    ("dnl", (("norm", True),)): {
        "theta.bias",
        "phi.bias",
        "unary.conv_mask.bias",
        "g.bias",
        "conv_out.bias",
    },
    ("ccnet", ()): {"key_conv.bias"},
    ("ccnet", (("recurrence", 1),)): {"key_conv.bias"},
    ("psa", ()): {"ch_wq.bias"},
    ("psa", (("mode", "sequential"),)): {"ch_wq.bias"},
    ("outlook", ()): set(),
    ("outlook", (("stride", 2),)): set(),
}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_(module: nn.Module, seed: int = 1) -> nn.Module:
    """Random parameters and BN statistics, so that no test passes by a lucky (zero) init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.5)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.running_mean.copy_(torch.rand(sub.running_mean.shape, generator=gen) - 0.5)
                sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=gen) + 0.5)
    return module


def conv1x1(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Independent ``1x1`` convolution of ``(B, C, N)`` tokens with ``conv``'s weights."""
    weight = conv.weight.reshape(conv.weight.shape[0], -1)
    out = torch.einsum("oc,bcn->bon", weight, x)
    return out if conv.bias is None else out + conv.bias[None, :, None]


def bn_eval(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm on ``(B, C, N)`` from its definition."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean[None, :, None]) * scale[None, :, None] + bn.bias[None, :, None]


def softmax_ref(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = torch.exp(logits - logits.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


# ----------------------------------------------------------------------------------------------
# contract: shapes, gradients, determinism, bad input


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=IDS)
@pytest.mark.parametrize("size", [(9, 7), (1, 1)])
def test_shape_eval_determinism_no_nan(name, kwargs, size):
    module = randomize_(attnzoo.create(name, 32, **kwargs)).eval()
    x = torch.randn(2, 32, *size)
    first, second = module(x), module(x)
    assert first.shape == x.shape
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 32, 11), (2, 32, 3, 4, 5)])
def test_gc_accepts_1d_and_3d(shape):
    gc = randomize_(attnzoo.create("gc", 32, fusion="both"))
    x = torch.randn(*shape)
    assert gc(x).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_gradients_at_init_are_finite(name):
    module = attnzoo.create(name, 32).train()
    module(torch.randn(2, 32, 5, 4)).square().sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=IDS)
def test_every_parameter_learns_except_the_invariant_biases(name, kwargs):
    # Zero-initialised gates (BN gamma, conv_out, fc2, CCNet gamma) block the gradient at init;
    # after one perturbation every parameter gets a gradient except the documented invariants.
    module = randomize_(attnzoo.create(name, 32, **kwargs).double()).train()
    module(torch.randn(2, 32, 5, 4, dtype=torch.float64)).square().sum().backward()
    expected_zero = ZERO_GRAD[(name, tuple(sorted(kwargs.items())))]
    for pname, p in module.named_parameters():
        size = p.grad.abs().max().item()
        if pname in expected_zero:
            assert size < 1e-9, (pname, size)
        else:
            assert size > 1e-6, (pname, size)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_channels_and_rank_raise(name):
    module = attnzoo.create(name, 32)
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(2, 16, 5, 5))
    if name != "gc":  # gc also takes 1-D and 3-D maps
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            module(torch.randn(2, 32, 5))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("non_local", {"rd_ratio": 1 / 64}),  # 32 channels * 1/64 = 0 inner channels
        ("non_local", {"mode": "softmax"}),
        ("ccnet", {"rd_ratio": 1 / 64}),
        ("psa", {"mode": "both"}),
        ("gc", {"pooling": "max"}),
        ("gc", {"fusion": "concat"}),
        ("dnl", {"temperature": 0.0}),
        ("outlook", {"num_heads": 5}),
        ("ccnet", {"recurrence": 0}),
    ],
)
def test_bad_options_raise(name, kwargs):
    with pytest.raises(ValueError, match=r"must|hidden channels"):
        attnzoo.create(name, 32, **kwargs)


@pytest.mark.parametrize(
    ("name", "channels"), [("gc", 8), ("ccnet", 4), ("non_local", 1), ("dnl", 1), ("psa", 1)]
)
def test_channels_below_reduction_raise(name, channels):
    with pytest.raises(ValueError, match="hidden channels"):
        attnzoo.create(name, channels)


def test_outlook_window_count_mismatch_raises():
    oa = attnzoo.create("outlook", 32, kernel_size=2, padding=0)
    with pytest.raises(ValueError, match="padding"):
        oa(torch.randn(1, 32, 6, 6))


def test_non_bool_flag_raises():
    with pytest.raises(TypeError, match="use_scale"):
        attnzoo.create("non_local", 32, use_scale=1)


# ----------------------------------------------------------------------------------------------
# parameter counts (bold numbers of the reference) and identity at init


@pytest.mark.parametrize(
    ("name", "channels", "kwargs", "expected"),
    [
        ("non_local", 64, {}, 8480),  # paper / AlexHex7 / timm(rd 32): BN after W_z
        ("non_local", 64, {"norm": False}, 8352),  # mmcv NonLocal2d default
        ("gc", 64, {"rd_ratio": 1 / 4}, 2225),
        ("gc", 64, {}, 653),  # ratio 1/16, the paper default
        ("dnl", 64, {}, 8417),
        ("ccnet", 64, {}, 5201),
        ("psa", 64, {}, 8545),
        ("psa", 64, {"mode": "sequential"}, 8545),
        ("outlook", 64, {"num_heads": 2}, 18786),
        ("outlook", 64, {}, 18786),  # default: 32 channels per head
        ("outlook", 192, {"num_heads": 6}, 167718),  # VOLO-D1 stage 1
    ],
)
def test_parameter_counts(name, channels, kwargs, expected):
    assert n_params(attnzoo.create(name, channels, **kwargs)) == expected


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("non_local", {}),
        ("non_local", {"norm": False}),
        ("non_local", {"mode": "gaussian"}),
        ("non_local", {"mode": "dot_product"}),
        ("non_local", {"mode": "concatenation", "sub_sample": True}),
        ("gc", {}),
        ("gc", {"pooling": "avg"}),
        ("dnl", {}),
        ("dnl", {"norm": True}),
        ("ccnet", {}),
        ("ccnet", {"recurrence": 1}),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_identity_at_init(name, kwargs, train):
    module = attnzoo.create(name, 32, **kwargs).train(train)
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(module(x), x, rtol=0, atol=0)


def test_gc_mul_fusion_starts_at_half():
    gc = attnzoo.create("gc", 32, fusion="mul")
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(gc(x), x / 2, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# non-local


def non_local_reference(module, x, use_scale):
    """The paper's eqs. 1-6 in float64, from the module's weights (eval mode)."""
    b, c, h, w = x.shape
    tokens = x.flatten(2)  # (B, C, N)
    source = F.max_pool2d(x, 2, ceil_mode=True) if module.pool is not None else x
    src = source.flatten(2)
    g = conv1x1(module.g, src)
    if module.mode == "gaussian":
        theta, phi = tokens, src
    else:
        theta, phi = conv1x1(module.theta, tokens), conv1x1(module.phi, src)
    n = phi.shape[-1]
    if module.mode in ("embedded_gaussian", "gaussian"):
        scale = theta.shape[1] ** -0.5 if use_scale else 1.0
        f = torch.exp(torch.einsum("bdi,bdj->bij", theta, phi) * scale)
        weights = f / f.sum(-1, keepdim=True)
    elif module.mode == "dot_product":
        weights = torch.einsum("bdi,bdj->bij", theta, phi) / n
    else:
        pairs = torch.cat(
            [
                theta.transpose(1, 2)[:, :, None, :].expand(-1, -1, n, -1),
                phi.transpose(1, 2)[:, None, :, :].expand(-1, h * w, -1, -1),
            ],
            dim=-1,
        )  # (B, HW, N, 2d): [theta_i, phi_j]
        weights = torch.relu(pairs @ module.concat_project.weight.flatten()) / n
    y = torch.einsum("bij,bdj->bdi", weights, g)
    z = conv1x1(module.conv_out, y)
    if module.norm is not None:
        z = bn_eval(module.norm, z)
    return (tokens + z).reshape(b, c, h, w)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_scale": False},
        {"mode": "gaussian"},
        {"mode": "dot_product"},
        {"mode": "concatenation"},
        {"sub_sample": True},
        {"norm": False},
    ],
)
def test_non_local_matches_equations(kwargs):
    nl = randomize_(attnzoo.create("non_local", 16, **kwargs).double()).eval()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    expected = non_local_reference(nl, x, kwargs.get("use_scale", True))
    torch.testing.assert_close(nl(x), expected)  # fast path (SDPA in the softmax modes)
    with record_attention(nl) as maps:
        torch.testing.assert_close(nl(x), expected)  # reference path, weights recorded
    n_keys = 6 if kwargs.get("sub_sample") else 20
    assert maps[""].shape == (2, 1, 20, n_keys)
    if nl.mode in ("embedded_gaussian", "gaussian"):
        torch.testing.assert_close(maps[""].sum(-1), torch.ones(2, 1, 20, dtype=torch.float64))


def test_non_local_is_permutation_equivariant():
    nl = randomize_(attnzoo.create("non_local", 16).double()).eval()
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    perm = torch.randperm(20)
    shuffled = x.flatten(2)[..., perm].reshape(x.shape)
    torch.testing.assert_close(nl(shuffled), nl(x).flatten(2)[..., perm].reshape(x.shape))


def test_non_local_output_independent_of_phi_bias():
    nl = randomize_(attnzoo.create("non_local", 16).double()).eval()
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    before = nl(x)
    with torch.no_grad():
        nl.phi.bias.add_(3.0)
    torch.testing.assert_close(nl(x), before)
    with torch.no_grad():
        nl.theta.bias.add_(3.0)  # theta's bias does matter
    assert (nl(x) - before).abs().max() > 1e-3


def _timm_non_local(ours, use_scale):
    mod = import_timm_module("timm.layers.non_local_attn")
    ref = mod.NonLocalAttn(64, rd_channels=32, use_scale=use_scale)
    # timm scales by C**-0.5, attnzoo by (C/2)**-0.5: multiplying theta by sqrt(C / (C/2))
    # turns timm's logits into ours.
    factor = math.sqrt(2.0) if use_scale else 1.0
    with torch.no_grad():
        ref.t.weight.copy_(ours.theta.weight * factor)
        ref.t.bias.copy_(ours.theta.bias * factor)
        for dst, src in ((ref.p, ours.phi), (ref.g, ours.g), (ref.z, ours.conv_out)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    ref.norm.load_state_dict(ours.norm.state_dict())
    return ref.eval()


@pytest.mark.parametrize("use_scale", [False, True])
def test_non_local_matches_timm(use_scale):
    ours = randomize_(attnzoo.create("non_local", 64, use_scale=use_scale)).eval()
    ref = _timm_non_local(ours, use_scale)
    x = torch.randn(2, 64, 6, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# GC


def test_gc_matches_timm_add():
    mod = import_timm_module("timm.layers.global_context")
    ours = randomize_(attnzoo.create("gc", 64, rd_ratio=1 / 4)).eval()
    ref = mod.GlobalContext(64, fuse_add=True, fuse_scale=False, rd_ratio=1 / 4).eval()
    _copy_gc(ours, ref, ours.channel_add, ref.mlp_add)
    x = torch.randn(2, 64, 6, 5)
    # timm's LayerNorm2d eps is 1e-6, mmcv's and ours 1e-5: compare with equal eps
    ref.mlp_add.norm.eps = ours.channel_add.norm.eps
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_gc_matches_timm_mul():
    mod = import_timm_module("timm.layers.global_context")
    ours = randomize_(attnzoo.create("gc", 64, rd_ratio=1 / 4, fusion="mul")).eval()
    ref = mod.GlobalContext(64, fuse_add=False, fuse_scale=True, rd_ratio=1 / 4).eval()
    _copy_gc(ours, ref, ours.channel_mul, ref.mlp_scale)
    x = torch.randn(2, 64, 6, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)  # eps 1e-5 vs 1e-6


def _copy_gc(ours, ref, transform, mlp):
    with torch.no_grad():
        ref.conv_attn.weight.copy_(ours.context_pool.conv_mask.weight.reshape(1, 64, 1, 1))
        ref.conv_attn.bias.copy_(ours.context_pool.conv_mask.bias)
        for dst, src in ((mlp.fc1, transform.fc1), (mlp.fc2, transform.fc2)):
            dst.weight.copy_(src.weight.reshape(dst.weight.shape))
            dst.bias.copy_(src.bias)
        mlp.norm.weight.copy_(transform.norm.weight)
        mlp.norm.bias.copy_(transform.norm.bias)


def test_gc_context_is_convex_combination_and_shift_is_spatially_constant():
    gc = randomize_(attnzoo.create("gc", 16, rd_ratio=1 / 4).double())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    context = gc.context(x)
    assert (context <= x.amax(dim=(2, 3)) + 1e-12).all()
    assert (context >= x.amin(dim=(2, 3)) - 1e-12).all()
    delta = gc(x) - x
    torch.testing.assert_close(delta, delta[:, :, :1, :1].expand_as(delta))
    weights = softmax_ref(conv1x1(gc.context_pool.conv_mask, x.flatten(2)))  # (B, 1, N)
    torch.testing.assert_close(context, (x.flatten(2) * weights).sum(-1))


def test_gc_avg_pooling_is_the_mean():
    gc = randomize_(attnzoo.create("gc", 16, pooling="avg").double())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(gc.context(x), x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------
# DNL


def dnl_reference(module, x):
    """DNL from its definition, float64, eval mode."""
    b, c, h, w = x.shape
    tokens = x.flatten(2)
    q, k, g = (conv1x1(conv, tokens) for conv in (module.theta, module.phi, module.g))
    q = q - q.mean(-1, keepdim=True)
    k = k - k.mean(-1, keepdim=True)
    logits = torch.einsum("bdi,bdj->bij", q, k) / math.sqrt(q.shape[1]) / module.temperature
    pairwise = softmax_ref(logits)  # (B, N, N)
    unary = softmax_ref(conv1x1(module.unary.conv_mask, tokens))  # (B, 1, N)
    y = torch.einsum("bij,bdj->bdi", pairwise + unary, g)
    z = conv1x1(module.conv_out, y)
    if module.norm is not None:
        z = bn_eval(module.norm, z)
    return (tokens + z).reshape(b, c, h, w)


@pytest.mark.parametrize("norm", [False, True])
def test_dnl_matches_equations(norm):
    dnl = randomize_(attnzoo.create("dnl", 16, norm=norm).double()).eval()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    expected = dnl_reference(dnl, x)
    torch.testing.assert_close(dnl(x), expected)
    with record_attention(dnl) as maps:
        torch.testing.assert_close(dnl(x), expected)
    assert maps[""].shape == (2, 1, 20, 20)
    assert maps["unary"].shape == (2, 1, 1, 20)


def test_dnl_invariant_to_theta_phi_and_mask_biases():
    dnl = randomize_(attnzoo.create("dnl", 16).double()).eval()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    before = dnl(x)
    with torch.no_grad():
        for bias in (dnl.theta.bias, dnl.phi.bias, dnl.unary.conv_mask.bias):
            bias.add_(2.0)
    torch.testing.assert_close(dnl(x), before)
    with torch.no_grad():
        dnl.g.bias.add_(2.0)  # the value bias does matter
    assert (dnl(x) - before).abs().max() > 1e-3


def test_dnl_shares_the_non_local_implementation():
    assert issubclass(attnzoo.info("dnl").obj, attnzoo.info("non_local").obj)


# ----------------------------------------------------------------------------------------------
# CCNet


def ccnet_reference(module, x):
    """Brute force over pixels: one softmax over row and column, centre counted once."""
    b, c, h, w = x.shape
    for _ in range(module.recurrence):
        tokens = x.reshape(b, c, h * w)
        q, k, v = (
            conv1x1(conv, tokens).reshape(b, -1, h, w)
            for conv in (module.query_conv, module.key_conv, module.value_conv)
        )
        out = torch.zeros_like(x)
        for i in range(h):
            for j in range(w):
                cross = sorted({(r, j) for r in range(h)} | {(i, col) for col in range(w)})
                keys = torch.stack([k[:, :, r, col] for r, col in cross], dim=-1)  # (B, d, n)
                vals = torch.stack([v[:, :, r, col] for r, col in cross], dim=-1)  # (B, C, n)
                a = softmax_ref(torch.einsum("bd,bdn->bn", q[:, :, i, j], keys))
                out[:, :, i, j] = torch.einsum("bn,bcn->bc", a, vals)
        x = module.gamma * out + x
    return x


@pytest.mark.parametrize("recurrence", [1, 2])
def test_ccnet_matches_brute_force(recurrence):
    cca = randomize_(attnzoo.create("ccnet", 16, recurrence=recurrence).double())
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(cca(x), ccnet_reference(cca, x))


def test_ccnet_weights_count_the_centre_once():
    cca = randomize_(attnzoo.create("ccnet", 16, recurrence=1))
    with record_attention(cca) as maps:
        cca(torch.randn(2, 16, 3, 4))
    attn = maps[""].reshape(2, 3, 4, 7)  # (B, H, W, H + W): column then row
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 4))
    for i in range(3):
        assert (attn[:, i, :, i] == 0).all()  # the column copy of the centre
        assert (attn[:, i, :, 3:] > 0).all()  # the row, centre included


@pytest.mark.parametrize(("recurrence", "reached"), [(1, 6 + 7 - 1), (2, 6 * 7)])
def test_ccnet_reach(recurrence, reached):
    cca = randomize_(attnzoo.create("ccnet", 16, recurrence=recurrence).double())
    x = torch.randn(1, 16, 6, 7, dtype=torch.float64, requires_grad=True)
    cca(x)[0, :, 2, 3].sum().backward()
    influence = x.grad.abs().sum(dim=(0, 1))  # (H, W)
    assert int((influence > 0).sum()) == reached
    if recurrence == 1:
        cross = torch.zeros(6, 7, dtype=torch.bool)
        cross[2, :] = cross[:, 3] = True
        assert torch.equal(influence > 0, cross)


@pytest.mark.gpu
def test_ccnet_runs_on_cuda():
    cca = randomize_(attnzoo.create("ccnet", 16)).cuda()
    x = torch.randn(2, 16, 5, 4)
    torch.testing.assert_close(cca(x.cuda()).cpu(), cca.cpu()(x), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# PSA


def psa_gates(module, x):
    """Channel and spatial gates from the paper's equations, float64."""
    b, _, h, w = x.shape
    tokens = x.flatten(2)
    q = softmax_ref(conv1x1(module.ch_wq, tokens))  # (B, 1, N) over positions
    z = (conv1x1(module.ch_wv, tokens) * q).sum(-1, keepdim=True)  # (B, C/2, 1)
    z = conv1x1(module.ch_wz, z)[:, :, 0]  # (B, C)
    mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
    z = (z - mean) / torch.sqrt(var + module.ln.eps) * module.ln.weight + module.ln.bias
    channel = torch.sigmoid(z)[:, :, None, None]
    qs = softmax_ref(conv1x1(module.sp_wq, tokens).mean(-1))  # (B, C/2) over channels
    spatial = torch.sigmoid(torch.einsum("bc,bcn->bn", qs, conv1x1(module.sp_wv, tokens)))
    return channel, spatial.reshape(b, 1, h, w)


def test_psa_parallel_matches_equations_and_ranges():
    psa = randomize_(attnzoo.create("psa", 16).double())
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    channel, spatial = psa_gates(psa, x)
    out = psa(x)
    torch.testing.assert_close(out, channel * x + spatial * x)
    torch.testing.assert_close(psa.channel_gate(x), channel)
    torch.testing.assert_close(psa.spatial_gate(x), spatial)
    ratio = out / x
    assert ((ratio > 0) & (ratio < 2)).all()
    for gate in (channel, spatial):
        assert ((gate > 0) & (gate < 1)).all()


def test_psa_sequential_matches_equations_and_shrinks():
    psa = randomize_(attnzoo.create("psa", 16, mode="sequential").double())
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    channel, _ = psa_gates(psa, x)
    y = channel * x
    _, spatial = psa_gates(psa, y)
    out = psa(x)
    torch.testing.assert_close(out, spatial * y)
    assert (out.abs() < x.abs()).all()


def test_psa_invariant_to_ch_wq_bias():
    psa = randomize_(attnzoo.create("psa", 16).double())
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    before = psa(x)
    with torch.no_grad():
        psa.ch_wq.bias.add_(5.0)
    torch.testing.assert_close(psa(x), before)
    with record_attention(psa) as maps:
        psa(x)
    torch.testing.assert_close(maps[""].sum(-1), torch.ones(2, 1, 1, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# Outlook


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(9, 7), (6, 6)])
def test_outlook_matches_timm(stride, size):
    volo = import_timm_module("timm.models.volo")
    ours = randomize_(attnzoo.create("outlook", 64, num_heads=2, stride=stride)).eval()
    ref = volo.OutlookAttention(64, 2, kernel_size=3, padding=1, stride=stride).eval()
    with torch.no_grad():
        ref.v.weight.copy_(ours.v.weight[:, :, 0, 0])
        for name in ("attn", "proj"):
            getattr(ref, name).weight.copy_(getattr(ours, name).weight[:, :, 0, 0])
            getattr(ref, name).bias.copy_(getattr(ours, name).bias)
    x = torch.randn(2, 64, *size)
    expected = ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # timm is channels-last
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_outlook_identity_projections_sum_nine_windows():
    oa = randomize_(attnzoo.create("outlook", 16, num_heads=2).double())
    with torch.no_grad():
        eye = torch.eye(16, dtype=torch.float64)[:, :, None, None]
        oa.v.weight.copy_(eye)
        oa.proj.weight.copy_(eye)
        oa.proj.bias.zero_()
    x = torch.full((2, 16, 7, 8), 1.5, dtype=torch.float64)
    with record_attention(oa) as maps:
        out = oa(x)
    interior = out[:, :, 2:-2, 2:-2]
    torch.testing.assert_close(interior, torch.full_like(interior, 9 * 1.5))
    assert (out[:, :, 0, 0] < 9 * 1.5).all()  # zero padding lowers the corners
    assert maps[""].shape == (2, 2, 7 * 8 * 9, 9)
    torch.testing.assert_close(maps[""].sum(-1), torch.ones(2, 2, 7 * 8 * 9, dtype=torch.float64))
