"""ResNet backbones with attention: parameter counts from the papers, placement, errors, training.

The attention modules are other files' work; each test imports the ones it needs explicitly
(``pytest.importorskip``) so that they are registered.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
import attnzoo.models.resnet as resnet
from attnzoo.models.resnet_blocks import BasicBlock, Bottleneck

TORCHVISION_RESNET50 = 25_557_032


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def need(*names: str) -> None:
    for name in names:
        pytest.importorskip(f"attnzoo.vision.{name}")


def attention_modules(net: resnet.ResNet) -> dict[str, nn.Module]:
    """Qualified name -> module for every attention slot that holds a module."""
    found = {}
    for name, module in net.named_modules():
        for slot in ("attn", "attn_mid", "attn_post"):
            sub = (
                getattr(module, slot, None) if isinstance(module, BasicBlock | Bottleneck) else None
            )
            if isinstance(sub, nn.Module):
                found[f"{name}.{slot}"] = sub
    return found


def tiny(**kwargs) -> resnet.ResNet:
    kwargs.setdefault("widths", (16, 32, 32))
    kwargs.setdefault("depths", (2, 2, 2))
    return resnet.resnet_cifar(**kwargs)


# ------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        # torchvision.models.resnet{18,34,50,101}(): the counts of its model zoo table.
        (resnet.resnet18, 11_689_512),
        (resnet.resnet34, 21_797_672),
        (resnet.resnet50, TORCHVISION_RESNET50),
        (resnet.resnet101, 44_549_160),
    ],
)
def test_plain_resnet_parameter_counts(factory, expected):
    assert n_params(factory()) == expected


def test_resnet50_layout_is_torchvision_v1_5():
    net = resnet.resnet50()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer2.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["fc.weight"] == (1000, 2048)
    assert net.layer3[0].conv2.stride == (2, 2)  # stride on the 3x3 conv ("v1.5")
    assert net.layer3[0].conv1.stride == (1, 1)
    assert len(net.state_dict()) == 320  # torchvision resnet50().state_dict() has 320 entries


def test_se_resnet50_parameter_count():
    # SENet (Hu et al., arXiv 1709.01507), section on model complexity: the SE blocks add
    # (2/r) * sum_s N_s * C_s^2 = 2/16 * (3*256^2 + 4*512^2 + 6*1024^2 + 3*2048^2) = 2,514,944
    # weights ("~2.5 million additional parameters beyond the ~25 million of ResNet-50"); the
    # official Caffe model adds the biases of both FC layers, 16 * (C/16 + C) summed = 16,048.
    # CBAM (Woo et al., arXiv 1807.06521) Table 4 lists "ResNet50 + SE: 28.09M".
    need("se")
    net = resnet.resnet50(attention="se")
    assert n_params(net) == TORCHVISION_RESNET50 + 2_514_944 + 16_048 == 28_088_024
    assert len(attention_modules(net)) == 16


def test_eca_resnet50_parameter_count():
    # ECA-Net (Wang et al., arXiv 1910.03151), abstract and official README: the ECA modules of
    # ResNet-50 have "80 vs. 24.37M" parameters. 80 = 3*3 + 4*5 + 6*5 + 3*7: one k per stage,
    # k = 3, 5, 5, 7 (the README's --ksize 3557). The paper's adaptive rule psi(C) on the block
    # widths 256, 512, 1024, 2048 gives 5, 5, 5, 7, i.e. 86 parameters. (The paper's backbone
    # count, 24.37M, is not torchvision's 25.56M; only the module count is compared.)
    need("eca")
    kernels = [{"kernel_size": k} for k in (3, 5, 5, 7)]
    net = resnet.resnet50(attention="eca", attention_stage_kwargs=kernels)
    assert n_params(net) == TORCHVISION_RESNET50 + 80
    assert (
        n_params(resnet.resnet50(attention="eca"))
        == TORCHVISION_RESNET50 + 3 * 5 + 4 * 5 + 6 * 5 + 3 * 7
    )


def test_cbam_resnet50_parameter_count():
    # CBAM (Woo et al., arXiv 1807.06521) Table 4 (ImageNet-1K): "ResNet50 + CBAM: 28.09M".
    # Official module per block: the SE-sized MLP with biases (as SE above) + 7x7 conv 2->1
    # without bias (98) + BN(1) (2): 28,088,024 + 16 * 100.
    need("cbam")
    net = resnet.resnet50(attention="cbam")
    assert n_params(net) == 28_088_024 + 16 * 100 == 28_089_624


def test_gc_resnet50_parameter_count():
    # GCNet (Cao et al., arXiv 1904.11492), ImageNet table: "ResNet-50 + GC (r16): 28.08M",
    # GC blocks in every block of c3-c5 (stages 2-4). Per block 2CP + 2C + 3P + 1 with P = C/16:
    # 4 * 33,889 (C=512) + 6 * 133,313 (C=1024) + 3 * 528,769 (C=2048) = 2,521,741.
    # (With c2 too, as SE, it would be 28,105,032 = 28.11M, which the table does not show.)
    need("gc")
    net = resnet.resnet50(attention="gc")
    assert n_params(net) == TORCHVISION_RESNET50 + 4 * 33_889 + 6 * 133_313 + 3 * 528_769
    assert n_params(net) == 28_078_773
    assert all(".layer1." not in f".{name}" for name in attention_modules(net))


@pytest.mark.parametrize(
    ("stages", "blocks", "where"),
    [
        # Wang et al. 2018 (arXiv 1711.07971), Table 2a: 1 block "right before the last residual
        # block" of res4 (stage 3, 6 blocks -> after block 4).
        (None, None, ["layer3.4"]),
        # Table 2b: 5 blocks, "3 to res4 and 2 to res3, to every other residual block".
        ((2, 3), "every_other", ["layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"]),
        # 10 blocks: every residual block of res3 and res4.
        ((2, 3), "all", [f"layer2.{i}" for i in range(4)] + [f"layer3.{i}" for i in range(6)]),
    ],
)
def test_non_local_blocks_inserted_after_chosen_blocks(stages, blocks, where):
    need("non_local")
    net = resnet.resnet50(attention="non_local", attention_stages=stages, attention_blocks=blocks)
    found = attention_modules(net)
    assert sorted(found) == sorted(f"{w}.attn_post" for w in where)
    widths = {"layer2": 512, "layer3": 1024}
    assert all(m.channels == widths[name[:6]] for name, m in found.items())
    per_block = {c: n_params(attnzoo.create("non_local", c)) for c in (512, 1024)}
    extra = sum(per_block[m.channels] for m in found.values())
    assert n_params(net) == TORCHVISION_RESNET50 + extra


def test_se_resnet50_forward_tiny_resolution():
    need("se")
    net = resnet.resnet50(attention="se", num_classes=10).eval()
    out = net(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------ placement


class Recorder:
    """Inputs and outputs of named submodules during one forward."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.inputs, self.outputs, self.handles = {}, {}, []
        modules = dict(model.named_modules())
        for name in names:
            self.handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            self.inputs[name], self.outputs[name] = args[0], output

        return hook

    def close(self):
        for handle in self.handles:
            handle.remove()


def test_residual_placement_gates_branch_before_addition():
    # SE on the residual branch after bn3, before the addition: with the SE gate fixed at 0.5
    # (fc2 zeroed) every block computes relu(0.5 * bn3(...) + shortcut).
    need("se")
    net = tiny(attention="se", block="bottleneck", widths=(16, 16, 32)).double().eval()
    for se in attention_modules(net).values():
        nn.init.zeros_(se.mlp.fc2.weight)
        nn.init.zeros_(se.mlp.fc2.bias)
    block = net.layer2[0]
    rec = Recorder(net, ["layer2.0.bn3", "layer2.0.attn", "layer2.0"])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    net(x)
    rec.close()
    assert rec.inputs["layer2.0.attn"] is rec.outputs["layer2.0.bn3"]
    shortcut = block.downsample(rec.inputs["layer2.0"])
    expected = F.relu(0.5 * rec.outputs["layer2.0.bn3"] + shortcut)
    torch.testing.assert_close(rec.outputs["layer2.0"], expected)
    assert block.attn.channels == 64  # 4 * planes


def test_conv3x3_placement_sits_between_conv2_and_bn2():
    need("simam")
    net = tiny(attention="simam", block="bottleneck", widths=(16, 16, 32))
    assert net.plan.placement == "conv3x3"
    names = ["layer1.1.conv2", "layer1.1.attn_mid", "layer1.1.bn2"]
    rec = Recorder(net, names)
    net(torch.randn(2, 3, 8, 8))
    rec.close()
    assert rec.inputs["layer1.1.attn_mid"] is rec.outputs["layer1.1.conv2"]
    assert rec.inputs["layer1.1.bn2"] is rec.outputs["layer1.1.attn_mid"]


def test_pre_conv_placement_feeds_every_conv():
    need("gct")
    net = tiny(attention="gct", block="bottleneck", widths=(8, 8, 16))
    block = net.layer2[0]
    assert [m.channels for m in block.attn_pre] == [32, 8, 8]  # in = 4 * 8, width, width
    names = [f"layer2.0.attn_pre.{i}" for i in range(3)] + [f"layer2.0.conv{i}" for i in (1, 2, 3)]
    rec = Recorder(net, names)
    net(torch.randn(2, 3, 8, 8))
    rec.close()
    for i in range(3):
        assert rec.inputs[f"layer2.0.conv{i + 1}"] is rec.outputs[f"layer2.0.attn_pre.{i}"]


def test_replace_conv3x3_placement_with_stride():
    need("split")
    net = tiny(attention="split", block="bottleneck", widths=(16, 16, 32))
    block = net.layer2[0]
    assert type(block.conv2).__name__ == "SplitAttention"
    assert isinstance(block.bn2, nn.Identity)
    assert isinstance(block.pool, nn.AvgPool2d)
    assert block.pool.stride == 2
    rec = Recorder(net, ["layer2.0.conv2", "layer2.0"])
    net(torch.randn(2, 3, 8, 8))
    rec.close()
    assert rec.inputs["layer2.0.conv2"].shape[-2:] == (8, 8)
    assert rec.outputs["layer2.0"].shape == (2, 64, 4, 4)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        # BAM after the last block of every stage but the last.
        ("bam", ["layer1.1.attn_post", "layer2.1.attn_post"]),
        # Residual Attention after the first unit of every stage but the last.
        ("residual_attention", ["layer1.0.attn_post", "layer2.0.attn_post"]),
        # Non-local: right before the last block of stage 3.
        ("non_local", ["layer3.0.attn_post"]),
        # GC: every block of stages 2 and up.
        ("gc", [f"layer{s}.{b}.attn" for s in (2, 3) for b in (0, 1)]),
    ],
)
def test_paper_layouts_on_tiny_net(name, where):
    need(name)
    net = tiny(attention=name)
    assert sorted(attention_modules(net)) == sorted(where)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("name", ["non_local", "gc", "gct"])
def test_identity_at_init_modules_leave_the_network_unchanged(name):
    # The backbone initialisation must not touch the attention modules: zero-initialised outputs
    # (Non-local, GC) and GCT's identity gate keep the network equal to the plain one.
    need(name)
    plain = tiny(block="bottleneck", widths=(8, 8, 16)).eval()
    with_attn = tiny(attention=name, block="bottleneck", widths=(8, 8, 16)).eval()
    missing, unexpected = with_attn.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert all("attn" in key for key in missing)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(with_attn(x), plain(x), rtol=0, atol=0)


def test_attention_kwargs_and_stage_kwargs_reach_the_modules():
    need("se")
    net = tiny(
        attention="se",
        attention_kwargs={"rd_ratio": 1 / 4},
        attention_stage_kwargs=[{}, {}, {"rd_channels": 2}],
    )
    hidden = {name[:6]: m.mlp.fc1.out_features for name, m in attention_modules(net).items()}
    assert hidden == {"layer1": 4, "layer2": 8, "layer3": 2}


def test_overrides_replace_the_paper_layout():
    need("se")
    net = tiny(attention="se", attention_placement="after_block", attention_stages=(2,))
    assert sorted(attention_modules(net)) == ["layer2.0.attn_post", "layer2.1.attn_post"]
    net = tiny(attention="se", attention_blocks=[-1], attention_stages=(1, 3))
    assert sorted(attention_modules(net)) == ["layer1.1.attn", "layer3.1.attn"]


def test_gradient_reaches_every_parameter_with_attention():
    need("cbam")
    net = tiny(attention="cbam").train()
    net(torch.randn(2, 3, 8, 8)).square().sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_zero_init_residual_makes_blocks_pass_the_shortcut():
    net = tiny(block="basic", zero_init_residual=True).eval()
    block = net.layer1[0]  # identity shortcut
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), F.relu(x))


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attention": "ffm"}, ValueError, "cannot sit inside a ResNet"),
        ({"attention": "reverse_attention"}, ValueError, "cannot sit inside a ResNet"),
        ({"attention": "sqeeze"}, ValueError, "unknown name"),
        ({"attention": "mha"}, ValueError, "vision module"),
        ({"attention": "arm", "attention_stages": (4,)}, ValueError, "attention_stages"),
        ({"attention": "arm", "attention_blocks": "most"}, ValueError, "attention_blocks"),
        ({"attention": "arm", "attention_blocks": 1}, TypeError, "attention_blocks"),
        ({"attention": "arm", "attention_blocks": [2]}, ValueError, "outside stage 1"),
        ({"attention": "arm", "attention_placement": "inside"}, ValueError, "placement"),
        ({"attention": "arm", "attention_stage_kwargs": [{}]}, ValueError, "one dict per stage"),
        ({"attention_kwargs": {"rd_ratio": 0.5}}, ValueError, "attention is None"),
        ({"block": "wide"}, ValueError, "block"),
        ({"widths": (16, 32)}, ValueError, "equal length"),
    ],
)
def test_bad_options_raise(kwargs, error, match):
    import attnzoo.vision.arm
    import attnzoo.vision.ffm
    import attnzoo.vision.reverse_attention  # noqa: F401

    with pytest.raises(error, match=match):
        tiny(**kwargs)


def test_wrong_input_channels_raise():
    net = tiny(in_chans=1)
    with pytest.raises(ValueError, match="x must have 1 channels"):
        net(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(2, 1, 8))


# ------------------------------------------------------------------------- registry and demo


def test_models_are_registered():
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet_cifar"):
        entry = attnzoo.info(name)
        assert entry.family == "models"
        assert entry.paper.url == "https://arxiv.org/abs/1512.03385"
        for section in ("Args:", "Shape:", "Example:"):
            assert section in entry.obj.__doc__, name
    net = attnzoo.create_model("resnet_cifar", num_classes=3, depths=(1, 1, 1))
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_cifar_resnet20_size():
    # He et al. 2016, Table 6: ResNet-20 on CIFAR-10 has 0.27M parameters (option A shortcuts,
    # 269,722); 1x1 projections (option B) add 16*32 + 2*32 + 32*64 + 2*64 = 2,752.
    assert n_params(resnet.resnet_cifar()) == 269_722 + 2_752


def test_cifar_resnet_with_attention_learns_quickly():
    need("eca")
    torch.manual_seed(0)
    net = resnet.resnet_cifar(attention="eca", in_chans=1, num_classes=2, depths=(1, 1, 1))
    # Two classes: a bright square in the top-left or the bottom-right corner of an 8x8 image.
    x = torch.randn(64, 1, 8, 8) * 0.1
    y = torch.arange(64) % 2
    x[y == 0, :, :3, :3] += 1.0
    x[y == 1, :, 5:, 5:] += 1.0
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    net.eval()
    assert (net(x).argmax(dim=1) == y).float().mean() > 0.95
