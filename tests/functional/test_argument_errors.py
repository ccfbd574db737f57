"""Entry checks of the functional helpers: each error blames the argument that is wrong.

docs/design.md section 4: a bad argument raises ``TypeError``/``ValueError`` naming *that*
argument, what was expected and what was given, before any raw PyTorch error (or silent
broadcast) can happen further in.
"""

from __future__ import annotations

import pytest
import torch

from attnzoo import functional as F
from attnzoo import masks

Q, K, V = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
SCORES = torch.randn(2, 3, 5)


@pytest.mark.parametrize("fn", [F.attention, F.attention_reference])
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((Q, K.long(), V), {}, TypeError, r"^k must have the dtype of q.*k\.to\(q\.dtype\)"),
        ((Q, K, V.double()), {}, TypeError, r"^v must have the dtype of q"),
        ((Q.long(), K.long(), V.long()), {}, TypeError, r"^q must be a floating tensor"),
        ((Q, K[0], V), {}, ValueError, r"^k must have the rank of q \(4-D"),
        ((Q, K, V[0]), {}, ValueError, r"^v must have the rank of q \(4-D"),
        ((Q, K, V), {"is_causal": 1}, TypeError, r"^is_causal must be a bool"),
        ((Q, K, V), {"need_weights": 1}, TypeError, r"^need_weights must be a bool"),
    ],
)
def test_attention_blames_the_right_argument(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: F.dot_score(Q, K[:1].expand(3, 2, 5, 4)), ValueError, r"^keys must have batch"),
        (lambda: F.dot_score(Q.long(), K.long()), TypeError, r"^queries must be a floating"),
        (
            lambda: F.bilinear_score(Q, K, torch.ones(4, 4, dtype=torch.float64)),
            TypeError,
            r"^weight must have the dtype of queries",
        ),
        (
            lambda: F.additive_score(Q, K, torch.ones(3, 4).double(), None, torch.ones(3)),
            TypeError,
            r"^w_q must have the dtype of queries",
        ),
        (
            lambda: F.additive_score(Q, K, None, None, torch.ones(4, dtype=torch.float64)),
            TypeError,
            r"^w_v must have the dtype of queries",
        ),
        (
            lambda: F.attention_pooling(SCORES, torch.randn(3, 5, 4)),
            ValueError,
            r"^values must have batch dims",
        ),
        (
            lambda: F.attention_pooling(SCORES, torch.randn(2, 5, 4).double()),
            TypeError,
            r"^values must have the dtype of scores",
        ),
        (
            lambda: F.attention_pooling(SCORES, torch.randn(2, 5, 4), valid_lens=[1, 2]),
            TypeError,
            r"^valid_lens must be a torch.Tensor",
        ),
        (lambda: F.masked_softmax(SCORES, valid_lens=[1, 2]), TypeError, r"^valid_lens must be"),
        (lambda: F.causal_mask(-1, 3), ValueError, r"^q_len must be an int >= 0"),
        (lambda: F.causal_mask(3, 2.0), TypeError, r"^kv_len must be an int"),
        (lambda: F.merge_masks(torch.ones(2, 2).bool(), [1]), TypeError, r"^second must be"),
        (lambda: F.split_heads(torch.randn(3, 4), 2), ValueError, r"^x must be 3-D"),
        (lambda: F.split_heads(torch.randn(1, 3, 4), 0), ValueError, r"^num_heads must be"),
        (lambda: F.merge_heads([1.0]), TypeError, r"^x must be a torch.Tensor"),
        (lambda: F.average_pooling(torch.zeros(3), None, [1.0]), TypeError, r"^values must be"),
        (lambda: masks.and_masks(masks.causal(), 1), TypeError, r"mask function 1 must be"),
        (lambda: masks.prefix_lm(torch.tensor([1.5])), TypeError, r"^prefix_len must be"),
        (lambda: masks.document(torch.tensor([0.5, 1.0])), TypeError, r"^document_ids must"),
        (lambda: masks.global_tokens("ab"), TypeError, r"^indices must be"),
    ],
)
def test_helpers_blame_the_right_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize(
    ("queries", "keys", "values", "error", "match"),
    [
        (_r(2, 3, 1), _r(2, 5, 1), _r(3, 5, 1), ValueError, "^values must have batch dims"),
        (_r(2, 3, 1), _r(3, 5, 1), _r(3, 5, 1), ValueError, "^keys must have batch dims"),
        (_r(2, 3, 1), _r(2, 5, 1), _r(2, 5, 1).double(), TypeError, "^values must have the dtype"),
        (_r(2, 3, 1), _r(2, 5, 1).double(), _r(2, 5, 1), TypeError, "^keys must have the dtype"),
        (_r(3, 2), _r(5), _r(5), ValueError, r"^keys must be \(\.\.\., m, d\)"),
        (_r(3), _r(5), [1.0] * 5, TypeError, "^values must be a floating"),
    ],
)
def test_nadaraya_watson_values_and_keys_must_match_the_queries(
    queries, keys, values, error, match
):
    with pytest.raises(error, match=match):
        F.nadaraya_watson(queries, keys, values)


def test_nadaraya_watson_batch_broadcasting_and_bandwidth():
    q, k = torch.randn(2, 3, 1), torch.randn(2, 5, 1)
    shared = F.nadaraya_watson(q, k, torch.randn(1, 5, 2))[0]  # batch 1 broadcasts (documented)
    assert shared.shape == (2, 3, 2)
    with pytest.raises(ValueError, match="bandwidth must be finite"):
        F.nadaraya_watson(q, k, torch.randn(2, 5, 1), bandwidth=torch.tensor(float("nan")))


def test_empty_mask_drawing_is_empty():
    assert masks.to_string(masks.causal(), 0) == ""
