"""Block-streamed fast paths of linear, performer and nystrom equal their one-block results.

The non-causal kernel path, Nystromformer's key pass (online softmax) and its query blocks
(SDPA + conv skip) run in blocks of ``block_size`` tokens, reusing buffers when no autograd
graph is recorded; every block size, with and without a graph, and the explicit (recording)
path must give the same output.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import attnzoo
import attnzoo.efficient.linear
import attnzoo.efficient.nystrom
import attnzoo.efficient.performer  # registers the mechanisms
from attnzoo.efficient._kernel_features import orthogonal_gaussian, softmax_kernel_features
from attnzoo.efficient.nystrom import iterative_pinv

DIM, HEADS = 16, 2
F64 = torch.float64


def build(name, **kwargs):
    torch.manual_seed(0)
    return attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()


def x_(b=2, length=9, seed=0):
    return torch.randn(b, length, DIM, generator=torch.Generator().manual_seed(seed), dtype=F64)


KERNELS = [("linear", {}), ("performer", {"nb_features": 24}), ("performer", {"kernel": "relu"})]


@pytest.mark.parametrize(("name", "kwargs"), KERNELS)
@pytest.mark.parametrize("cross", [False, True])
def test_kernel_key_and_query_blocks_equal_one_block(name, kwargs, cross):
    module = build(name, **kwargs)
    x = x_()
    context = x_(length=7, seed=1) if cross else None
    real = torch.ones(2, 7 if cross else 9, dtype=torch.bool)
    real[1, 4:] = False
    one = module(x, context, mask=real)  # block_size >= L, S: one block
    for block in (1, 2, 4):  # uneven last blocks, more key blocks than query blocks or fewer
        module.block_size = block
        assert_close(module(x, context, mask=real), one)  # autograd graph: fresh tensors
        with torch.no_grad():  # no graph: the feature buffer is reused block after block
            assert_close(module(x, context, mask=real), one)
    with attnzoo.viz.record_attention(module):  # explicit weights, no blocks
        assert_close(module(x, context, mask=real), one)


@pytest.mark.parametrize(("name", "kwargs"), KERNELS)
def test_kernel_blocks_without_keys_give_the_output_bias(name, kwargs):
    module = build(name, **kwargs)
    module.block_size = 3
    out = module(x_(length=5), x_(length=0))
    assert_close(out, module.out_proj.bias.expand(2, 5, DIM))


@pytest.mark.parametrize("conv", [None, 5])
@pytest.mark.parametrize("padding", [None, "head", "tail", "whole sample"])
def test_nystrom_key_and_query_blocks_equal_one_block(conv, padding):
    module = build("nystrom", num_landmarks=4, conv_kernel_size=conv)
    x = x_(length=11)
    real = None
    if padding is not None:  # sample 1 padded; "tail": its last two of four segments are dead
        real = torch.ones(2, 11, dtype=torch.bool)
        real[1, {"head": slice(0, 5), "tail": slice(6, None)}.get(padding, slice(None))] = False
    one = module(x, mask=real)
    for block in (1, 2, 3, 10):  # blocks shorter than the conv halo, uneven last block
        module.block_size = block
        assert_close(module(x, mask=real), one)
        with torch.no_grad():  # no graph: the score buffer is reused block after block
            assert_close(module(x, mask=real), one)
    with attnzoo.viz.record_attention(module):  # explicit kernels, whole K and one whole conv
        assert_close(module(x, mask=real), one)
    if padding == "whole sample":
        assert_close(one[1], module.out_proj.bias.expand(11, DIM))


def test_iterative_pinv_reused_buffers_equal_the_autograd_path():
    a = torch.softmax(2 * torch.randn(3, 2, 8, 8, dtype=F64), dim=-1).requires_grad_(True)
    with_graph = iterative_pinv(a, 5)
    with torch.no_grad():
        assert_close(iterative_pinv(a, 5), with_graph)
    with_graph.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_softmax_features_written_into_a_buffer_and_row_normalised():
    hd, m = 8, 32
    x = torch.randn(3, 5, hd, dtype=F64)
    w = orthogonal_gaussian(m, hd, dtype=F64)
    for kwargs in ({"shift": 1.5}, {"normalise_rows": True}):
        buffer = torch.full((3, 5, m), math.nan, dtype=F64)
        written = softmax_kernel_features(x, w, out=buffer, **kwargs)
        assert written.data_ptr() == buffer.data_ptr()
        assert_close(written, softmax_kernel_features(x, w, **kwargs))
    plain = softmax_kernel_features(x, w)  # exp(w^T x' - |x'|^2 / 2) / sqrt(m)
    expected = torch.exp(x @ w.T * hd**-0.25 - 0.5 * hd**-0.5 * x.square().sum(-1, True)) / m**0.5
    assert_close(plain, expected)
    rows = softmax_kernel_features(x, w, normalise_rows=True)  # largest feature 1 per row
    assert_close(rows.amax(-1), torch.ones(3, 5, dtype=F64))
    assert_close(rows / rows.sum(-1, keepdim=True), torch.softmax(x @ w.T * hd**-0.25, -1))
