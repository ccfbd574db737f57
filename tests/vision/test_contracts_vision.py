"""Contract tests over the vision registry (docs/design.md section 5 and failure mode 37).

Every registered vision module: shape preserved on odd and 1x1 maps (and 1-D / 3-D inputs where
``spatial_dims`` says so), finite gradients to every parameter, eval determinism, no NaN, clear
errors for a wrong channel count or rank. Modules with several inputs or another output shape
declare it (``num_inputs``, ``input_channels``, ``preserves_shape``).
"""

from __future__ import annotations

import pytest
import torch

import attnzoo

C = 32
NAMES = attnzoo.list_names(family="vision")


def widths(module) -> tuple[int, ...]:
    return tuple(getattr(module, "input_channels", (module.channels,)))


def make_inputs(name: str, module, spatial: tuple[int, ...], batch: int = 2):
    """Positional inputs for ``module`` on maps of size ``spatial`` (one per input width)."""
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(batch, c, *spatial, generator=gen) for c in widths(module))
    assert len(inputs) == module.num_inputs, f"{name}: input_channels disagrees with num_inputs"
    return inputs


def build(name: str):
    return attnzoo.create(name, C)


def sizes(module):
    shapes = []
    if 2 in module.spatial_dims:
        shapes += [(9, 7), (1, 1)]
    if 1 in module.spatial_dims:
        shapes += [(11,)]
    if 3 in module.spatial_dims:
        shapes += [(3, 5, 4)]
    return shapes


@pytest.mark.parametrize("name", NAMES)
def test_shapes_on_odd_and_single_pixel_maps(name):
    module = build(name).eval()
    for spatial in sizes(module):
        inputs = make_inputs(name, module, spatial)
        out = module(*inputs)
        if module.preserves_shape:
            assert out.shape == inputs[0].shape, f"{name} on {spatial}"
        assert torch.isfinite(out).all(), f"{name} on {spatial} gives non-finite values"


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    module = build(name).train()
    inputs = make_inputs(name, module, (9, 7))
    inputs = tuple(t.requires_grad_(True) for t in inputs)
    module(*inputs).square().sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
    assert all(torch.isfinite(t.grad).all() for t in inputs)


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic_and_batch_independent(name):
    module = build(name).eval()
    inputs = make_inputs(name, module, (9, 7), batch=3)
    out = module(*inputs)
    assert torch.equal(out, module(*inputs))
    single = module(*(t[1:2] for t in inputs))
    torch.testing.assert_close(single, out[1:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_channel_count_and_rank_raise(name):
    module = build(name).eval()
    bad = torch.randn(2, widths(module)[0] + 1, 9, 7)
    with pytest.raises(ValueError, match=r"channels|shape"):
        module(*((bad, *make_inputs(name, module, (9, 7))[1:])))
    for dims in {1, 2, 3} - set(module.spatial_dims):
        wrong = torch.randn(2, widths(module)[0], *([5] * dims))
        with pytest.raises(ValueError, match=r"must be"):
            module(*((wrong, *make_inputs(name, module, (9, 7))[1:])))
    with pytest.raises((TypeError, ValueError)):
        module([[0.0]])


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata(name):
    entry = attnzoo.info(name)
    domains = {"channel", "spatial", "self_attention", "mixed", "structural"}
    assert len(domains & set(entry.tags)) == 1, f"{name}: exactly one domain tag, got {entry.tags}"
    assert isinstance(build(name), attnzoo.vision.VisionModule)
