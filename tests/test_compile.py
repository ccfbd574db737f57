"""``torch.compile(fullgraph=True)`` and ``torch.export`` of the token mixers (slow).

The pattern mechanisms and ``masked`` build their block masks and chunk plans on the first call
for a length (data-dependent sizes, like FlexAttention's ``create_block_mask``); after one eager
call the forward is a static graph. The registry-wide test reports which mechanisms compile
without a graph break: every one but those in ``GRAPH_BREAKS``, each with its reason.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo import masks

pytestmark = pytest.mark.slow
NAMES = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
LENGTH, DIM = 128, 32
# options that make the fast paths run at this length (not their dense shortcuts)
OPTIONS = {
    "local": {"window": 8},
    "longformer": {"window": 8},
    "bigbird": {"block_size": 8},
    "masked": {"mask_mod": masks.or_masks(masks.sliding_window(8), masks.global_tokens([0]))},
    "strided": {"stride": 8},
    "sparse_transformer": {"block": 8},
    "global": {"num_global": 2},
    "reformer": {"bucket_size": 16},
    "routing": {"num_clusters": 4},
    "sinkhorn": {"bucket_size": 16},
}
GRAPH_BREAKS = {
    # rows whose denominators underflow are found and recomputed at run time (data-dependent)
    "aft": (torch._dynamo.exc.UserError, torch._dynamo.exc.Unsupported),
    # a seeded torch.Generator draws the hash rotations inside forward
    "reformer": (torch._dynamo.exc.Unsupported,),
}
PATTERNS = ["mha", "masked", "local", "strided", "sparse_transformer", "global", "longformer"]
PATTERNS += ["bigbird"]


def build(name):
    options = dict(OPTIONS.get(name, {}))
    if getattr(attnzoo.info(name).obj, "fixed_length", False):
        options["seq_len"] = LENGTH
    torch.manual_seed(0)
    return attnzoo.create(name, DIM, num_heads=4, **options).eval()


def inputs():
    return torch.randn(2, LENGTH, DIM, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", NAMES)
def test_every_mixer_compiles_in_one_graph_or_says_why_not(name):
    module, x = build(name), inputs()
    torch._dynamo.reset()
    with torch.no_grad():
        want = module(x)  # the eager warm-up call builds block masks and plans
        compiled = torch.compile(module, fullgraph=True, backend="eager")
        if name in GRAPH_BREAKS:
            with pytest.raises(GRAPH_BREAKS[name]):
                compiled(x)
            return
        assert_close(compiled(x), want)


@pytest.mark.parametrize("name", PATTERNS)
def test_mha_and_pattern_mechanisms_compile_with_inductor_and_export(name):
    module, x = build(name), inputs()
    torch._dynamo.reset()
    with torch.no_grad():
        want = module(x)
        assert_close(torch.compile(module, fullgraph=True)(x), want, rtol=1e-4, atol=1e-5)
        exported = torch.export.export(module, (x,))
        assert_close(exported.module()(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["local", "bigbird"])
def test_compiled_block_sparse_training_matches_eager(name):
    module, x = build(name).train(), inputs().requires_grad_()
    module(x)  # warm-up
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True)
    grads = []
    for run in (module, compiled):
        x.grad = None
        module.zero_grad()
        run(x).square().sum().backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in module.parameters())])
    for eager, fused in zip(*grads, strict=True):
        assert_close(fused, eager, rtol=1e-4, atol=1e-5)
