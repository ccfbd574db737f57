"""Degenerate inputs through every registered name (docs/design.md section 4; failure modes 11-23).

The same set of bad or empty inputs runs through every entry of the sequence, efficient, vision
and positional registries, so that a new mechanism is enrolled by registering it: wrong dtype,
integer input, ``L = 0``, ``B = 0``, an empty context, a wrong channel count, a list instead
of a tensor, and NaN stored in padded positions where the family takes masks (vision modules
take none). Each case asserts the documented outcome, decided per family in the docstring of
the shared check (``AttentionBase.check_inputs``, ``check_feature_map``,
``attnzoo.positional.base.check_input``): a ``TypeError``/``ValueError`` whose message names
the argument, or the natural empty result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo import KVCache
from attnzoo._checks import parameter_dtype
from attnzoo.efficient._kernel import RecurrentState
from test_contracts import DIM, B, L, build

SEQUENCE = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
VISION = attnzoo.list_names(family="vision")
POSITIONAL = attnzoo.list_names(family="positional")
F64 = torch.float64


def seq_x(b=B, length=L, dtype=F64, width=DIM, requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, length, width, generator=gen, dtype=dtype)
    return x.requires_grad_(requires_grad)


# ----------------------------------------------------------------------- sequence, efficient
@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_wrong_dtype(name):
    module = build(name)  # float64 parameters
    x = seq_x(dtype=torch.float32)
    if parameter_dtype(module) is None:  # no parameters (fnet): any floating dtype, kept
        out = module(x)
        assert out.dtype == torch.float32 and out.shape == (B, L, DIM)
        assert_close(out, module(x.double()).float())
    else:
        with pytest.raises(TypeError, match=r"^x has dtype torch.float32.*float64.*x\.double\(\)"):
            module(x)


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_integer_input_and_non_tensors(name):
    module = build(name)
    with pytest.raises(TypeError, match=r"^x must be a floating tensor, got dtype torch.int64"):
        module(torch.ones(B, L, DIM, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        module([[0.0] * DIM] * L)
    with pytest.raises(TypeError, match=r"^is_causal must be a bool"):
        module(seq_x(), is_causal=1)


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_wrong_channel_count(name):
    with pytest.raises(ValueError, match=rf"^x must be \(B, L, C\) with C = dim = {DIM}"):
        build(name)(seq_x(width=DIM + 1))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("shape", [(0, L), (B, 0)], ids=["B=0", "L=0"])
@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_empty_batch_and_sequence(name, shape, train):
    module = build(name).train(train)
    causal = [False, True] if module.supports_causal else [False]
    for is_causal in causal:
        x = seq_x(*shape, requires_grad=True)
        out = module(x, is_causal=is_causal)
        assert out.shape == (*shape, DIM), f"{name}, is_causal={is_causal}"
        out.sum().backward()  # backward runs on the empty result (PyTorch may leave x.grad None)
    unbatched = module(seq_x(1, shape[1])[0])
    assert unbatched.shape == (shape[1], DIM)


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_empty_context(name):
    module = build(name)
    if not module.supports_cross:
        with pytest.raises(NotImplementedError, match="cross-attention"):
            module(seq_x(), seq_x(length=0))
        return
    out = module(seq_x(), torch.zeros(B, 0, module.context_dim, dtype=F64))
    # no key: every query attends to nothing, zeros before out_proj (its bias, or zeros)
    bias = getattr(module.out_proj, "bias", None)
    expected = torch.zeros(B, L, DIM, dtype=F64) if bias is None else bias.expand(B, L, DIM)
    assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"^context must be a torch.Tensor"):
        module(seq_x(), [[0.0] * module.context_dim])


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_nan_in_padded_tokens_never_reaches_real_ones(name):
    module = build(name)
    real = torch.ones(B, L, dtype=torch.bool)
    real[1, 4:] = False
    if not module.supports_mask:
        with pytest.raises(NotImplementedError):
            module(seq_x(), mask=real)
        return
    clean = seq_x()
    clean[1, 4:] = 0.0
    poisoned = clean.clone()
    poisoned[1, 4:] = float("nan")
    out = module(poisoned, mask=real)
    assert torch.isfinite(out[0]).all() and torch.isfinite(out[1, :4]).all()
    assert_close(out[1, :4], module(clean, mask=real)[1, :4])
    assert_close(out[0], module(clean, mask=real)[0])


CACHES: dict[str, type] = {"mha": KVCache, "linear": RecurrentState, "performer": RecurrentState}


def test_every_decoding_cache_is_listed():
    takes_cache = {
        n for n in SEQUENCE if "cache" in inspect.signature(attnzoo.info(n).obj.forward).parameters
    }
    assert takes_cache == set(CACHES)


@pytest.mark.parametrize("name", sorted(CACHES))
def test_decoding_cache_reused_with_another_batch_size(name):
    module = build(name)
    cache = CACHES[name]()
    with torch.no_grad():
        module(seq_x(b=1, length=3), is_causal=True, cache=cache)
        module(seq_x(b=1, length=1), is_causal=True, cache=cache)  # same batch: fine
        for batch in (2, 3):  # a batch-1 state must not broadcast over the rows
            with pytest.raises(ValueError, match=r"cache.*reset\(\)"):
                module(seq_x(b=batch, length=1), is_causal=True, cache=cache)
    assert len(cache) == 4  # the failed calls left the cache as it was


# ----------------------------------------------------------------------------------- vision
C = 32


def vision_inputs(module, spatial=(9, 7), batch=2, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    widths = getattr(module, "input_channels", (module.channels,))
    return tuple(torch.randn(batch, c, *spatial, generator=gen, dtype=dtype) for c in widths)


def first_input_name(module) -> str:
    return next(iter(inspect.signature(module.forward).parameters))


@pytest.mark.parametrize("name", VISION)
def test_vision_wrong_dtype(name):
    module = attnzoo.create(name, C).eval()  # float32 parameters
    inputs = vision_inputs(module, dtype=F64)
    if parameter_dtype(module) is None:  # simam, gather_excite: any floating dtype, kept
        out = module(*inputs)
        assert out.dtype == F64
        assert_close(out.float(), module(*(t.float() for t in inputs)), atol=1e-5, rtol=1e-4)
    else:
        arg = first_input_name(module)
        with pytest.raises(TypeError, match=rf"^{arg} has dtype torch.float64.*float32"):
            module(*inputs)


@pytest.mark.parametrize("name", VISION)
def test_vision_integer_input_list_and_channels(name):
    module = attnzoo.create(name, C).eval()
    arg = first_input_name(module)
    good = vision_inputs(module)
    with pytest.raises(TypeError, match=rf"^{arg} must be a floating tensor"):
        module(good[0].long(), *good[1:])
    with pytest.raises(TypeError, match=rf"^{arg} must be a torch.Tensor"):
        module(good[0].tolist(), *good[1:])
    wrong = torch.randn(2, good[0].shape[1] + 1, 9, 7)
    with pytest.raises(ValueError, match=rf"^{arg} must have {good[0].shape[1]} channels"):
        module(wrong, *good[1:])


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", VISION)
def test_vision_empty_batch_is_the_natural_empty_result(name, train):
    module = attnzoo.create(name, C).train(train)
    full = module(*vision_inputs(module)).shape
    inputs = tuple(t.requires_grad_(True) for t in vision_inputs(module, batch=0))
    out = module(*inputs)
    assert out.shape == (0, *full[1:])
    out.sum().backward()  # backward runs on the empty result


@pytest.mark.parametrize("spatial", [(0, 7), (9, 0)], ids=["H=0", "W=0"])
@pytest.mark.parametrize("name", VISION)
def test_vision_empty_map_is_a_clear_error(name, spatial):
    module = attnzoo.create(name, C).eval()
    arg = first_input_name(module)
    with pytest.raises(ValueError, match=rf"^{arg} must have every spatial dim >= 1"):
        module(*vision_inputs(module, spatial=spatial))


# ------------------------------------------------------------------------------- positional
D = 8


@dataclass
class Encoding:
    """How to call one positional encoding on a tensor: ``make(B, L, dtype, width)``."""

    build: Callable[[], torch.nn.Module]
    make: Callable[..., torch.Tensor]
    arg: str = "x"
    shape: Callable[[torch.Tensor], tuple] = lambda x: tuple(x.shape)


def _tokens(b, length, dtype, width=D):
    return torch.randn(b, length, width).to(dtype)


def _grid(b, length, dtype, width=D):
    return torch.randn(b, width, length, 3).to(dtype)


def _heads(b, length, dtype, width=D):
    return torch.randn(b, 2, length, width).to(dtype)


ENCODINGS = {
    "sinusoidal": Encoding(lambda: attnzoo.create("sinusoidal", D, max_len=16), _tokens),
    "learned": Encoding(lambda: attnzoo.create("learned", D, max_len=16), _tokens),
    "learned_2d": Encoding(lambda: attnzoo.create("learned_2d", D, grid_size=4), _grid),
    "sincos_2d": Encoding(lambda: attnzoo.create("sincos_2d", D), _grid),
    "rope": Encoding(lambda: attnzoo.create("rope", D), _heads),
    "relative": Encoding(
        lambda: attnzoo.create("relative", D, max_distance=3),
        _heads,
        arg="q",
        shape=lambda q: (*q.shape[:-1], q.shape[-2]),  # the (B, nh, L, L) score bias
    ),
}
SCORE_BIASES = {"alibi": 4, "t5_bias": 4}  # forward(q_len, kv_len) -> (1, nh, L, S)
WINDOW_BIASES = {"swin_bias": 4}  # forward() -> (1, nh, M, M) for the module's window


def test_every_positional_encoding_is_covered():
    assert set(ENCODINGS) | set(SCORE_BIASES) | set(WINDOW_BIASES) == set(POSITIONAL)


@pytest.mark.parametrize("name", sorted(WINDOW_BIASES))
def test_window_bias_bad_windows(name):
    heads = WINDOW_BIASES[name]
    assert attnzoo.create(name, heads, window_size=1)().shape == (1, heads, 1, 1)
    for bad, error in ((0, ValueError), (-2, ValueError), (2.5, TypeError), ((2,), TypeError)):
        with pytest.raises(error, match=r"^window_size must"):
            attnzoo.create(name, heads, window_size=bad)
    with pytest.raises(ValueError, match=r"^window_size must"):
        attnzoo.create(name, heads).resize(0)


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_positional_integer_input_list_and_width(name):
    case = ENCODINGS[name]
    module = case.build()
    with pytest.raises(TypeError, match=rf"^{case.arg} must be a floating tensor.*int64"):
        module(case.make(2, 5, torch.long))  # used to return truncated integer rows
    with pytest.raises(TypeError, match=rf"^{case.arg} must be a torch.Tensor"):
        module(case.make(2, 5, torch.float32).tolist())
    with pytest.raises(ValueError, match=rf"^{case.arg} must be .* with {D} channels"):
        module(case.make(2, 5, torch.float32, width=D + 1))


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_positional_wrong_dtype(name):
    case = ENCODINGS[name]
    module = case.build()
    x = case.make(2, 5, F64)
    if parameter_dtype(module) is None:  # fixed encodings: any floating dtype, returned as is
        out = module(x)
        assert out.dtype == F64 and out.shape == case.shape(x)
        assert_close(out.float(), module(x.float()), atol=1e-5, rtol=1e-5)
    else:
        with pytest.raises(TypeError, match=rf"^{case.arg} has dtype torch.float64.*float32"):
            module(x)


@pytest.mark.parametrize("shape", [(0, 5), (2, 0)], ids=["B=0", "L=0"])
@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_positional_empty_inputs_are_the_natural_empty_result(name, shape):
    case = ENCODINGS[name]
    x = case.make(*shape, torch.float32)
    out = case.build()(x)
    assert out.shape == case.shape(x) and out.numel() == 0


@pytest.mark.parametrize("name", sorted(SCORE_BIASES))
def test_score_bias_lengths(name):
    module = attnzoo.create(name, SCORE_BIASES[name])
    assert module(0).shape == (1, 4, 0, 0)
    assert module(0, 3).shape == (1, 4, 0, 3) and module(3, 0).shape == (1, 4, 3, 0)
    with pytest.raises(ValueError, match=r"^q_len must be an int >= 0, got -1"):
        module(-1)
    for bad in (2.5, torch.tensor(3), [3], True):
        with pytest.raises(TypeError, match=r"^q_len must be an int"):
            module(bad)
    with pytest.raises(TypeError, match=r"^kv_len must be an int"):
        module(3, 2.0)


def test_positional_nan_in_padding_never_reaches_real_positions():
    # relative: Shaw attention with a key-padding mask
    rel = attnzoo.create("relative", D, max_distance=3)
    q, k, v = (torch.randn(2, 2, 5, D) for _ in range(3))
    real = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    real[1, ..., 3:] = False
    clean_k, clean_v = k.clone(), v.clone()
    clean_k[1, :, 3:], clean_v[1, :, 3:] = 0.0, 0.0
    k[1, :, 3:], v[1, :, 3:] = float("nan"), float("nan")
    out = rel.attention(q, k, v, mask=real)
    assert torch.isfinite(out).all()
    assert_close(out, rel.attention(q, clean_k, clean_v, mask=real))
    # sincos_2d: positions count real pixels only; NaN in a padded pixel stays there
    pos = attnzoo.create("sincos_2d", D)
    x = torch.randn(1, D, 4, 4)
    pixels = torch.ones(1, 4, 4, dtype=torch.bool)
    pixels[:, 3, :] = False
    clean = pos(x, pixels)
    x[:, :, 3, :] = float("nan")
    out = pos(x, pixels)
    assert torch.isfinite(out[:, :, :3]).all()
    assert torch.equal(out[:, :, :3], clean[:, :, :3])
