"""Mask functions against brute-force definitions, composition, vmap compatibility, drawing."""

from __future__ import annotations

import pytest
import torch

from attnzoo import masks


def brute(rule, q_len, kv_len=None, batch=1):
    kv_len = kv_len or q_len
    return torch.tensor(
        [
            [[[bool(rule(b, i, j)) for j in range(kv_len)] for i in range(q_len)]]
            for b in range(batch)
        ]
    )


CASES = [
    (masks.causal(), lambda b, i, j: j <= i),
    (masks.causal(q_len=3, kv_len=7), lambda b, i, j: j <= i + 4, 3, 7),
    (masks.causal(q_len=3, kv_len=7, alignment="top_left"), lambda b, i, j: j <= i, 3, 7),
    (masks.sliding_window(2), lambda b, i, j: abs(i - j) <= 2),
    (masks.sliding_window(2, causal=True), lambda b, i, j: 0 <= i - j <= 2),
    (masks.sliding_window(0), lambda b, i, j: i == j),
    (masks.dilated(3), lambda b, i, j: (i - j) % 3 == 0),
    (masks.dilated(2, window=2), lambda b, i, j: (i - j) % 2 == 0 and abs(i - j) <= 4),
    (masks.strided(3, causal=True), lambda b, i, j: j <= i and (i - j <= 3 or (i - j) % 3 == 0)),
    (masks.global_tokens([0, 5]), lambda b, i, j: i in (0, 5) or j in (0, 5)),
    (masks.global_tokens(num_global=2), lambda b, i, j: i < 2 or j < 2),
    (
        masks.longformer(1, dilation=2, global_indices=[3]),
        lambda b, i, j: ((i - j) % 2 == 0 and abs(i - j) <= 2) or i == 3 or j == 3,
    ),
    (
        masks.longformer(2, num_global=1, causal=True),
        lambda b, i, j: j <= i and (i - j <= 2 or i == 0 or j == 0),
    ),
    (masks.prefix_lm(3), lambda b, i, j: j < 3 or j <= i),
]


@pytest.mark.parametrize("case", CASES)
def test_mask_equals_definition(case):
    mod, rule, q_len, kv_len = (*case, 11, 11) if len(case) == 2 else case
    assert torch.equal(masks.materialize(mod, q_len, kv_len), brute(rule, q_len, kv_len))


def test_per_sample_prefix_and_document():
    mod = masks.prefix_lm(torch.tensor([1, 3]))
    assert torch.equal(
        masks.materialize(mod, 5, batch=2),
        brute(lambda b, i, j: j < [1, 3][b] or j <= i, 5, batch=2),
    )
    ids = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 2, 2]])
    grid = masks.materialize(masks.and_masks(masks.document(ids), masks.causal()), 5, batch=2)
    assert torch.equal(grid, brute(lambda b, i, j: ids[b, i] == ids[b, j] and j <= i, 5, batch=2))


def test_random_blocks_seeded_and_counted():
    a = masks.materialize(masks.random_blocks(4, 2, q_len=16, seed=3), 16)
    b = masks.materialize(masks.random_blocks(4, 2, q_len=16, seed=3), 16)
    c = masks.materialize(masks.random_blocks(4, 2, q_len=16, seed=4), 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    blocks = a[0, 0].view(4, 4, 4, 4).permute(0, 2, 1, 3).flatten(2)  # (qb, kb, 16)
    assert torch.equal(blocks.all(-1).sum(-1), torch.full((4,), 2))  # 2 whole key blocks per row


def test_bigbird_structure():
    grid = masks.materialize(masks.bigbird(4, q_len=40, num_random_blocks=2, seed=0), 40)[0, 0]
    blocks = grid.view(10, 4, 10, 4).all(-1).all(1)  # (qb, kb) blocks fully visible
    assert torch.equal(blocks, grid.view(10, 4, 10, 4).any(-1).any(1))  # block granular
    assert blocks[0].all() and blocks[-1].all() and blocks[:, 0].all() and blocks[:, -1].all()
    for r in range(1, 9):
        window = {r - 1, r, r + 1}
        extra = set(blocks[r].nonzero().flatten().tolist()) - window - {0, 9}
        assert len(extra) == 2  # exactly the random blocks, outside window and globals


def test_composition():
    a, b = masks.sliding_window(1), masks.global_tokens([0])
    ga, gb = masks.materialize(a, 6), masks.materialize(b, 6)
    assert torch.equal(masks.materialize(masks.and_masks(a, b), 6), ga & gb)
    assert torch.equal(masks.materialize(masks.or_masks(a, b), 6), ga | gb)
    assert torch.equal(masks.materialize(masks.not_mask(a), 6), ~ga)


@pytest.mark.parametrize(("mod", "rule"), CASES[3:])
def test_mask_functions_run_under_flex_attention_vmap(mod, rule):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    dense = flex.create_mask(mod, 1, 1, 11, 11, device="cpu")
    assert torch.equal(dense, masks.materialize(mod, 11))


def test_to_string_and_errors():
    assert masks.to_string(masks.causal(), 2, filled="#", empty=".") == "#.\n##"
    with pytest.raises(ValueError, match="q_len"):
        masks.to_string(masks.causal())
    with pytest.raises(ValueError, match="window"):
        masks.sliding_window(-1)
    with pytest.raises(ValueError, match="odd"):
        masks.bigbird(4, q_len=8, num_window_blocks=2)
    with pytest.raises(ValueError, match="exactly one"):
        masks.global_tokens([0], num_global=1)
    with pytest.raises(TypeError, match="bool"):
        masks.materialize(lambda b, h, q, kv: q - kv, 3)
