"""The Vision Transformer: timm's parameter counts and outputs, positions, any attention."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo.models.vit_weights import from_timm_state_dict, to_timm_state_dict
from timm_compat import import_timm_module

CONFIGS = {
    "vit_tiny_patch16_224": (192, 12, 3),
    "vit_small_patch16_224": (384, 12, 6),
    "vit_base_patch16_224": (768, 12, 12),
    "vit_large_patch16_224": (1024, 24, 16),
}
SMALL = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}


def count(model):
    return sum(p.numel() for p in model.parameters())


def formula(dim, depth, patches=196, classes=1000, patch=16, chans=3):
    block = 4 * dim * dim + 4 * dim + 2 * dim * 4 * dim + 4 * dim + dim + 4 * dim
    embed = chans * patch * patch * dim + dim + (patches + 1) * dim + dim
    return embed + depth * block + 2 * dim + dim * classes + classes


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_counts_equal_the_paper_configurations(name):
    dim, depth, heads = CONFIGS[name]
    vt = import_timm_module("timm.models.vision_transformer")
    with torch.device("meta"):
        ours = attnzoo.create_model(name)
        theirs = vt.VisionTransformer(embed_dim=dim, depth=depth, num_heads=heads)
    assert count(ours) == count(theirs) == formula(dim, depth)
    assert ours.blocks[0].attn.num_heads == heads and len(ours.blocks) == depth
    assert ours.blocks[0].mlp.fc1.out_features == 4 * dim


@pytest.mark.parametrize("global_pool", ["token", "avg"])
def test_timm_state_dict_loads_and_gives_the_same_outputs(global_pool):
    vt = import_timm_module("timm.models.vision_transformer")
    theirs = vt.VisionTransformer(**SMALL, num_classes=10, global_pool=global_pool)
    theirs = theirs.double().eval()
    ours = attnzoo.create_model(
        "vit_tiny_patch16_224", **SMALL, num_classes=10, global_pool=global_pool
    )
    ours = ours.double().eval()
    ours.load_state_dict(theirs.state_dict())  # the key map is applied automatically
    images = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    assert_close(ours(images), theirs(images))
    assert_close(ours.forward_features(images), theirs.forward_features(images))
    # and back: our state dict in timm's layout loads into timm
    theirs.load_state_dict(to_timm_state_dict(ours.state_dict()))
    assert_close(ours(images), theirs(images))


def test_key_map_round_trip():
    state = attnzoo.create_model("vit_tiny_patch16_224", **SMALL).state_dict()
    back = from_timm_state_dict(to_timm_state_dict(state))
    assert back.keys() == state.keys()
    for key in state:
        assert torch.equal(back[key], state[key])


def test_a_checkpoint_of_another_grid_is_resampled_as_timm_does():
    layers = import_timm_module("timm.layers")
    source = attnzoo.create_model("vit_tiny_patch16_224", **SMALL)  # 4 x 4 grid
    target = attnzoo.create_model("vit_tiny_patch16_224", **{**SMALL, "img_size": 48})  # 6 x 6
    target.load_state_dict(source.state_dict())
    expected = layers.resample_abs_pos_embed(source.pos_embed.data, [6, 6], num_prefix_tokens=1)
    assert_close(target.pos_embed.data, expected)
    assert target(torch.randn(1, 3, 48, 48)).shape == (1, 1000)


def test_resize_pos_embed_accepts_a_new_image_size():
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL).eval()
    with torch.no_grad():  # a smooth table (the fixed 2-D one) survives resampling
        smooth = attnzoo.create_model("vit_tiny_patch16_224", **SMALL, pos_embed="sincos_2d")
        vit.pos_embed.copy_(smooth.pos_embed / 8)
        vit.pos_embed[:, 0] = 0.5
    table = vit.pos_embed.data.clone()
    vit.resize_pos_embed(64)
    assert vit.pos_embed.shape == (1, 1 + 64, 64) and vit.grid_size == (8, 8)
    assert torch.equal(vit.pos_embed[:, 0], table[:, 0])  # the class token keeps its embedding
    assert vit(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
    vit.resize_pos_embed(32)  # bicubic there and back is close to the original table
    assert_close(vit.pos_embed.data, table, atol=0.01, rtol=0)
    sincos = attnzoo.create_model("vit_tiny_patch16_224", **SMALL, pos_embed="sincos_2d")
    sincos.resize_pos_embed(48)
    fresh = attnzoo.create_model(
        "vit_tiny_patch16_224", **{**SMALL, "img_size": 48}, pos_embed="sincos_2d"
    )
    assert torch.equal(sincos.pos_embed, fresh.pos_embed)
    assert "pos_embed" not in sincos.state_dict()  # fixed table: not a parameter


def test_sincos_positions_are_the_2d_table_with_a_zero_class_token():
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL, pos_embed="sincos_2d")
    grid = attnzoo.create("sincos_2d", 64, normalize=False).encoding(
        torch.ones(1, 4, 4, dtype=torch.bool)
    )  # (1, D, 4, 4)
    assert torch.equal(vit.pos_embed[0, 0], torch.zeros(64))
    assert_close(vit.pos_embed[0, 1:], grid[0].flatten(1).T)
    assert not any(n == "pos_embed" for n, _ in vit.named_parameters())


@pytest.mark.parametrize("attention", ["local", "performer", "linformer", "nystrom", "fnet"])
def test_any_mechanism_replaces_the_self_attention(attention):
    options = {"window": 4} if attention == "local" else {}
    if attention == "nystrom":
        options = {"num_landmarks": 4, "conv_kernel_size": None}
    vit = attnzoo.create_model(
        "vit_tiny_patch16_224", **SMALL, attention=attention, attention_kwargs=options
    )
    out = vit(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert type(vit.blocks[0].attn) is attnzoo.info(attention).obj
    if attention == "linformer":
        assert vit.blocks[0].attn.seq_len == 17  # 16 patches + class token


def test_record_attention_gives_every_block_map():
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL).eval()
    images = torch.randn(2, 3, 32, 32)
    with attnzoo.viz.record_attention(vit) as maps:
        out = vit(images)
    assert list(maps) == ["blocks.0.attn", "blocks.1.attn"]
    assert maps["blocks.0.attn"].shape == (2, 4, 17, 17)
    assert_close(maps["blocks.1.attn"].sum(-1), torch.ones(2, 4, 17))
    assert_close(out, vit(images))  # recording does not change the result


def test_global_pool_avg_and_features():
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL, global_pool="avg", num_classes=0)
    features = vit(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 64)
    no_cls = attnzoo.create_model(
        "vit_tiny_patch16_224", **SMALL, global_pool="avg", class_token=False, num_classes=5
    )
    assert no_cls.pos_embed.shape == (1, 16, 64) and no_cls(torch.randn(1, 3, 32, 32)).shape == (
        1,
        5,
    )


def test_trains_one_step():
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL, num_classes=3, drop_path_rate=0.1)
    loss = torch.nn.functional.cross_entropy(
        vit(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])
    )
    loss.backward()
    assert all(p.grad is not None for p in vit.parameters())


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="img_size must be divisible by patch_size"):
        attnzoo.create_model("vit_tiny_patch16_224", img_size=30, patch_size=8)
    vit = attnzoo.create_model("vit_tiny_patch16_224", **SMALL)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 32, 32\).*resize_pos_embed"):
        vit(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match="img_size must be divisible"):
        vit.resize_pos_embed(36)
    assert vit.grid_size == (4, 4)  # a refused resize leaves the model as it was
    with pytest.raises(ValueError, match="global_pool='token' needs class_token"):
        attnzoo.create_model("vit_tiny_patch16_224", class_token=False)
    with pytest.raises(ValueError, match="pos_embed must be one of"):
        attnzoo.create_model("vit_tiny_patch16_224", pos_embed="rope")
    with pytest.raises(ValueError, match="sequence or efficient mechanism"):
        attnzoo.create_model("vit_tiny_patch16_224", attention="cbam")
    fixed = attnzoo.create_model(
        "vit_tiny_patch16_224", **SMALL, attention="linformer", attention_kwargs={"k": 8}
    )
    with pytest.raises(ValueError, match="seq_len=17"):
        fixed.resize_pos_embed(64)
    other = attnzoo.create_model("vit_tiny_patch16_224", **{**SMALL, "embed_dim": 32})
    with pytest.raises(ValueError, match=r"key 'cls_token' has shape \(1, 1, 32\)"):
        vit.load_state_dict(other.state_dict())
