"""Attention-free MLP and pooling mixers beside MLP-Mixer: gMLP, ResMLP, PoolFormer.

Each equals timm's layer of the same paper (the test oracle, ``make test`` installs it) with the
same weights; fixed-length slicing, causality and padding follow the documented rules.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from timm_compat import import_timm_module

F64 = torch.float64


def x_(b=2, length=10, dim=16, seed=0):
    return torch.randn(b, length, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_gmlp_equals_timm_gated_mlp_with_spatial_gating():
    mixer = import_timm_module("timm.models.mlp_mixer")
    mlp = import_timm_module("timm.layers.mlp")
    torch.manual_seed(0)
    ours = attnzoo.create("gmlp", 16, seq_len=10).double()
    theirs = mlp.GatedMlp(16, 96, gate_layer=partial(mixer.SpatialGatingUnit, seq_len=10))
    theirs.double().load_state_dict(ours.state_dict())  # the same names and shapes
    with torch.no_grad():
        ours.gate.proj.weight.normal_()  # a trained-looking token map
        theirs.gate.proj.weight.copy_(ours.gate.proj.weight)
    assert_close(ours(x_()), theirs(x_()))
    assert ours.fc1.out_features == 6 * 16  # the paper's ffn_dim = 6 d


def test_gmlp_causal_is_a_lower_triangular_token_map():
    torch.manual_seed(0)
    module = attnzoo.create("gmlp", 16, seq_len=10, ffn_dim=8).double()
    with torch.no_grad():
        module.gate.proj.weight.normal_()
    x = x_()
    hidden = torch.nn.functional.gelu(module.fc1(x))
    u, v = hidden.chunk(2, dim=-1)
    v = module.gate.norm(v)
    mixed = module.gate.proj.weight.tril() @ v + module.gate.proj.bias[:, None]
    assert_close(module(x, is_causal=True), module.fc2(u * mixed))


def test_resmlp_equals_timm_cross_patch_sublayer():
    mixer = import_timm_module("timm.models.mlp_mixer")
    torch.manual_seed(0)
    ours = attnzoo.create("resmlp", 16, seq_len=10).double()
    block = mixer.ResBlock(16, 10).double()
    missing = block.load_state_dict(ours.state_dict(), strict=False).missing_keys
    assert not any(k.startswith(("norm1", "linear_tokens")) for k in missing)
    with torch.no_grad():
        ours.norm1.alpha.normal_(), ours.norm1.beta.normal_()
        block.norm1.load_state_dict(ours.norm1.state_dict())
    x = x_()
    want = block.linear_tokens(block.norm1(x).transpose(1, 2)).transpose(1, 2)
    assert_close(ours(x), want)


def test_poolformer_equals_timm_pooling_and_its_causal_window():
    metaformer = import_timm_module("timm.models.metaformer")
    module = attnzoo.create("poolformer", 16, pool_size=5).double()
    x = x_()
    grid = x.transpose(1, 2).unsqueeze(2)  # (B, C, 1, L): a 1 x L patch grid
    want = metaformer.Pooling(5)(grid).squeeze(2).transpose(1, 2)
    assert_close(module(x), want)
    causal = module(x, is_causal=True)
    for i in range(10):
        window = x[:, max(0, i - 4) : i + 1]
        assert_close(causal[:, i], window.mean(1) - x[:, i])


@pytest.mark.parametrize("name", ["gmlp", "resmlp"])
def test_fixed_length_shorter_input_equals_right_padding(name):
    torch.manual_seed(0)
    module = attnzoo.create(name, 16, seq_len=10).double()
    x = x_(length=6)
    padded = torch.cat([x, 1e3 * x_(length=4, seed=1)], dim=1)
    real = torch.ones(2, 10, dtype=torch.bool)
    real[:, 6:] = False
    assert_close(module(padded, mask=real)[:, :6], module(x))
    with pytest.raises(ValueError, match="seq_len=10"):
        module(x_(length=11))


def test_poolformer_padding_counts_real_tokens_only():
    module = attnzoo.create("poolformer", 1)
    x = torch.tensor([[[1.0], [3.0], [100.0], [5.0]]])
    real = torch.tensor([[True, True, False, True]])
    out = module(x, mask=real)[0, :, 0]
    assert_close(out[[0, 1, 3]], torch.tensor([2.0 - 1.0, 2.0 - 3.0, 5.0 - 5.0]))


def test_bad_options():
    with pytest.raises(ValueError, match="pool_size must be odd"):
        attnzoo.create("poolformer", 8, pool_size=4)
    with pytest.raises(ValueError, match="ffn_dim must be even"):
        attnzoo.create("gmlp", 8, seq_len=4, ffn_dim=7)
    with pytest.raises(ValueError, match="seq_len"):
        attnzoo.create("resmlp", 8)
    with pytest.raises(NotImplementedError):
        attnzoo.create("resmlp", 8, seq_len=4)(torch.randn(1, 4, 8), is_causal=True)
