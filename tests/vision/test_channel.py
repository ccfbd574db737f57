"""Channel attention modules: se, eca, gct, gsop, fca, srm, sk, split.

Known answers come from the papers (docs/vision.md cites them: parameter counts, ECA kernel
sizes, FcaNet frequencies) or are computed by hand / with independent torch code here.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
import attnzoo.vision.eca
import attnzoo.vision.fca
import attnzoo.vision.gct
import attnzoo.vision.gsop
import attnzoo.vision.se
import attnzoo.vision.sk
import attnzoo.vision.split
import attnzoo.vision.srm
from attnzoo.vision.eca import eca_kernel_size
from attnzoo.vision.fca import dct_filters, frequency_indices
from attnzoo.vision.gsop import covariance_pool
from timm_compat import import_timm_module

NAMES = ("se", "eca", "gct", "gsop", "fca", "srm", "sk", "split")
ND_NAMES = ("se", "eca", "gct", "srm")  # accept (B, C, L) and (B, C, D, H, W) too
GATE_01 = ("se", "eca", "gsop", "fca", "srm")  # out = x * g with g in (0, 1), constant in space


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_(module: nn.Module) -> nn.Module:
    """Random parameters and BN statistics, so that no test passes by a lucky init."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.running_mean.copy_(torch.rand(sub.running_mean.shape, generator=gen) - 0.5)
                sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=gen) + 0.5)
    return module


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s state into ``dst`` entry by entry (same order, same leaf names)."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b), (list(a), list(b))
    for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
        assert ka.rsplit(".", 1)[-1] == kb.rsplit(".", 1)[-1], (ka, kb)
        assert va.numel() == vb.numel(), (ka, kb)
        vb.copy_(va.reshape(vb.shape))


# ---------------------------------------------------------------- parameter counts (reference)


@pytest.mark.parametrize(
    ("name", "channels", "kwargs", "expected"),
    [
        ("se", 64, {}, 580),
        ("se", 256, {}, 8464),
        ("eca", 64, {}, 3),
        ("eca", 2048, {}, 7),
        ("gct", 64, {}, 192),
        ("gsop", 64, {"rd_channels": 32}, 14688),
        ("gsop", 256, {"rd_channels": 128}, 230784),
        ("fca", 64, {}, 512),
        ("srm", 64, {}, 256),  # not in the reference: cfc 2C + BN 2C, by hand
        ("sk", 64, {}, 8768),
        ("sk", 128, {}, 22080),
        ("split", 64, {}, 43488),
        ("split", 64, {"norm": False}, 43168),
    ],
)
def test_parameter_count(name, channels, kwargs, expected):
    assert n_params(attnzoo.create(name, channels, **kwargs)) == expected


def test_fca_dct_filter_is_a_buffer():
    fca = attnzoo.create("fca", 64)
    assert fca.dct_filter.shape == (64, 7, 7)
    assert "dct_filter" in fca.state_dict()
    assert all(p is not fca.dct_filter for p in fca.parameters())


def test_registry_entries():
    for name in NAMES:
        entry = attnzoo.info(name)
        assert entry.family == "vision"
        assert "channel" in entry.tags
        assert entry.paper.url.startswith("https://arxiv.org/abs/")


# ---------------------------------------------------------------- contract (own check)


def _inputs(name):
    shapes = [(2, 64, 9, 7), (2, 64, 1, 1)]
    if name in ND_NAMES:
        shapes += [(2, 64, 5), (2, 64, 3, 4, 5)]
    return shapes


@pytest.mark.parametrize("name", NAMES)
def test_shape_grad_determinism(name):
    module = attnzoo.create(name, 64)
    for shape in _inputs(name):
        module.train()
        x = torch.randn(shape)
        out = module(x)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
        module.zero_grad()
        out.square().sum().backward()
        for pname, p in module.named_parameters():
            assert p.grad is not None, (name, pname, shape)
            assert torch.isfinite(p.grad).all(), (name, pname, shape)
        module.eval()
        with torch.no_grad():
            torch.testing.assert_close(module(x), module(x), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("name", "param", "blocked"), [("gct", "gamma", "alpha"), ("srm", "cfc", "norm.weight")]
)
def test_blocked_gradient_flows_after_perturbation(name, param, blocked):
    module = attnzoo.create(name, 64)
    x = torch.randn(2, 64, 5, 4)
    module(x).square().sum().backward()
    grads = dict(module.named_parameters())
    assert torch.count_nonzero(grads[blocked].grad) == 0  # zero-initialised partner
    module.zero_grad()
    with torch.no_grad():
        grads[param].add_(0.3 * torch.randn_like(grads[param]))
    module(x).square().sum().backward()
    assert torch.count_nonzero(grads[blocked].grad) > 0


@pytest.mark.parametrize("name", ["gsop", "fca", "sk", "split"])
@pytest.mark.parametrize("shape", [(2, 64, 5), (2, 64, 3, 4, 5)])
def test_2d_only_modules_reject_other_ranks(name, shape):
    with pytest.raises(ValueError, match="x must be"):
        attnzoo.create(name, 64)(torch.randn(shape))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_channel_count(name):
    with pytest.raises(ValueError, match="64 channels"):
        attnzoo.create(name, 64)(torch.randn(2, 32, 7, 7))


@pytest.mark.parametrize("name", ND_NAMES)
def test_nd_inputs_agree_with_2d(name):
    """Pooling covers every spatial dim: (B, C, L) == (B, C, L, 1); (B, C, D, H, W) == merged."""
    module = randomize_(attnzoo.create(name, 64)).eval().double()
    x1 = torch.randn(2, 64, 6, dtype=torch.float64)
    torch.testing.assert_close(module(x1), module(x1.unsqueeze(-1)).squeeze(-1))
    x3 = torch.randn(2, 64, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(module(x3), module(x3.flatten(3)).view(2, 64, 3, 4, 5))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("se", {}, "hidden channels"),  # 8 channels with r = 16 -> 0 hidden
        ("fca", {"rd_channels": 2}, "divisible by the number of frequencies"),
        ("fca", {"rd_channels": 2, "freq_sel": "top3"}, "freq_sel"),
        ("fca", {"rd_channels": 2, "freq_sel": "top8", "dct_size": 8}, "multiple of 7"),
        ("eca", {"kernel_size": 4}, "kernel_size must be odd"),
        ("gct", {"mode": "l3"}, "mode"),
        ("sk", {}, "groups must divide"),  # groups 32 do not divide 8
        ("sk", {"groups": 8, "kernel_sizes": (3,)}, "at least 2"),
        ("sk", {"groups": 8, "kernel_sizes": (3, 4)}, "odd"),
        ("split", {"radix": 3}, "radix \\* cardinality"),
        ("split", {"kernel_size": 2}, "kernel_size must be odd"),
        ("gsop", {"rd_channels": 0}, "rd_channels"),
    ],
)
def test_bad_constructor_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        attnzoo.create(name, 8, **kwargs)


@pytest.mark.parametrize("name", GATE_01)
def test_gate_in_unit_interval_and_constant_over_space(name):
    module = randomize_(attnzoo.create(name, 64)).eval().double()
    x = torch.rand(2, 64, 6, 5, dtype=torch.float64) + 0.5  # positive: ratio is the gate
    gate = module(x) / x
    assert (gate > 0).all()
    assert (gate < 1).all()
    torch.testing.assert_close(gate, gate[..., :1, :1].expand_as(gate))


# ---------------------------------------------------------------- SE


def test_se_zero_fc2_gives_half():
    se = attnzoo.create("se", 64)
    with torch.no_grad():
        se.mlp.fc2.weight.zero_()
        se.mlp.fc2.bias.zero_()
    x = torch.randn(2, 64, 4, 3)
    torch.testing.assert_close(se(x), 0.5 * x, atol=0, rtol=0)


def test_se_matches_timm():
    timm_se = import_timm_module("timm.layers.squeeze_excite")
    ours = randomize_(attnzoo.create("se", 64)).double().eval()
    ref = timm_se.SEModule(64, rd_channels=4).double().eval()
    copy_by_order(ours, ref)
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


# ---------------------------------------------------------------- ECA


def test_eca_kernel_sizes():
    sizes = [eca_kernel_size(c) for c in (16, 32, 64, 128, 256, 512, 1024, 2048)]
    assert sizes == [3, 3, 3, 5, 5, 5, 5, 7]
    assert eca_kernel_size(2) == eca_kernel_size(4) == 1
    for c, k in ((64, 3), (128, 5), (2048, 7)):
        assert attnzoo.create("eca", c).kernel_size == k
    assert attnzoo.create("eca", 64, kernel_size=7).conv.weight.numel() == 7


def test_eca_hand_computed():
    eca = attnzoo.create("eca", 4, kernel_size=3).double()
    with torch.no_grad():
        eca.conv.weight.copy_(torch.tensor([[[0.1, 0.2, 0.3]]]))
    p = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    x = p.view(1, 4, 1, 1).expand(1, 4, 2, 3)
    # zero-padded cross-correlation of p with (0.1, 0.2, 0.3): by hand
    y = torch.tensor([0.8, 1.4, 2.0, 1.1], dtype=torch.float64)
    torch.testing.assert_close(eca(x), x * torch.sigmoid(y).view(1, 4, 1, 1))


def test_eca_gate_is_local():
    eca = randomize_(attnzoo.create("eca", 64)).double()  # k = 3
    pooled = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    x = pooled[..., None, None].expand(1, 64, 2, 2)
    gate = eca(x)[0, :, 0, 0] / pooled[0]
    jac = torch.stack(
        [torch.autograd.grad(gate[c], pooled, retain_graph=True)[0][0] for c in (10, 40)]
    )
    idx = torch.arange(64)
    for row, c in zip(jac, (10, 40), strict=True):
        assert torch.count_nonzero(row[(idx - c).abs() > 1]) == 0
        assert torch.count_nonzero(row[(idx - c).abs() == 1]) == 2


@pytest.mark.parametrize("channels", [64, 128, 2048])
def test_eca_matches_timm(channels):
    timm_eca = import_timm_module("timm.layers.eca")
    ours = randomize_(attnzoo.create("eca", channels)).double().eval()
    ref = timm_eca.EcaModule(channels).double().eval()
    copy_by_order(ours, ref)
    x = torch.randn(2, channels, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


# ---------------------------------------------------------------- GCT


@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (2, 64, 5), (2, 64, 2, 3, 4)])
@pytest.mark.parametrize("mode", ["l2", "l1"])
def test_gct_identity_at_init(shape, mode):
    x = torch.randn(shape)
    torch.testing.assert_close(attnzoo.create("gct", 64, mode=mode)(x), x, atol=0, rtol=0)


def test_gct_hand_computed():
    gct = attnzoo.create("gct", 2, eps=1e-12).double()
    with torch.no_grad():
        gct.gamma.fill_(1.0)
    x = torch.ones(1, 2, 2, 2, dtype=torch.float64)
    x[:, 1] = 2.0
    # s = sqrt(sum x^2) = (2, 4); s_hat = s / sqrt(mean(s^2)) = (2, 4) / sqrt(10)
    gate = 1 + torch.tanh(torch.tensor([2.0, 4.0], dtype=torch.float64) / math.sqrt(10))
    torch.testing.assert_close(gct(x), x * gate.view(1, 2, 1, 1))


@pytest.mark.parametrize("mode", ["l2", "l1"])
def test_gct_gate_range_and_homogeneity(mode):
    gct = attnzoo.create("gct", 64, mode=mode).double()
    with torch.no_grad():
        for p in gct.parameters():
            p.copy_(3 * torch.randn_like(p))
    x = torch.rand(2, 64, 5, 4, dtype=torch.float64) + 0.5
    gate = gct(x) / x
    assert (gate > 0).all()
    assert (gate < 2).all()
    torch.testing.assert_close(gct(7.0 * x), 7.0 * gct(x), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- GSoP


def test_covariance_pool_properties():
    z = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    cov = covariance_pool(z)
    expected = torch.stack([torch.cov(sample.flatten(1), correction=0) for sample in z])
    torch.testing.assert_close(cov, expected)
    torch.testing.assert_close(cov, cov.transpose(1, 2))
    assert (torch.linalg.eigvalsh(cov) > -1e-12).all()
    shifted = z + torch.randn(3, 6, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(covariance_pool(shifted), cov)


def test_gsop_matches_plain_reference():
    gsop = randomize_(attnzoo.create("gsop", 16, rd_channels=4)).double().eval()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)

    def bn(t, m, dim):  # eval-mode batch norm on dim 1, written out
        shape = [1] * t.dim()
        shape[dim] = -1
        scale = m.weight / torch.sqrt(m.running_var + m.eps)
        return (t - m.running_mean.view(shape)) * scale.view(shape) + m.bias.view(shape)

    conv = gsop.reduce.conv
    z = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x.relu())
    z = bn(z + conv.bias.view(1, -1, 1, 1), gsop.reduce.bn, 1).relu()
    cov = torch.stack([torch.cov(s.flatten(1), correction=0) for s in z])  # (B, d, d)
    cov = bn(cov, gsop.row_norm, 1)
    w = gsop.row_conv.weight.view(4, 4, 4)  # row i -> outputs 4i..4i+3, each a dot with row i
    rows = torch.einsum("ikj,bij->bik", w, cov).flatten(1) + gsop.row_conv.bias
    gate = torch.sigmoid(rows @ gsop.fc.weight[:, :, 0, 0].T + gsop.fc.bias)
    torch.testing.assert_close(gsop(x), x * gate[..., None, None])


# ---------------------------------------------------------------- FcaNet


def _dct_matrix(size: int) -> torch.Tensor:
    p = torch.arange(size, dtype=torch.float64)
    u = p[:, None]
    d = torch.cos(math.pi * u * (p[None, :] + 0.5) / size) * math.sqrt(2 / size)
    d[0] /= math.sqrt(2)
    return d  # (u, p): orthonormal DCT-II


def test_fca_top16_frequencies():
    u = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2]
    v = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2]
    assert frequency_indices("top16") == list(zip(u, v, strict=True))
    assert len(frequency_indices("low32")) == len(frequency_indices("bot32")) == 32


def test_dct_filters_orthonormal():
    pairs = [(u, v) for u in range(7) for v in range(7)]
    f = dct_filters(7, 7, pairs, 49).double().flatten(1)
    torch.testing.assert_close(f @ f.T, torch.eye(49, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(f[0], torch.full((49,), 1 / 7, dtype=torch.float64))


def test_fca_lowest_frequency_is_scaled_gap():
    fca = attnzoo.create("fca", 64, freq_sel="top1").double()
    x = torch.randn(2, 64, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(fca.pool(x), 7 * x.mean(dim=(2, 3)))


@pytest.mark.parametrize(("dct_size", "hw"), [(7, (9, 7)), (14, (14, 14))])
def test_fca_pool_matches_2d_dct(dct_size, hw):
    fca = attnzoo.create("fca", 64, dct_size=dct_size).double()
    x = torch.randn(2, 64, *hw, dtype=torch.float64)
    d = _dct_matrix(dct_size)
    spectrum = d @ F.adaptive_avg_pool2d(x, dct_size) @ d.T  # (B, C, u, v)
    scale = dct_size // 7
    expected = torch.stack(
        [spectrum[:, c, u * scale, v * scale] for c, (u, v) in enumerate(_per_channel_freqs())],
        dim=1,
    )
    torch.testing.assert_close(fca.pool(x), expected)


def _per_channel_freqs():
    return [f for f in frequency_indices("top16") for _ in range(4)]  # 64 channels / 16 groups


# ---------------------------------------------------------------- SRM


def test_srm_eval_init_is_half_and_hand_case():
    srm = attnzoo.create("srm", 2).double().eval()
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(srm(x), 0.5 * x, atol=0, rtol=0)
    with torch.no_grad():
        srm.cfc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # ch 0 <- mean, ch 1 <- std
    flat = x.flatten(2)
    z = torch.stack([flat[:, 0].mean(-1), (flat[:, 1].var(-1, unbiased=False) + 1e-5).sqrt()], 1)
    gate = torch.sigmoid(z / math.sqrt(1 + 1e-5))  # fresh BN statistics: mean 0, var 1
    torch.testing.assert_close(srm(x), x * gate[..., None, None])


# ---------------------------------------------------------------- SK and split attention


def _record_gate(module):
    seen = []
    module.attn.gate.register_forward_hook(lambda m, i, o: seen.append(o))
    return seen


@pytest.mark.parametrize(
    ("name", "kwargs", "branches"),
    [
        ("sk", {}, 2),
        ("sk", {"kernel_sizes": (3, 5, 7)}, 3),
        ("split", {}, 2),
        ("split", {"radix": 4, "cardinality": 2}, 4),
    ],
)
def test_branch_weights_sum_to_one(name, kwargs, branches):
    module = randomize_(attnzoo.create(name, 64, **kwargs))
    seen = _record_gate(module)
    module(torch.randn(2, 64, 6, 5))
    weights = seen[0]
    assert weights.shape == (2, branches, 64)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 64))
    assert (weights > 0).all()


def test_sk_identical_branches_and_zero_select():
    sk = randomize_(attnzoo.create("sk", 64, kernel_sizes=(3, 3))).double().eval()
    sk.branches[1].load_state_dict(sk.branches[0].state_dict())
    x = torch.randn(2, 64, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(sk(x), sk.branches[0](x))
    sk = randomize_(attnzoo.create("sk", 64)).double().eval()
    with torch.no_grad():
        sk.attn.fc2.weight.zero_()
    torch.testing.assert_close(sk(x), (sk.branches[0](x) + sk.branches[1](x)) / 2)


def test_split_radix_one_is_sigmoid_gate():
    splat = randomize_(attnzoo.create("split", 64, radix=1)).double().eval()
    logits, weights = [], []
    splat.attn.fc2.register_forward_hook(lambda m, i, o: logits.append(o))
    splat.attn.gate.register_forward_hook(lambda m, i, o: weights.append(o))
    x = torch.randn(2, 64, 6, 5, dtype=torch.float64)
    out = splat(x)
    torch.testing.assert_close(weights[0][:, 0], torch.sigmoid(logits[0].flatten(1)))
    torch.testing.assert_close(out, splat.conv(x) * weights[0][:, 0, :, None, None])


@pytest.mark.parametrize("channels", [64, 128])
def test_sk_matches_timm(channels):
    timm_sk = import_timm_module("timm.layers.selective_kernel")
    ours = randomize_(attnzoo.create("sk", channels)).double().eval()
    ref = timm_sk.SelectiveKernel(channels, groups=32, rd_channels=32, split_input=False)
    ref = ref.double().eval()
    copy_by_order(ours, ref)
    x = torch.randn(2, channels, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize(
    ("kwargs", "timm_kwargs"),
    [
        ({}, {"radix": 2}),
        ({"radix": 2, "cardinality": 2}, {"radix": 2, "groups": 2}),
        ({"radix": 4, "cardinality": 2}, {"radix": 4, "groups": 2}),
        ({"radix": 1}, {"radix": 1}),
    ],
)
def test_split_matches_timm(kwargs, timm_kwargs):
    timm_split = import_timm_module("timm.layers.split_attn")
    ours = randomize_(attnzoo.create("split", 64, **kwargs)).double().eval()
    ref = timm_split.SplitAttn(64, norm_layer=nn.BatchNorm2d, **timm_kwargs).double().eval()
    copy_by_order(ours, ref)
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
