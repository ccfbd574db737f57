"""Spatial and mixed vision modules: cbam, bam, simam, triplet, coord, gather_excite, a2, stn."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import attnzoo
import attnzoo.vision.a2
import attnzoo.vision.bam
import attnzoo.vision.cbam
import attnzoo.vision.coord
import attnzoo.vision.gather_excite
import attnzoo.vision.simam
import attnzoo.vision.stn
import attnzoo.vision.triplet
from timm_compat import import_timm_module

NAMES = ["cbam", "bam", "simam", "triplet", "coord", "gather_excite", "a2", "stn"]
SIGMOID_HALF = 1 / (1 + math.exp(-0.5))  # 0.6224593312018546


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_bn(module: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters for every batch norm."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def bn_eval(x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Eval-mode batch norm over dim 1, written out."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def gate_ref(x: torch.Tensor, conv_w: torch.Tensor, bn: nn.Module | None) -> torch.Tensor:
    """Z-pool gate ``x * sigmoid(BN(conv([max_c, mean_c])))`` written out."""
    pooled = torch.stack([x.max(dim=1).values, x.mean(dim=1)], dim=1)
    y = F.conv2d(pooled, conv_w, padding=conv_w.shape[-1] // 2)
    if bn is not None:
        y = bn_eval(y, bn)
    return x * torch.sigmoid(y)


# --------------------------------------------------------------------------- contract (own check)


def _inputs(module) -> list[torch.Tensor]:
    c = module.channels
    shapes = {1: [(2, c, 9), (2, c, 1)], 2: [(2, c, 9, 7), (2, c, 1, 1)]}
    shapes[3] = [(2, c, 3, 5, 4), (2, c, 1, 1, 1)]
    return [torch.randn(s) for d in module.spatial_dims for s in shapes[d]]


@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_grad_determinism(name):
    module = attnzoo.create(name, 16 if name != "stn" else 3)
    assert attnzoo.info(name).family == "vision"
    for x in _inputs(module):
        module.train()
        x.requires_grad_(True)
        out = module(x)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
        module.zero_grad()
        out.square().sum().backward()
        assert torch.isfinite(x.grad).all()
        for pname, p in module.named_parameters():
            assert p.grad is not None, pname
            assert torch.isfinite(p.grad).all(), pname
        module.eval()
        with torch.no_grad():
            assert torch.equal(module(x), module(x))


@pytest.mark.parametrize("name", ["cbam", "bam", "triplet", "coord", "stn"])
def test_2d_only_modules_reject_other_ranks(name):
    module = attnzoo.create(name, 16)
    with pytest.raises(ValueError, match="x must be"):
        module(torch.randn(2, 16, 9))
    with pytest.raises(ValueError, match="x must be"):
        module(torch.randn(2, 16, 3, 4, 5))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_channel_count_raises(name):
    module = attnzoo.create(name, 16)
    with pytest.raises(ValueError, match="16 channels"):
        module(torch.randn(2, 8, 5, 5))


@pytest.mark.parametrize("name", ["cbam", "bam"])
def test_channels_below_reduction_raise(name):
    with pytest.raises(ValueError, match="hidden channels"):
        attnzoo.create(name, 8)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        attnzoo.create("cbam", 64, kernel_size=6)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        attnzoo.create("triplet", 64, kernel_size=4)
    with pytest.raises(ValueError, match="fusion"):
        attnzoo.create("bam", 64, fusion="max")
    with pytest.raises(ValueError, match="e_lambda"):
        attnzoo.create("simam", 64, e_lambda=0.0)
    with pytest.raises(ValueError, match="power of two"):
        attnzoo.create("gather_excite", 64, extent=3, extra_params=True)
    with pytest.raises(ValueError, match="feat_size"):
        attnzoo.create("gather_excite", 64, extra_params=True)
    with pytest.raises(ValueError, match="feat_size"):
        attnzoo.create("gather_excite", 64, feat_size=7)
    with pytest.raises(ValueError, match="loc_padding"):
        attnzoo.create("stn", 3, loc_padding="full")
    ge = attnzoo.create("gather_excite", 8, extra_params=True, feat_size=(9, 7))
    with pytest.raises(ValueError, match="feat_size"):
        ge(torch.randn(2, 8, 7, 9))
    with pytest.raises(ValueError, match="x must be"):
        ge(torch.randn(2, 8, 9))


# --------------------------------------------------------------------------- parameter counts


def test_reference_parameter_counts():
    assert n_params(attnzoo.create("cbam", 64)) == 680
    assert n_params(attnzoo.create("cbam", 64, mlp_bias=False, spatial_norm=False)) == 610
    assert n_params(attnzoo.create("simam", 64)) == 0
    for c in (4, 64, 256):
        assert n_params(attnzoo.create("triplet", c)) == 300
    assert n_params(attnzoo.create("triplet", 64, no_spatial=True)) == 200
    assert n_params(attnzoo.create("coord", 64)) == 1688
    assert n_params(attnzoo.create("gather_excite", 64)) == 0
    assert n_params(attnzoo.create("gather_excite", 64, extent=4)) == 0
    assert n_params(attnzoo.create("a2", 64, rd_channels=16, num_descriptors=16)) == 4208
    assert n_params(attnzoo.create("a2", 64, rd_channels=32, num_descriptors=32)) == 8352
    assert n_params(attnzoo.create("stn", 1)) == 5520


def test_bam_parameter_counts_by_hand():
    # channel: fc1 64*4+4, BN1d(4) 8, fc2 4*64+64 -> 588; spatial: 1x1 64*4+4, BN 8,
    # 2 x (3x3 4*4*9+4, BN 8), 1x1 4+1 -> 585; paper form adds BN1d(64) 128 + BN2d(1) 2.
    assert n_params(attnzoo.create("bam", 64, branch_norm=False, fusion="product")) == 1173
    assert n_params(attnzoo.create("bam", 64)) == 1173 + 130


def test_coord_and_gather_excite_widths():
    # official mip = max(8, C // 32)
    assert attnzoo.create("coord", 16).conv1.out_channels == 8
    assert attnzoo.create("coord", 512).conv1.out_channels == 16
    assert attnzoo.create("coord", 1024).conv1.out_channels == 32
    # GE-theta: global depthwise kernel C*H*W + BN 2C; extent 4: 2 x (9C + 2C); theta+ adds SE MLP
    assert n_params(attnzoo.create("gather_excite", 64, extra_params=True, feat_size=(9, 7))) == (
        64 * 63 + 128
    )
    assert n_params(attnzoo.create("gather_excite", 64, extent=4, extra_params=True)) == 1408
    ge_plus = attnzoo.create("gather_excite", 64, extent=4, extra_params=True, use_mlp=True)
    assert n_params(ge_plus) == 1408 + 580


# --------------------------------------------------------------------------- CBAM


def test_cbam_matches_timm():
    cbam_mod = import_timm_module("timm.layers.cbam")
    ours = attnzoo.create("cbam", 64)
    theirs = cbam_mod.CbamModule(64, mlp_bias=True)
    randomise_bn(ours)
    with torch.no_grad():
        theirs.channel.fc1.weight.copy_(ours.mlp.fc1.weight.view(4, 64, 1, 1))
        theirs.channel.fc1.bias.copy_(ours.mlp.fc1.bias)
        theirs.channel.fc2.weight.copy_(ours.mlp.fc2.weight.view(64, 4, 1, 1))
        theirs.channel.fc2.bias.copy_(ours.mlp.fc2.bias)
        # timm pools [mean, max], the official code (and we) [max, mean]
        theirs.spatial.conv.conv.weight.copy_(ours.spatial.conv.weight.flip(1))
    theirs.spatial.conv.bn.load_state_dict(ours.spatial.bn.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 64, 9, 7)
    assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("official", [True, False])
def test_cbam_matches_written_out_maths(official):
    cbam = attnzoo.create("cbam", 32, mlp_bias=official, spatial_norm=official).double()
    randomise_bn(cbam)
    cbam.eval()
    x = torch.randn(2, 32, 6, 11, dtype=torch.float64)
    w1, w2 = cbam.mlp.fc1.weight, cbam.mlp.fc2.weight
    b1 = cbam.mlp.fc1.bias if official else None
    b2 = cbam.mlp.fc2.bias if official else None

    def mlp(z):
        return F.linear(F.relu(F.linear(z, w1, b1)), w2, b2)

    mc = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    x1 = x * mc[:, :, None, None]
    expected = gate_ref(x1, cbam.spatial.conv.weight, cbam.spatial.bn if official else None)
    assert_close(cbam(x), expected)


def test_cbam_shrinks_and_keeps_sign():
    cbam = attnzoo.create("cbam", 64).double()
    randomise_bn(cbam)
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64)
    for mode in (cbam.train, cbam.eval):
        mode()
        out = cbam(x)
        ratio = out / x
        assert (ratio > 0).all()
        assert (ratio < 1).all()


# --------------------------------------------------------------------------- BAM


@pytest.mark.parametrize(("branch_norm", "fusion"), [(True, "sum"), (False, "product")])
def test_bam_matches_written_out_maths(branch_norm, fusion):
    bam = attnzoo.create("bam", 32, branch_norm=branch_norm, fusion=fusion).double()
    randomise_bn(bam)
    bam.eval()
    x = torch.randn(2, 32, 5, 11, dtype=torch.float64)  # H != W
    cm = bam.channel_mlp
    mc = F.linear(
        F.relu(bn_eval(F.linear(x.mean((2, 3)), cm.fc1.weight, cm.fc1.bias), cm.bn)),
        cm.fc2.weight,
        cm.fc2.bias,
    )
    if branch_norm:
        mc = bn_eval(mc, bam.channel_norm)
    sc = bam.spatial_convs
    s = F.relu(bn_eval(F.conv2d(x, sc.reduce.conv.weight, sc.reduce.conv.bias), sc.reduce.bn))
    for block in (sc.dilated0, sc.dilated1):
        s = F.conv2d(s, block.conv.weight, block.conv.bias, padding=4, dilation=4)
        s = F.relu(bn_eval(s, block.bn))
    ms = F.conv2d(s, sc.final.weight, sc.final.bias)
    if branch_norm:
        ms = bn_eval(ms, bam.spatial_norm)
    mc = mc[:, :, None, None]
    att = torch.sigmoid(mc + ms if fusion == "sum" else mc * ms)
    assert_close(bam(x), x * (1 + att))


def test_bam_ratio_between_one_and_two():
    bam = attnzoo.create("bam", 64).double()
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64)
    ratio = bam(x) / x
    assert (ratio > 1).all()
    assert (ratio < 2).all()


# --------------------------------------------------------------------------- SimAM


def test_simam_matches_energy_formula():
    simam = attnzoo.create("simam", 3)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    lam = 1e-4
    expected = torch.empty_like(x)
    for b in range(2):
        for c in range(3):
            t = x[b, c]
            mu = t.mean()
            var = ((t - mu) ** 2).sum() / (t.numel() - 1)
            energy = 4 * (var + lam) / ((t - mu) ** 2 + 2 * var + 2 * lam)  # paper eq. 16
            expected[b, c] = t * torch.sigmoid(1 / energy)
    assert_close(simam(x), expected)


def test_simam_gate_range_constant_input_and_single_pixel():
    simam = attnzoo.create("simam", 8)
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    gate = simam(x) / x
    assert (gate >= SIGMOID_HALF - 1e-12).all()
    assert (gate < 1).all()
    const = torch.randn(2, 8, 1, 1, dtype=torch.float64).expand(2, 8, 5, 6)
    assert_close(simam(const), SIGMOID_HALF * const)
    one = torch.randn(2, 8, 1, 1, dtype=torch.float64)
    assert_close(simam(one), SIGMOID_HALF * one)


def test_simam_rank_independent_and_permutation_equivariant():
    simam = attnzoo.create("simam", 4)
    x = torch.randn(2, 4, 3, 5, 6, dtype=torch.float64)
    flat = simam(x.reshape(2, 4, 15, 6)).reshape(2, 4, 3, 5, 6)
    assert_close(simam(x), flat)
    assert_close(simam(x.reshape(2, 4, 90)), flat.reshape(2, 4, 90))
    perm = torch.randperm(90)
    y = x.reshape(2, 4, 90)
    assert_close(simam(y[..., perm]), simam(y)[..., perm])


# --------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("no_spatial", [False, True])
def test_triplet_matches_official_maths(no_spatial):
    triplet = attnzoo.create("triplet", 6, no_spatial=no_spatial).double()
    randomise_bn(triplet)
    triplet.eval()
    x = torch.randn(2, 6, 5, 8, dtype=torch.float64)
    g_cw = gate_ref(x.transpose(1, 2), triplet.cw.conv.weight, triplet.cw.bn).transpose(1, 2)
    g_hc = gate_ref(x.transpose(1, 3), triplet.hc.conv.weight, triplet.hc.bn).transpose(1, 3)
    if no_spatial:
        expected = (g_cw + g_hc) / 2
    else:
        expected = (g_cw + g_hc + gate_ref(x, triplet.hw.conv.weight, triplet.hw.bn)) / 3
    assert_close(triplet(x), expected)


def test_triplet_shrinks():
    triplet = attnzoo.create("triplet", 16).double()
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    ratio = triplet(x) / x
    assert (ratio > 0).all()
    assert (ratio < 1).all()


# --------------------------------------------------------------------------- coordinate attention


def test_coord_matches_timm():
    coord_mod = import_timm_module("timm.layers.coord_attn")
    ours = attnzoo.create("coord", 64)
    randomise_bn(ours)
    theirs = coord_mod.CoordAttn(64, bias=True)
    theirs.load_state_dict(ours.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 64, 9, 7)
    assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_coord_ratio_is_rank_one_per_channel():
    coord = attnzoo.create("coord", 32).double()
    randomise_bn(coord)
    x = torch.randn(2, 32, 9, 7, dtype=torch.float64)
    for mode in (coord.train, coord.eval):
        mode()
        ratio = coord(x) / x
        assert ((ratio > 0) & (ratio < 1)).all()
        sv = torch.linalg.svdvals(ratio)  # (B, C, min(H, W))
        assert (sv[..., 1] <= 1e-10 * sv[..., 0]).all()


# --------------------------------------------------------------------------- gather-excite


@pytest.mark.parametrize("extent", [0, 2, 4, 8])
@pytest.mark.parametrize("size", [(9, 7), (16, 16)])
def test_gather_excite_matches_timm(extent, size):
    ge_mod = import_timm_module("timm.layers.gather_excite")
    ours = attnzoo.create("gather_excite", 8, extent=extent)
    theirs = ge_mod.GatherExcite(8, use_mlp=False, extent=extent)
    x = torch.randn(2, 8, *size)
    assert_close(ours(x), theirs(x))


def test_gather_excite_gate_range_and_structure():
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    ratio = attnzoo.create("gather_excite", 16)(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))  # global: constant over space
    # learned extent-2 gather: 4x4 map, nearest-upsampled back -> constant on 2x2 blocks
    ge = attnzoo.create("gather_excite", 16, extent=2, extra_params=True, use_mlp=True).double()
    ratio = ge(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    blocks = ratio.unflatten(2, (4, 2)).unflatten(4, (4, 2))  # (B, C, 4, 2, 4, 2)
    assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert not torch.allclose(blocks[:, :, 0, 0, 0, 0], blocks[:, :, 1, 0, 1, 0])


def test_gather_excite_theta_global_matches_written_out_maths():
    ge = attnzoo.create("gather_excite", 4, extra_params=True, feat_size=(5, 6)).double()
    randomise_bn(ge)
    ge.eval()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    w = ge.gather.conv1.weight[:, 0]  # (C, 5, 6)
    gathered = torch.einsum("bchw,chw->bc", x, w)[:, :, None, None]
    expected = x * torch.sigmoid(bn_eval(gathered, ge.gather.norm1))
    assert_close(ge(x), expected)


def test_gather_excite_global_mlp_is_squeeze_excite():
    ge = attnzoo.create("gather_excite", 32, use_mlp=True).double()
    x = torch.randn(2, 32, 5, 6, dtype=torch.float64)
    fc1, fc2 = ge.mlp.fc1, ge.mlp.fc2
    gate = torch.sigmoid(fc2(torch.relu(fc1(x.mean((2, 3))))))
    assert_close(ge(x), x * gate[:, :, None, None])


@pytest.mark.parametrize("extent", [0, 2, 3])
def test_gather_excite_1d_and_3d_agree_with_2d(extent):
    ge = attnzoo.create("gather_excite", 4, extent=extent)
    x = torch.randn(2, 4, 11, dtype=torch.float64)
    assert_close(ge(x), ge(x.unsqueeze(-1)).squeeze(-1))
    x3 = torch.randn(2, 4, 1, 9, 7, dtype=torch.float64)
    assert_close(ge(x3), ge(x3.squeeze(2)).unsqueeze(2))


# --------------------------------------------------------------------------- double attention


def a2_ref(module, x):
    """Double attention written out with einsum; softmax axes named explicitly."""
    flat = x.flatten(2)  # (B, C, N)

    def conv(layer, t):
        return torch.einsum("oc,bcn->bon", layer.weight[..., 0], t) + layer.bias[:, None]

    a, b, v = conv(module.phi, flat), conv(module.theta, flat), conv(module.rho, flat)
    gather = torch.softmax(b, dim=2)  # over positions N
    distribute = torch.softmax(v, dim=1)  # over descriptors n
    g = torch.einsum("bmn,bjn->bmj", a, gather)  # (B, m, n)
    z = torch.einsum("bmj,bjn->bmn", g, distribute)  # (B, m, N)
    return x + conv(module.proj, z).view_as(x)


def test_a2_matches_written_out_maths_and_is_batch_independent():
    a2 = attnzoo.create("a2", 16, rd_channels=6, num_descriptors=5).double()
    x = torch.randn(3, 16, 4, 7, dtype=torch.float64)
    out = a2(x)
    assert_close(out, a2_ref(a2, x))
    # a softmax over the batch axis (External-Attention-pytorch bug) would couple samples
    assert_close(torch.cat([a2(x[i : i + 1]) for i in range(3)]), out)


def test_a2_constant_a_and_convex_bounds():
    a2 = attnzoo.create("a2", 16).double()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    captured = {}
    a2.proj.register_forward_pre_hook(lambda _m, args: captured.update(z=args[0]))
    a2(x)
    a = a2.phi(x.flatten(2))
    z = captured["z"]
    assert (z >= a.amin(dim=2, keepdim=True) - 1e-12).all()
    assert (z <= a.amax(dim=2, keepdim=True) + 1e-12).all()
    with torch.no_grad():
        a2.phi.weight.zero_()
        b = a2.phi.bias.clone()
    expected = a2.proj.weight[..., 0] @ b + a2.proj.bias  # proj(b), same at every pixel
    assert_close(a2(x) - x, expected[None, :, None, None].expand_as(x))


def test_a2_probe_records_gather_maps_and_ranks():
    from attnzoo.viz import record_attention

    a2 = attnzoo.create("a2", 16)
    x = torch.randn(2, 16, 5, 6)
    with record_attention(a2) as maps:
        a2(x)
    attn = maps[""]
    assert attn.shape == (2, 1, 4, 30)
    assert_close(attn.sum(-1), torch.ones(2, 1, 4))
    x3 = torch.randn(2, 16, 2, 3, 5, dtype=torch.float64)
    a2.double()
    assert_close(a2(x3), a2(x3.flatten(2)).view_as(x3))
    assert_close(a2(x3.flatten(3)), a2(x3).flatten(3))


# --------------------------------------------------------------------------- spatial transformer


@pytest.mark.parametrize("size", [(28, 28), (9, 7), (1, 1)])
def test_stn_identity_at_init_up_to_interpolation_error(size):
    stn = attnzoo.create("stn", 3)
    x = torch.randn(2, 3, *size)
    theta = stn.transform(x)
    assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3), atol=0, rtol=0)
    # the sampler reproduces pixel centres only up to float round-off of the grid (~1e-6)
    assert_close(stn(x), x, atol=1e-5, rtol=0)


def test_stn_translation_by_one_pixel():
    stn = attnzoo.create("stn", 2)
    h, w = 6, 8
    with torch.no_grad():
        stn.fc_loc.fc2.bias.copy_(torch.tensor([1.0, 0.0, 2.0 / w, 0.0, 1.0, 0.0]))
    x = torch.randn(2, 2, h, w)
    expected = torch.cat([x[..., 1:], torch.zeros(2, 2, h, 1)], dim=-1)
    assert_close(stn(x), expected, atol=1e-5, rtol=0)


def test_stn_valid_padding_is_the_pytorch_tutorial():
    stn = attnzoo.create("stn", 1, loc_padding="valid")
    assert n_params(stn) == 5520
    tutorial_loc = nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=7),
        nn.MaxPool2d(2, stride=2),
        nn.ReLU(True),
        nn.Conv2d(8, 10, kernel_size=5),
        nn.MaxPool2d(2, stride=2),
        nn.ReLU(True),
    )
    tutorial_fc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))
    with torch.no_grad():
        stn.fc_loc.fc2.weight.normal_(0, 0.05)
        tutorial_loc[0].load_state_dict(stn.localization.conv1.state_dict())
        tutorial_loc[3].load_state_dict(stn.localization.conv2.state_dict())
        tutorial_fc[0].load_state_dict(stn.fc_loc.fc1.state_dict())
        tutorial_fc[2].load_state_dict(stn.fc_loc.fc2.state_dict())
    x = torch.randn(2, 1, 28, 28)
    theta = tutorial_fc(tutorial_loc(x).view(-1, 90)).view(-1, 2, 3)
    grid = F.affine_grid(theta, x.size(), align_corners=False)
    expected = F.grid_sample(x, grid, align_corners=False)
    assert_close(stn(x), expected)


def test_stn_gradients_reach_theta_and_localisation_after_a_step():
    stn = attnzoo.create("stn", 3)
    x = torch.randn(2, 3, 9, 7)
    stn(x).square().sum().backward()
    assert stn.fc_loc.fc2.weight.grad.abs().sum() > 0  # theta gets a gradient at init
    assert stn.localization.conv1.weight.grad.abs().sum() == 0  # behind the zero fc2.weight
    with torch.no_grad():
        stn.fc_loc.fc2.weight.normal_(0, 0.01)
    stn.zero_grad()
    stn(x).square().sum().backward()
    for name, p in stn.named_parameters():
        assert p.grad.abs().sum() > 0, name
