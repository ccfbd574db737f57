"""Contract tests over the sequence and efficient registries (docs/design.md sections 4, 5, 7).

Registering a token mixer enrols it here. Mechanism-specific constructor options needed at tiny
sizes go in ``OPTIONS``; capabilities come from the class flags (``supports_mask``,
``supports_causal``, ``supports_cross``, ``fixed_length``).
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo

DIM, HEADS, B, L, S = 16, 2, 2, 7, 5
OPTIONS: dict[str, dict] = {}
NAMES = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")


def build(name: str, **extra) -> torch.nn.Module:
    cls = attnzoo.info(name).obj
    kwargs = {**OPTIONS.get(name, {}), **extra}
    if getattr(cls, "fixed_length", False):
        kwargs.setdefault("seq_len", L)
    module = attnzoo.create(name, DIM, num_heads=HEADS, **kwargs)
    return module.double().eval()


def x_(b=B, length=L, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, DIM, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_unbatched(name):
    module = build(name)
    x = x_()
    out = module(x)
    assert out.shape == (B, L, DIM) and out.dtype == torch.float64
    assert torch.isfinite(out).all()
    assert_close(module(x[0]), out[0])


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    module = build(name).train()
    x = x_().requires_grad_(True)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name):
    module = build(name, attn_drop=0.3)
    x = x_()
    assert torch.equal(module(x), module(x))


@pytest.mark.parametrize("name", [n for n in NAMES if attnzoo.info(n).obj.supports_causal])
def test_causality(name):
    module = build(name)
    x = x_()
    out = module(x, is_causal=True)
    for t in (1, 4):
        changed = x.clone()
        changed[:, t:] = torch.randn_like(changed[:, t:])
        assert_close(module(changed, is_causal=True)[:, :t], out[:, :t])


@pytest.mark.parametrize("name", [n for n in NAMES if attnzoo.info(n).obj.supports_mask])
def test_padding_invariance_and_fully_padded_rows(name):
    module = build(name)
    x = x_()
    real = torch.ones(B, L, dtype=torch.bool)
    real[1, 4:] = False
    out = module(x, mask=real)
    garbage = x.clone()
    garbage[1, 4:] = 1e3 * torch.randn(L - 4, DIM, dtype=torch.float64)
    assert_close(module(garbage, mask=real)[1, :4], out[1, :4])
    none_real = torch.zeros(B, L, dtype=torch.bool)
    x_grad = x_().requires_grad_(True)
    dead = module(x_grad, mask=none_real)
    dead.sum().backward()
    assert torch.isfinite(dead).all() and torch.isfinite(x_grad.grad).all()


def test_unsupported_capabilities_raise():
    # A mechanism whose flag is False must refuse the argument, never ignore it.
    for name in NAMES:
        cls = attnzoo.info(name).obj
        if not cls.supports_mask:
            with pytest.raises((NotImplementedError, ValueError)):
                build(name)(x_(), mask=torch.ones(B, L, dtype=torch.bool))
        if not cls.supports_causal:
            with pytest.raises((NotImplementedError, ValueError)):
                build(name)(x_(), is_causal=True)
        if not cls.supports_cross:
            with pytest.raises((NotImplementedError, ValueError)):
                build(name)(x_(), torch.randn(B, S, DIM, dtype=torch.float64))


@pytest.mark.parametrize("name", [n for n in NAMES if attnzoo.info(n).obj.supports_cross])
def test_cross_attention_shape(name):
    module = build(name)
    context = torch.randn(B, S, module.context_dim, dtype=torch.float64)
    out = module(x_(), context)
    assert out.shape == (B, L, DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in NAMES if "dense" in attnzoo.info(n).tags])
def test_dense_self_attention_is_permutation_equivariant(name):
    module = build(name)
    x = x_()
    perm = torch.randperm(L, generator=torch.Generator().manual_seed(1))
    assert_close(module(x[:, perm]), module(x)[:, perm])


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_recorded_through_the_probe(name):
    module = build(name)
    if not attnzoo.info(name).obj.has_attention_weights:  # fnet, mixer: one clear error
        with (
            pytest.raises(ValueError, match="has no attention weights"),
            attnzoo.viz.record_attention(module),
        ):
            pass
        return
    with attnzoo.viz.record_attention(module) as maps:
        out = module(x_())
    (weights,) = maps.values()
    assert weights.shape == (B, HEADS, L, L)
    assert torch.isfinite(weights).all()
    assert_close(out, module(x_()))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name):
    module = build(name)
    with pytest.raises(ValueError, match="dim"):
        module(torch.randn(B, L, DIM + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="Tensor"):
        module([[0.0] * DIM])


# mechanisms with no token-by-token weight matrix: need_weights=True says why, never a raw error
NO_WEIGHTS = {
    "aft",
    "fnet",
    "gmlp",
    "linear",
    "linformer",
    "mixer",
    "nystrom",
    "performer",
    "poolformer",
    "resmlp",
}


@pytest.mark.parametrize("name", NAMES)
def test_need_weights_returns_the_weights_or_says_why_not(name):
    module = build(name)
    x = x_()
    real = torch.ones(B, L, dtype=torch.bool)
    real[1, 5:] = False
    kwargs = {"mask": real} if module.supports_mask else {}
    if name in NO_WEIGHTS:
        with pytest.raises(ValueError, match=r"^need_weights=True: \w+ has no \(B, nh, L, S\)"):
            module(x, need_weights=True, **kwargs)
        return
    out, weights = module(x, need_weights=True, **kwargs)
    assert_close(out, module(x, **kwargs))  # the weights path computes the same output
    assert weights.shape == (B, HEADS, L, L)
    if name != "sigmoid_attention":  # sigmoid weights are not normalised
        sums = weights.sum(-1)  # 1, or 0 for a query that sees nothing (padding, no cluster)
        assert torch.minimum((sums - 1).abs(), sums.abs()).max() < 1e-9, sums
    if module.supports_mask:
        assert weights[1, :, :, 5:].eq(0).all()
    single, single_weights = module(x[0], need_weights=True)  # unbatched
    assert single.shape == (L, DIM) and single_weights.shape == (HEADS, L, L)


@pytest.mark.parametrize("name", NAMES)
def test_every_token_mixer_says_which_backend_computes_it(name):
    backend = attnzoo.info(name).obj.backend
    assert isinstance(backend, str) and len(backend) > 10, f"{name} declares no backend"
    from attnzoo.catalogue import catalogue_markdown

    row = next(line for line in catalogue_markdown().splitlines() if line.startswith(f"| `{name}`"))
    assert row.endswith(f" {backend} |")
