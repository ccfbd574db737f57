"""record_attention: every model, every mechanism with weights; one clear error otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attnzoo
from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.viz import record_attention


def test_capability_flag():
    assert AttentionBase.has_attention_weights is True
    assert AttentionFreeBase.has_attention_weights is False
    names = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
    without = [n for n in names if not attnzoo.info(n).obj.has_attention_weights]
    assert without == ["fnet", "gmlp", "mixer", "poolformer", "resmlp"]


class Stack(nn.Module):
    def __init__(self, second: str) -> None:
        super().__init__()
        kwargs = {"seq_len": 5} if second == "mixer" else {}
        self.blocks = nn.ModuleList(
            [
                attnzoo.create("mha", 8, num_heads=2),
                attnzoo.create(second, 8, num_heads=2, **kwargs),
            ]
        )

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_maps_are_keyed_by_module_path_in_forward_order():
    model = Stack("local")
    with record_attention(model) as maps:
        model(torch.randn(1, 5, 8))
    assert list(maps) == ["blocks.0", "blocks.1"]
    assert all(m.shape == (1, 2, 5, 5) for m in maps.values())


@pytest.mark.parametrize(
    ("second", "cls", "how"),
    [("fnet", "FNetMixing", "Fourier"), ("mixer", "MixerTokenMixing", "MLP")],
)
def test_a_model_with_a_weightless_mixer_is_refused_at_entry(second, cls, how):
    model = Stack(second)
    with (
        pytest.raises(ValueError, match="has no attention weights") as info,
        record_attention(model),
    ):
        pytest.fail("the body must not run")
    message = str(info.value)
    assert "'blocks.1'" in message and cls in message and how in message
    assert not any(getattr(m, "recording", False) for m in model.modules())


def test_record_attention_needs_a_module():
    with pytest.raises(TypeError, match=r"nn\.Module"), record_attention(lambda x: x):
        pass
