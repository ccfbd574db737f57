"""Structural vision modules: residual_attention, reverse_attention, arm, ffm, stdc_fusion.

Known answers come from the papers (docs/vision.md cites them) and from small
re-implementations, written here, of the official code: STDC-Seg
``models/model_stages.py`` (ARM, FFM, ContextPath), RAS-pytorch ``v1/RAS.py`` (``RA``) and the
Caffe ``Attention-56-deploy.prototxt`` wiring. timm ships none of these modules, so there is no
timm comparison here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
import attnzoo.vision.arm
import attnzoo.vision.ffm
import attnzoo.vision.residual_attention
import attnzoo.vision.reverse_attention
import attnzoo.vision.stdc_fusion
from attnzoo.vision.residual_attention import PreActBottleneck

SINGLE = ("residual_attention", "arm")
ALL = (*SINGLE, "reverse_attention", "ffm", "stdc_fusion")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_bn(module: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode checks test something."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def inputs_for(name: str, module: nn.Module, b: int, h: int, w: int) -> tuple[torch.Tensor, ...]:
    if name == "reverse_attention":
        return torch.randn(b, module.channels, h, w), torch.randn(b, 1, max(h // 2, 1), w)
    if name == "ffm":
        return tuple(torch.randn(b, c, h, w) for c in module.input_channels)
    if name == "stdc_fusion":
        c8, c16, c32 = module.input_channels
        h16, w16 = max(h // 2, 1), max(w // 2, 1)
        return (
            torch.randn(b, c8, h, w),
            torch.randn(b, c16, h16, w16),
            torch.randn(b, c32, max(h16 // 2, 1), max(w16 // 2, 1)),
        )
    return (torch.randn(b, module.channels, h, w),)


def build(name: str) -> nn.Module:
    channels = {"reverse_attention": 16, "ffm": 16, "stdc_fusion": 8}.get(name, 16)
    return attnzoo.create(name, channels)


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "expected"),
    [
        # Summary table: C=64, one pooling level, p=1, t=2, r=1 -> 35,712.
        ("residual_attention", (64,), {}, 35_712),
        # 3 levels: 12 units of 17*64^2/16 + 3*64 = 4,544 plus the 8,448 mask head.
        ("residual_attention", (64,), {"pool_levels": 3}, 12 * 4_544 + 8_448),
        # RAS-pytorch v1 RA(256, 64) -> 127,809; the Caffe ECCV variant -> 90,881.
        ("reverse_attention", (256,), {}, 127_809),
        ("reverse_attention", (256,), {"attend_first": True, "num_convs": 2}, 90_881),
        # BiSeNet ARM(64, 64) with the 3x3 ConvBNReLU -> 41,216; the gate alone -> 4,224;
        # STDC-Seg's ARM(256, 128) -> 311,808.
        ("arm", (64,), {}, 41_216),
        ("arm", (64,), {"with_conv": False}, 4_224),
        ("arm", (256,), {"out_channels": 128}, 311_808),
        # FFM(in=128, out=64, ratio 4) -> 10,368; STDC-Seg FFM(384, 256) -> 131,584.
        ("ffm", (128,), {}, 10_368),
        ("ffm", (384,), {"out_channels": 256, "spatial_channels": 256}, 131_584),
        # STDC1/2-Seg head: arm16 606,720 + arm32 1,196,544 + 2 conv heads 147,712 +
        # conv_avg 131,328 + FFM(384, 256) 131,584.
        ("stdc_fusion", (256,), {}, 606_720 + 1_196_544 + 2 * 147_712 + 131_328 + 131_584),
    ],
)
def test_parameter_counts(name, args, kwargs, expected):
    assert n_params(attnzoo.create(name, *args, **kwargs)) == expected


def test_preact_unit_parameter_count():
    assert n_params(PreActBottleneck(64)) == 17 * 64 * 64 // 16 + 3 * 64 == 4_544


# ---------------------------------------------------------------------------- registry, contract


@pytest.mark.parametrize(
    ("name", "domain"),
    [
        ("residual_attention", "mixed"),
        ("reverse_attention", "spatial"),
        ("arm", "structural"),
        ("ffm", "structural"),
        ("stdc_fusion", "structural"),
    ],
)
def test_registry_entries(name, domain):
    entry = attnzoo.info(name)
    assert entry.family == "vision"
    assert domain in entry.tags
    assert entry.paper.url.startswith("https://arxiv.org/abs/")
    for section in ("Args:", "Shape:", "Example:"):
        assert section in entry.obj.__doc__


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize(("h", "w"), [(9, 7), (1, 1)])
def test_single_input_shape_preserved(name, h, w):
    module = build(name)
    x = torch.randn(2, module.channels, h, w)
    assert module(x).shape == x.shape


@pytest.mark.parametrize(
    ("name", "expected"),
    [("reverse_attention", (2, 1, 9, 7)), ("ffm", (2, 8, 9, 7)), ("stdc_fusion", (2, 8, 9, 7))],
)
def test_multi_input_shapes(name, expected):
    module = build(name)
    assert module.num_inputs == len(inputs_for(name, module, 2, 9, 7))
    assert not module.preserves_shape
    assert module(*inputs_for(name, module, 2, 9, 7)).shape == expected
    assert module(*inputs_for(name, module, 2, 1, 1)).shape == (*expected[:2], 1, 1)


@pytest.mark.parametrize("name", ALL)
def test_gradient_reaches_every_parameter(name):
    module = build(name).train()
    out = module(*inputs_for(name, module, 2, 9, 7))
    out.square().sum().backward()
    for pname, param in module.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ALL)
def test_eval_is_deterministic_and_finite(name):
    module = build(name)
    randomise_bn(module)
    module.eval()
    inputs = inputs_for(name, module, 2, 9, 7)
    first, second = module(*inputs), module(*inputs)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert torch.isfinite(first).all()


# ---------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", SINGLE)
def test_wrong_channels_and_rank_raise(name):
    module = build(name)
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(2, module.channels + 1, 5, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        module(torch.randn(2, module.channels, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        module(torch.randn(2, module.channels, 3, 5, 5))


def test_residual_attention_too_few_channels_raises():
    with pytest.raises(ValueError, match="rd_ratio"):
        attnzoo.create("residual_attention", 3)  # C/4 = 0 bottleneck channels
    with pytest.raises(ValueError, match="pool_levels"):
        attnzoo.create("residual_attention", 16, pool_levels=0)


def test_reverse_attention_bad_side_raises():
    ra = attnzoo.create("reverse_attention", 8)
    x = torch.randn(2, 8, 6, 6)
    with pytest.raises(ValueError, match="side"):
        ra(x, torch.randn(2, 2, 6, 6))  # two channels
    with pytest.raises(ValueError, match="side"):
        ra(x, torch.randn(3, 1, 6, 6))  # batch mismatch
    with pytest.raises(TypeError, match="side"):
        ra(x, None)
    with pytest.raises(ValueError, match="x must have 8 channels"):
        ra(torch.randn(2, 4, 6, 6), torch.randn(2, 1, 6, 6))


def test_ffm_bad_inputs_raise():
    with pytest.raises(ValueError, match="spatial_channels"):
        attnzoo.create("ffm", 16, spatial_channels=16)
    ffm = attnzoo.create("ffm", 16, spatial_channels=4)
    assert ffm.input_channels == (4, 12)
    with pytest.raises(ValueError, match="x_spatial must have 4 channels"):
        ffm(torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError, match="spatial size"):
        ffm(torch.randn(2, 4, 5, 5), torch.randn(2, 12, 5, 4))


def test_arm_with_conv_false_needs_same_width():
    with pytest.raises(ValueError, match="out_channels"):
        attnzoo.create("arm", 16, out_channels=8, with_conv=False)


def test_stdc_fusion_bad_inputs_raise():
    head = attnzoo.create("stdc_fusion", 8)
    x8, x16, x32 = inputs_for("stdc_fusion", head, 2, 8, 8)
    with pytest.raises(ValueError, match="x16 must have 16 channels"):
        head(x8, x32, x32)
    with pytest.raises(ValueError, match="batch"):
        head(x8, x16, x32[:1])


# ------------------------------------------------------------------------ Residual Attention


def test_preact_unit_matches_formula():
    unit = PreActBottleneck(8).double()
    randomise_bn(unit)
    unit.eval()
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64)

    def act(bn, t):
        return F.relu(F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias))

    out = F.conv2d(act(unit.bn1, x), unit.conv1.weight)
    out = F.conv2d(act(unit.bn2, out), unit.conv2.weight, padding=1)
    out = F.conv2d(act(unit.bn3, out), unit.conv3.weight)
    torch.testing.assert_close(unit(x), x + out)


def test_residual_attention_output_over_trunk_in_one_two():
    # H = (1 + M) T with M in (0, 1): H / T in (1, 2) wherever T != 0 (no post units here).
    ra = attnzoo.create("residual_attention", 16, p=0).double()
    randomise_bn(ra)
    ra.eval()
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    trunk = ra.trunk(x)
    ratio = ra(x) / trunk
    mask = trunk.abs() > 1e-6
    assert (ratio[mask] > 1).all()
    assert (ratio[mask] < 2).all()


@pytest.mark.parametrize(("residual", "factor"), [(True, 1.5), (False, 0.5)])
def test_residual_attention_zero_mask_conv_gives_half_mask(residual, factor):
    # Last mask conv zeroed -> M = sigmoid(0) = 0.5 -> H = 1.5 T (or 0.5 T without residual).
    ra = attnzoo.create("residual_attention", 16, p=0, residual_learning=residual).double()
    nn.init.zeros_(ra.mask_head[-1].weight)
    ra.eval()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(ra(x), factor * ra.trunk(x), rtol=0, atol=0)


def test_residual_attention_wiring_matches_caffe_two_levels():
    # Attention-56 (Caffe) wiring with 2 poolings, written out with the module's own units:
    # pool1 -> down1; skip1 = RU(down1); pool2 -> down2 (2r units); up = interp(down2) + skip1
    # -> up1; interp to the trunk size -> head -> sigmoid; out = post((1 + M) * trunk).
    ra = attnzoo.create("residual_attention", 16, pool_levels=2).double()
    randomise_bn(ra)
    ra.eval()
    x = torch.randn(2, 16, 11, 10, dtype=torch.float64)

    def pool(t):
        return F.max_pool2d(t, 3, stride=2, padding=1)

    def interp(t, ref):
        return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=True)

    pre = ra.pre(x)
    down1 = ra.down[0](pool(pre))
    down2 = ra.down[1](pool(down1))
    assert len(ra.down[1]) == 2  # 2r units at the bottom
    assert len(ra.down[0]) == 1
    up1 = ra.up[0](interp(down2, down1) + ra.skips[0](down1))
    mask = torch.sigmoid(ra.mask_head(interp(up1, pre)))
    expected = ra.post((1 + mask) * ra.trunk(pre))
    torch.testing.assert_close(ra(x), expected)


# --------------------------------------------------------------------------- Reverse attention


class OfficialRA(nn.Module):
    """RAS-pytorch v1 ``RA`` as published (convert, then attend, then 4 convs)."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.convert = nn.Conv2d(in_channel, out_channel, 1)
        self.convs = nn.Sequential(
            nn.Conv2d(out_channel, out_channel, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(out_channel, out_channel, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(out_channel, out_channel, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(out_channel, 1, 3, padding=1),
        )
        self.channel = out_channel

    def forward(self, x, y):
        a = torch.sigmoid(-y)
        x = self.convert(x)
        x = a.expand(-1, self.channel, -1, -1).mul(x)
        return y + self.convs(x)


def test_reverse_attention_matches_official_code():
    ours = attnzoo.create("reverse_attention", 12, mid_channels=8).double()
    official = OfficialRA(12, 8).double()
    official.load_state_dict(ours.state_dict())
    x = torch.randn(2, 12, 10, 8, dtype=torch.float64)
    side = torch.randn(2, 1, 5, 4, dtype=torch.float64)
    # RAS.forward up-samples the deeper prediction before calling RA.
    side_up = F.interpolate(side, size=(10, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(ours(x, side), official(x, side_up))
    torch.testing.assert_close(ours(x, side_up), official(x, side_up))


@pytest.mark.parametrize("attend_first", [False, True])
def test_reverse_attention_hand_computed(attend_first):
    # C = m = 1, no ReLU convs, last conv = centre tap 1 (identity) with bias 0:
    # S = side + A * (w x + b) (PyTorch order) or side + w (A x) + b (Caffe order).
    ra = attnzoo.create(
        "reverse_attention", 1, mid_channels=1, num_convs=0, attend_first=attend_first
    ).double()
    with torch.no_grad():
        ra.convert.weight.fill_(2.0)
        ra.convert.bias.fill_(0.5)
        ra.convs[0].weight.zero_()
        ra.convs[0].weight[0, 0, 1, 1] = 1.0
        ra.convs[0].bias.zero_()
    x = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]], dtype=torch.float64)
    side = torch.tensor([[[[0.0, 1.0], [-1.0, 2.0]]]], dtype=torch.float64)
    a = 1 / (1 + torch.exp(side))  # 1 - sigmoid(side)
    expected = side + (2 * a * x + 0.5 if attend_first else a * (2 * x + 0.5))
    torch.testing.assert_close(ra(x, side), expected)


def test_reverse_attention_weights_in_open_unit_interval():
    ra = attnzoo.create("reverse_attention", 4)
    attn = ra.reverse_attention(torch.randn(2, 1, 16, 16) * 5)
    assert ((attn > 0) & (attn < 1)).all()


def test_reverse_attention_zero_last_conv_returns_upsampled_side():
    ra = attnzoo.create("reverse_attention", 6, mid_channels=4)
    nn.init.zeros_(ra.convs[-1].weight)
    nn.init.zeros_(ra.convs[-1].bias)
    side = torch.randn(2, 1, 3, 4)
    expected = F.interpolate(side, size=(6, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(ra(torch.randn(2, 6, 6, 8), side), expected, rtol=0, atol=0)


def test_reverse_attention_confident_side_erases_the_feature():
    # Where the deeper map is confidently salient, A = 0 and the feature is erased entirely.
    ra = attnzoo.create("reverse_attention", 6, mid_channels=4)
    side = torch.full((2, 1, 5, 5), 1e4)
    out_x = ra(torch.randn(2, 6, 5, 5), side)
    out_zero = ra(torch.zeros(2, 6, 5, 5), side)
    torch.testing.assert_close(out_x, out_zero, rtol=0, atol=0)


# ------------------------------------------------------------------------------ ARM, FFM, STDC


class OfficialARM(nn.Module):
    """STDC-Seg ``AttentionRefinementModule`` (plain BN in place of InPlaceABNSync)."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_chan, out_chan, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chan),
            nn.ReLU(),
        )
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x):
        feat = self.conv(x)
        atten = F.avg_pool2d(feat, feat.size()[2:])
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(atten)))
        return torch.mul(feat, atten)


class OfficialFFM(nn.Module):
    """STDC-Seg ``FeatureFusionModule``."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.convblk = nn.Sequential(
            nn.Conv2d(in_chan, out_chan, 1, bias=False), nn.BatchNorm2d(out_chan), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)

    def forward(self, fsp, fcp):
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = F.avg_pool2d(feat, feat.size()[2:])
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return torch.mul(feat, atten) + feat


def load_arm(official: OfficialARM, ours: nn.Module) -> None:
    official.conv[0].weight.data.copy_(ours.conv.conv.weight)
    official.conv[1].load_state_dict(ours.conv.bn.state_dict())
    official.conv_atten.weight.data.copy_(ours.attn_conv.weight)
    official.bn_atten.load_state_dict(ours.attn_norm.state_dict())


def load_ffm(official: OfficialFFM, ours: nn.Module) -> None:
    official.convblk[0].weight.data.copy_(ours.conv.conv.weight)
    official.convblk[1].load_state_dict(ours.conv.bn.state_dict())
    official.conv1.weight.data.copy_(ours.mlp.fc1.weight[..., None, None])
    official.conv2.weight.data.copy_(ours.mlp.fc2.weight[..., None, None])


@pytest.mark.parametrize("train", [False, True])
def test_arm_matches_stdc_code(train):
    ours = attnzoo.create("arm", 12, out_channels=8).double()
    randomise_bn(ours)
    official = OfficialARM(12, 8).double()
    load_arm(official, ours)
    ours.train(train)
    official.train(train)
    x = torch.randn(3, 12, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), official(x))


@pytest.mark.parametrize("train", [False, True])
def test_ffm_matches_stdc_code(train):
    ours = attnzoo.create("ffm", 24, out_channels=16, spatial_channels=16).double()
    randomise_bn(ours)
    official = OfficialFFM(24, 16).double()
    load_ffm(official, ours)
    ours.train(train)
    official.train(train)
    fsp = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    fcp = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(fsp, fcp), official(fsp, fcp))


def test_arm_gate_only_hand_computed():
    # with_conv=False, eval: out = x * sigmoid(gamma * (W GAP(x) - mu) / sqrt(var + eps) + beta).
    arm = attnzoo.create("arm", 4, with_conv=False).double()
    randomise_bn(arm)
    arm.eval()
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    bn = arm.attn_norm
    z = x.mean(dim=(2, 3)) @ arm.attn_conv.weight[:, :, 0, 0].T
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    gate = 1 / (1 + torch.exp(-z))
    torch.testing.assert_close(arm(x), x * gate[:, :, None, None])
    ratio = arm(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))


def test_ffm_output_between_f_and_two_f():
    ffm = attnzoo.create("ffm", 16).double()
    randomise_bn(ffm)
    ffm.eval()
    xs, xc = (torch.randn(2, 8, 6, 6, dtype=torch.float64) for _ in range(2))
    f = ffm.conv(torch.cat([xs, xc], dim=1))
    out = ffm(xs, xc)
    assert (f >= 0).all()
    assert (out >= f).all()
    assert (out[f > 0] < 2 * f[f > 0]).all()
    nn.init.zeros_(ffm.mlp.fc2.weight)  # gate = sigmoid(0) = 0.5 -> out = 1.5 f
    torch.testing.assert_close(ffm(xs, xc), 1.5 * f, rtol=0, atol=0)


def test_stdc_fusion_matches_stdc_context_path():
    # STDC-Seg ContextPath.forward + BiSeNet.ffm, written out with official-style ARMs/FFM
    # carrying our weights.
    head = attnzoo.create("stdc_fusion", 8).double()
    randomise_bn(head)
    head.eval()
    arm32, arm16 = OfficialARM(32, 4).double(), OfficialARM(16, 4).double()
    load_arm(arm32, head.arm32)
    load_arm(arm16, head.arm16)
    ffm = OfficialFFM(12, 8).double()
    load_ffm(ffm, head.ffm)
    for m in (arm32, arm16, ffm):
        m.eval()
    x8 = torch.randn(2, 8, 12, 10, dtype=torch.float64)
    x16 = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    x32 = torch.randn(2, 32, 3, 3, dtype=torch.float64)

    avg = head.conv_avg(F.avg_pool2d(x32, x32.size()[2:]))
    avg_up = F.interpolate(avg, (3, 3), mode="nearest")
    feat32_up = F.interpolate(arm32(x32) + avg_up, (6, 5), mode="nearest")
    feat32_up = head.conv_head32(feat32_up)
    feat16_up = F.interpolate(arm16(x16) + feat32_up, (12, 10), mode="nearest")
    feat16_up = head.conv_head16(feat16_up)
    torch.testing.assert_close(head(x8, x16, x32), ffm(x8, feat16_up))
