"""Clustering / sorting mechanisms: reformer, routing, sinkhorn.

Exactness regimes (issue 3): reformer with one bucket == dense shared-QK attention with the
self-exclusion rule; routing with one cluster == dense attention of the layer-normalised queries
and keys; sinkhorn with one block == dense attention. Beyond those, each mechanism is checked
against a plain reference built here from ``attention_reference`` and loops (given the hash
buckets, the centroids or the permutation), and failure mode 35 (Reformer LSH).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import attnzoo
import attnzoo.efficient.reformer as reformer_mod
import attnzoo.efficient.routing  # registers "routing"
import attnzoo.efficient.sinkhorn as sinkhorn_mod
from attnzoo.functional.attention import attention_reference

DIM, HEADS = 16, 2


def make(name, **kwargs):
    return attnzoo.create(name, DIM, num_heads=HEADS, **kwargs).double().eval()


def x_(batch=2, length=7, seed=0):
    return torch.randn(batch, length, DIM, generator=torch.Generator().manual_seed(seed)).double()


def padding(batch, length, cut):
    real = torch.ones(batch, length, dtype=torch.bool)
    real[-1, cut:] = False
    return real


def heads(module, linear, x):
    """``linear(x)`` split into heads ``(B, nh, L, hd)``."""
    batch, length, _ = x.shape
    return linear(x).view(batch, length, module.num_heads, module.head_dim).transpose(1, 2)


def finish(module, out):
    batch, _, length, _ = out.shape
    return module.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


def key_mask(real, length, kv_len, causal):
    """Bool ``(B | 1, 1, L, S)`` from a padding mask and bottom-right causality."""
    mask = torch.ones(1, 1, length, kv_len, dtype=torch.bool)
    if causal:
        mask = mask & torch.ones(length, kv_len, dtype=torch.bool).tril(kv_len - length)
    return mask if real is None else mask & real[:, None, None, :]


# --------------------------------------------------------------------------------- reformer


def shared_qk_reference(module, x, real=None, causal=False, counts=None):
    """Dense shared-QK attention: unit keys, scale 1, self only when nothing else is visible.

    ``counts[b, h, i, j]`` (optional) is how many times ``i`` sees ``j`` over the hash rounds;
    the softmax then weighs ``j`` by it (no counts: every allowed pair once).
    """
    q, v = heads(module, module.q_proj, x), heads(module, module.v_proj, x)
    length = x.shape[1]
    visible = key_mask(real, length, length, causal) if counts is None else counts > 0
    eye = torch.eye(length, dtype=torch.bool)
    others = (visible & ~eye).any(dim=-1, keepdim=True)
    allowed = visible & ~(eye & others)
    if counts is None:
        bias = allowed
    else:
        bias = torch.where(allowed, counts.clamp_min(1).log(), float("-inf")).to(x.dtype)
    k = q / q.norm(dim=-1, keepdim=True)
    return finish(module, attention_reference(q, k, v, mask=bias, scale=1.0))


def lsh_counts(module, x, real=None, causal=False):
    """``N[b, h, i, j]``: rounds in which ``i`` sees ``j`` (same bucket, own or previous chunk)."""
    batch, length, _ = x.shape
    q = heads(module, module.q_proj, x)
    count = reformer_mod.num_buckets(length, module.bucket_size)
    buckets, _ = module.hash_buckets(q, count)
    chunk = min(module.bucket_size, length)
    counts = torch.zeros(batch, module.num_heads, length, length, dtype=x.dtype)
    for b in range(batch):
        for h in range(module.num_heads):
            for bucket_of in buckets[b, h].tolist():
                members: dict[int, list[int]] = {}
                for i in range(length):
                    if real is None or real[b, i]:
                        members.setdefault(bucket_of[i], []).append(i)
                for tokens in members.values():  # in position order
                    for rank_i, i in enumerate(tokens):
                        lo = (rank_i // chunk - 1) * chunk
                        hi = (rank_i // chunk + 1) * chunk
                        for j in tokens[max(lo, 0) : hi]:
                            if not causal or j <= i:
                                counts[b, h, i, j] += 1
    return counts


@pytest.mark.parametrize("n_hashes", [1, 3])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_reformer_one_bucket_equals_dense_shared_qk(n_hashes, causal, padded):
    module = make("reformer", bucket_size=16, n_hashes=n_hashes)
    x = x_(length=11)
    real = padding(2, 11, 6) if padded else None
    out = module(x, mask=real, is_causal=causal)
    expected = shared_qk_reference(module, x, real, causal)
    rows = torch.ones(2, 11, dtype=torch.bool) if real is None else real
    assert_close(out[rows], expected[rows])


@pytest.mark.parametrize(
    ("length", "bucket_size", "n_hashes", "causal", "padded"),
    [
        (40, 4, 1, False, False),
        (37, 4, 2, True, False),
        (37, 4, 3, True, True),
        (45, 8, 2, False, True),
    ],
)
def test_reformer_equals_dense_reference_on_its_buckets(
    length, bucket_size, n_hashes, causal, padded
):
    module = make("reformer", bucket_size=bucket_size, n_hashes=n_hashes)
    x = x_(length=length, seed=1)
    real = padding(2, length, length // 2) if padded else None
    counts = lsh_counts(module, x, real, causal)
    assert (counts.sum(-1) > 0).sum() > 0 and (counts == 0).any()  # really sparse
    out = module(x, mask=real, is_causal=causal)
    expected = shared_qk_reference(module, x, real, causal, counts=counts)
    rows = torch.ones(2, length, dtype=torch.bool) if real is None else real
    assert_close(out[rows], expected[rows])


def test_reformer_factorised_hash_above_128_buckets():
    assert reformer_mod.bucket_factors(128) == (128,)
    assert reformer_mod.bucket_factors(256) == (16, 16)
    assert reformer_mod.num_buckets(7, 64) == 1
    assert reformer_mod.num_buckets(129, 64) == 4  # ceil(129 / 64) = 3, made even
    module = make("reformer", bucket_size=2)
    x = x_(batch=1, length=300, seed=2)
    buckets, count = module.hash_buckets(heads(module, module.q_proj, x), 150)
    assert count == 16 * 8 and int(buckets.max()) < count and buckets.unique().numel() > 50
    assert_close(module(x), shared_qk_reference(module, x, counts=lsh_counts(module, x)))


def test_reformer_token_sees_itself_only_when_nothing_else_is_visible():
    module = make("reformer", bucket_size=4, n_hashes=2)
    x = x_(length=33, seed=3)
    for causal in (False, True):
        with attnzoo.viz.record_attention(module) as maps:
            module(x, is_causal=causal)
        (weights,) = maps.values()
        diagonal = weights.diagonal(dim1=-2, dim2=-1)
        alone = (weights - torch.diag_embed(diagonal)).sum(-1) == 0  # only itself visible
        assert_close(diagonal[alone], torch.ones_like(diagonal[alone]))
        assert (diagonal[~alone] == 0).all()
        assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    assert_close(weights[..., 0, 0], torch.ones_like(weights[..., 0, 0]))  # causal: first token


def test_reformer_hashing_is_seeded_in_eval_and_redrawn_in_training():
    x = x_(length=64, seed=4)
    a, b = make("reformer", bucket_size=4, seed=7), make("reformer", bucket_size=4, seed=7)
    b.load_state_dict(a.state_dict())
    q = heads(a, a.q_proj, x)
    torch.manual_seed(1)
    first, _ = a.hash_buckets(q, 16)
    torch.manual_seed(2)
    assert torch.equal(first, b.hash_buckets(q, 16)[0])  # same seed, any global RNG state
    assert torch.equal(a(x), a(x))
    other = make("reformer", bucket_size=4, seed=8)
    assert not torch.equal(first, other.hash_buckets(q, 16)[0])
    a.train()
    torch.manual_seed(3)
    drawn = a.hash_buckets(q, 16)[0]
    assert not torch.equal(drawn, a.hash_buckets(q, 16)[0])  # redrawn every call
    torch.manual_seed(3)
    assert torch.equal(drawn, a.hash_buckets(q, 16)[0])  # reproducible under a fixed seed


def test_reformer_padding_is_isolated():
    module = make("reformer", bucket_size=4, n_hashes=2)
    x, real = x_(length=30, seed=5), padding(2, 30, 17)
    out = module(x, mask=real)
    garbage = x.clone()
    garbage[1, 17:] = 1e4 * torch.randn(13, DIM, dtype=torch.float64)
    assert_close(module(garbage, mask=real)[real], out[real])
    garbage[1, 17:] = float("nan")
    assert torch.isfinite(module(garbage, mask=real)[real]).all()
    with attnzoo.viz.record_attention(module) as maps:
        module(x, mask=real)
    (weights,) = maps.values()
    assert (weights[1, :, :, 17:] == 0).all()  # padding is never attended
    assert (weights[1, :, 17:] == 0).all()  # and attends to nothing
    assert_close(out[1, 17:], module.out_proj.bias.expand(13, DIM))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("length", "bucket_size"), [(40, 4), (37, 8), (9, 16)])
def test_reformer_fused_chunks_equal_grouped_chunks_with_gradients(causal, length, bucket_size):
    """One round without dropout runs fused SDPA; the grouped path (dropout, rounds, probe)
    computes the same function, values and gradients, padding with NaN included."""
    module = make("reformer", bucket_size=bucket_size, n_hashes=1)
    x, real = x_(length=length, seed=21), padding(2, length, length // 2 + 1)
    x[1, length // 2 + 1 :] = float("nan")
    results = []
    for fused in (True, False):
        inputs = x.clone().requires_grad_(True)
        shape = (2, length, HEADS, DIM // HEADS)
        q, v = module.q_proj(inputs).view(shape), module.v_proj(inputs).view(shape)
        out = module._attend(q, v, real, causal, fused=fused)  # (B, nh, L, hd)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).double()
        (out * weight).nan_to_num().sum().backward()
        results.append((out.detach(), inputs.grad[real]))
    assert torch.isfinite(results[0][0]).all() and torch.isfinite(results[0][1]).all()
    assert (results[0][0][1, :, length // 2 + 1 :] == 0).all()  # padding outputs are zeros
    assert_close(results[0][0], results[1][0])
    assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("name", ["reformer", "routing", "sinkhorn"])
def test_strictly_causal_on_long_inputs(name):
    options = {
        "reformer": {"bucket_size": 4, "n_hashes": 2},
        "routing": {"num_clusters": 4},
        "sinkhorn": {"seq_len": 40, "bucket_size": 4},
    }[name]
    module = make(name, **options)
    x = x_(length=40, seed=6)
    out = module(x, is_causal=True)
    for t in (1, 13, 27):
        changed = x.clone()
        changed[:, t:] = torch.randn_like(changed[:, t:])
        assert_close(module(changed, is_causal=True)[:, :t], out[:, :t])


def test_reformer_error_falls_as_hashes_grow():
    errors = {}
    for n_hashes in (1, 8):
        total = 0.0
        for seed in range(3):
            torch.manual_seed(seed)
            module = make("reformer", bucket_size=8, n_hashes=n_hashes, seed=seed)
            x = x_(length=64, seed=seed)
            full = shared_qk_reference(module, x)
            total += ((module(x) - full).norm() / full.norm()).item()
        errors[n_hashes] = total / 3
    assert errors[8] < 0.6 * errors[1]


def test_reformer_rejects_what_it_cannot_do():
    module = make("reformer")
    with pytest.raises(NotImplementedError):
        module(x_(), x_(length=5))
    with pytest.raises(NotImplementedError):
        module(x_(), mask=torch.ones(2, 7, 7, dtype=torch.bool))
    assert not hasattr(module, "k_proj")
    with pytest.raises(ValueError, match="bucket_size"):
        make("reformer", bucket_size=0)


# ---------------------------------------------------------------------------------- routing


def routing_reference(module, x, context=None, real=None, causal=False):
    """Dense attention of LN(q), LN(k) where query ``i`` sees key ``j`` as often as routed."""
    source = x if context is None else context
    q = F.layer_norm(heads(module, module.q_proj, x), (module.head_dim,))
    k = F.layer_norm(heads(module, module.k_proj, source), (module.head_dim,))
    v = heads(module, module.v_proj, source)
    batch, length, kv_len = x.shape[0], x.shape[1], source.shape[1]
    key_ok = torch.ones(batch, kv_len, dtype=torch.bool) if real is None else real
    query_ok = key_ok if context is None else torch.ones(batch, length, dtype=torch.bool)
    mu = module.centroids
    q_score = torch.einsum("bhld,hcd->bhcl", q, mu)
    k_score = torch.einsum("bhsd,hcd->bhcs", k, mu)
    clusters = module.num_clusters
    wq, wk, offset = -(-length // clusters), -(-kv_len // clusters), kv_len - length
    counts = torch.zeros(batch, module.num_heads, length, kv_len, dtype=x.dtype)
    for b in range(batch):
        for h in range(module.num_heads):
            for c in range(clusters):
                if causal:  # nearest centroid, chunks of wq queries, window of 2 wk keys
                    qs = [
                        i
                        for i in range(length)
                        if query_ok[b, i] and q_score[b, h, :, i].argmax() == c
                    ]
                    ks = [
                        j
                        for j in range(kv_len)
                        if key_ok[b, j] and k_score[b, h, :, j].argmax() == c
                    ]
                    for start in range(0, len(qs), wq):
                        chunk = qs[start : start + wq]
                        seen = sum(1 for j in ks if j <= chunk[0] + offset)
                        for i in chunk:
                            for j in ks[max(seen - wk, 0) : seen + wk]:
                                counts[b, h, i, j] += j <= i + offset
                else:  # balanced: the wq closest queries and wk closest keys
                    qs = sorted(
                        (i for i in range(length) if query_ok[b, i]),
                        key=lambda i: -q_score[b, h, c, i],
                    )
                    ks = sorted(
                        (j for j in range(kv_len) if key_ok[b, j]),
                        key=lambda j: -k_score[b, h, c, j],
                    )
                    for i in qs[:wq]:
                        for j in ks[:wk]:
                            counts[b, h, i, j] += 1
    bias = torch.where(counts > 0, counts.clamp_min(1).log(), float("-inf")).to(x.dtype)
    return finish(module, attention_reference(q, k, v, mask=bias))


@pytest.mark.parametrize(("length", "kv_len"), [(9, 9), (9, 6), (6, 9)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_routing_one_cluster_equals_dense(length, kv_len, causal, padded):
    module = make("routing", num_clusters=1)
    x = x_(length=length)
    context = None if length == kv_len else x_(length=kv_len, seed=9)
    real = padding(2, kv_len, 4) if padded else None
    out = module(x, context, mask=real, is_causal=causal)
    q = F.layer_norm(heads(module, module.q_proj, x), (module.head_dim,))
    source = x if context is None else context
    k = F.layer_norm(heads(module, module.k_proj, source), (module.head_dim,))
    v = heads(module, module.v_proj, source)
    mask = key_mask(real, length, kv_len, causal)
    expected = finish(module, attention_reference(q, k, v, mask=mask))
    rows = real if (padded and context is None) else torch.ones(2, length, dtype=torch.bool)
    assert_close(out[rows], expected[rows])


@pytest.mark.parametrize(
    ("length", "kv_len", "clusters", "causal", "padded"),
    [
        (30, 30, 4, False, False),
        (31, 31, 4, False, True),
        (33, 33, 4, True, False),
        (33, 33, 3, True, True),
        (20, 37, 3, True, True),
        (37, 20, 3, False, True),
    ],
)
def test_routing_equals_dense_reference_on_its_clusters(length, kv_len, clusters, causal, padded):
    module = make("routing", num_clusters=clusters)
    x = x_(length=length, seed=10)
    context = None if length == kv_len else x_(length=kv_len, seed=11)
    real = padding(2, kv_len, kv_len // 2) if padded else None
    out = module(x, context, mask=real, is_causal=causal)
    expected = routing_reference(module, x, context, real, causal)
    rows = real if (padded and context is None) else torch.ones(2, length, dtype=torch.bool)
    assert_close(out[rows], expected[rows])


def test_routing_top_k_is_balanced():
    module = make("routing", num_clusters=4)
    q_score = torch.randn(2, HEADS, 4, 30, dtype=torch.float64)
    k_score = torch.randn(2, HEADS, 4, 22, dtype=torch.float64)
    q_index, q_filled, k_index, _ = module._top_k_groups(q_score, k_score, 30, 22)
    assert q_index.shape == (2, HEADS, 4, 8) and k_index.shape == (2, HEADS, 4, 6)
    assert q_filled.all()
    for members in q_index.flatten(0, 2):  # distinct members in position order
        assert members.unique().numel() == 8 and (members.diff() > 0).all()
    best = q_score.topk(8, dim=-1).indices.sort(-1).values
    assert torch.equal(q_index, best)


def test_routing_centroids_move_by_moving_average_in_training_only():
    module = make("routing", num_clusters=1, decay=0.9)
    x, real = x_(length=10, seed=12), padding(2, 10, 6)
    before = module.centroids.clone()
    module(x, mask=real)
    assert torch.equal(module.centroids, before)  # eval: frozen
    module.train()
    module(x, mask=real)
    q = F.layer_norm(heads(module, module.q_proj, x), (module.head_dim,))
    k = F.layer_norm(heads(module, module.k_proj, x), (module.head_dim,))
    both = torch.cat([q, k], dim=2)  # (B, nh, 2L, hd)
    keep = torch.cat([real, real], dim=1)[:, None, :, None]
    mean = (both * keep).sum(dim=(0, 2)) / keep.sum()
    assert_close(module.centroids, 0.9 * before + 0.1 * mean.unsqueeze(1))
    with pytest.raises(ValueError, match="decay"):
        make("routing", decay=1.0)


# --------------------------------------------------------------------------------- sinkhorn


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sinkhorn_one_block_equals_dense(causal, padded):
    module = make("sinkhorn", seq_len=12, bucket_size=12)
    assert module.sort_weight is None  # one block: nothing to sort, no sort net
    x, real = x_(length=12), (padding(2, 12, 5) if padded else None)
    q, k, v = (heads(module, lin, x) for lin in (module.q_proj, module.k_proj, module.v_proj))
    expected = finish(module, attention_reference(q, k, v, mask=key_mask(real, 12, 12, causal)))
    rows = torch.ones(2, 12, dtype=torch.bool) if real is None else real
    assert_close(module(x, mask=real, is_causal=causal)[rows], expected[rows])
    longer = make("sinkhorn", seq_len=40, bucket_size=12)  # one block at this length
    longer.load_state_dict(module.state_dict(), strict=False)
    assert_close(longer(x, mask=real, is_causal=causal)[rows], expected[rows])


def blockwise_reference(q, k, v, sorted_values, perm, block, real):
    """Block ``i`` attends, in one softmax, to its own block and to block ``perm[i]``.

    ``sorted_values`` is what the sorted slots carry as values: ``v`` (right) or ``k`` (the bug
    of a popular port, which sorted the keys into the values).
    """
    out = torch.zeros_like(q)
    for i, j in enumerate(perm.tolist()):
        own, moved = slice(i * block, (i + 1) * block), slice(j * block, (j + 1) * block)
        keys = torch.cat([k[:, :, own], k[:, :, moved]], dim=2)
        values = torch.cat([v[:, :, own], sorted_values[:, :, moved]], dim=2)
        keep = torch.cat([real[:, own], real[:, moved]], dim=1)[:, None, None, :]
        out[:, :, own] = attention_reference(q[:, :, own], keys, values, mask=keep)
    return out


def test_block_sinkhorn_attention_sorts_keys_and_values_alike():
    torch.manual_seed(13)
    batch, nh, blocks, block, width = 2, 2, 5, 3, 4
    q, k, v = (torch.randn(batch, nh, blocks * block, width, dtype=torch.float64) for _ in range(3))
    real = torch.ones(batch, blocks * block, dtype=torch.bool)
    real[1, 11:] = False
    k, v = (t.masked_fill(~real[:, None, :, None], 0.0) for t in (k, v))
    perm = torch.tensor([2, 0, 4, 1, 3])  # no block is sent to itself
    sort = F.one_hot(perm, blocks).to(torch.float64).expand(batch, nh, blocks, blocks)
    blocked = (t.view(batch, nh, blocks, block, width) for t in (q * width**-0.5, k, v))
    out, _, _ = sinkhorn_mod.block_sinkhorn_attention(
        *blocked, sort, real.view(batch, 1, blocks, block), is_causal=False
    )
    out = out.view_as(q)
    assert_close(out, blockwise_reference(q, k, v, v, perm, block, real))
    buggy = blockwise_reference(q, k, v, k, perm, block, real)
    assert not torch.allclose(out, buggy)  # the test tells the two apart


def test_sinkhorn_zero_values_give_zero_attention_output():
    module = make("sinkhorn", seq_len=40, bucket_size=4)
    with torch.no_grad():
        module.v_proj.weight.zero_()
        module.v_proj.bias.zero_()
    out = module(x_(length=37, seed=14))  # keys are not zero: sorting them into values would show
    assert torch.equal(out, module.out_proj.bias.expand_as(out))


@pytest.mark.parametrize("padded", [True, False])  # unpadded whole blocks take fused SDPA
def test_sinkhorn_module_equals_reference_given_its_permutation(padded):
    module = make("sinkhorn", seq_len=24, bucket_size=4)
    length = 23 if padded else 24
    x = x_(length=length, seed=15)
    real = padding(2, 23, 14) if padded else torch.ones(2, 24, dtype=torch.bool)
    for causal in (False, True):
        q, k, v = (heads(module, lin, x) for lin in (module.q_proj, module.k_proj, module.v_proj))
        kz = F.pad(k.masked_fill(~real[:, None, :, None], 0.0), (0, 0, 0, 24 - length))
        sort = module.sort_matrix(kz.view(2, HEADS, 6, 4, module.head_dim), causal)
        if causal:
            assert torch.equal(sort, sort.tril(-1))  # only earlier blocks
        else:
            assert (sort > 0).all()
        # keys/values of block i: its own tokens plus sum_j sort_ij (block j)
        okp = F.pad(real, (0, 24 - length))
        own = torch.arange(24) // 4
        expected = torch.zeros(2, HEADS, 24, module.head_dim, dtype=torch.float64)
        qp, vz = (
            F.pad(q, (0, 0, 0, 24 - length)),
            F.pad(v.masked_fill(~real[:, None, :, None], 0.0), (0, 0, 0, 24 - length)),
        )
        for i in range(24):
            block = own[i]
            skeys = torch.einsum("bhj,bhjtd->bhtd", sort[:, :, block], kz.view(2, HEADS, 6, 4, -1))
            svals = torch.einsum("bhj,bhjtd->bhtd", sort[:, :, block], vz.view(2, HEADS, 6, 4, -1))
            sok = torch.einsum("bhj,bjt->bht", sort[:, :, block], okp.view(2, 6, 4).double()) > 0
            keys = torch.cat([kz[:, :, own == block], skeys], dim=2)
            vals = torch.cat([vz[:, :, own == block], svals], dim=2)
            ok_own = okp[:, None, own == block].expand(2, HEADS, 4).clone()
            if causal:
                ok_own &= torch.arange(4) <= i % 4
            keep = torch.cat([ok_own, sok], dim=-1)[:, :, None, :]
            expected[:, :, i] = attention_reference(qp[:, :, i : i + 1], keys, vals, mask=keep)[
                :, :, 0
            ]
        out = finish(module, expected[:, :, :length])
        given = module(x, mask=real if padded else None, is_causal=causal)
        assert_close(given[real], out[real])
        with torch.no_grad():
            given = module(x, mask=real if padded else None, is_causal=causal)
        assert_close(given[real], out[real])


@pytest.mark.parametrize("causal", [False, True])
def test_sinkhorn_fused_layer_equals_masked_layer_with_gradients(causal):
    """Whole blocks without padding run fused SDPA; an all-True padding mask takes the masked
    path: the same function, values and gradients (weights and sort net included)."""
    module = make("sinkhorn", seq_len=32, bucket_size=4)
    x = x_(length=32, seed=22)
    results = []
    for mask in (None, torch.ones(2, 32, dtype=torch.bool)):
        module.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        out = module(inputs, mask=mask, is_causal=causal)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in module.parameters()]
        results.append((out.detach(), inputs.grad, grads))
    assert_close(results[0][0], results[1][0])
    assert_close(results[0][1], results[1][1])
    for fused, masked in zip(results[0][2], results[1][2], strict=True):
        assert_close(fused, masked)
    with torch.no_grad():  # without autograd [own; sorted] is written in place, not by cat
        assert_close(module(x, is_causal=causal), results[1][0])
        assert_close(module(x[:1], is_causal=causal), results[1][0][:1])  # B = 1: pure views


@pytest.mark.parametrize("causal", [False, True])
# chunks of 1, 2 or 3 (uneven) blocks of one row, of two rows (3 rows: 2 + 1), or everything
@pytest.mark.parametrize("stream_tokens", [4, 8, 12, 64, 1000])
def test_sinkhorn_streamed_chunks_equal_the_masked_layer(causal, stream_tokens, monkeypatch):
    """Without autograd whole blocks run chunk by chunk: any chunking, the same function."""
    from attnzoo.efficient import _sorted_blocks

    monkeypatch.setattr(_sorted_blocks, "STREAM_TOKENS", stream_tokens)
    module = make("sinkhorn", seq_len=32, bucket_size=4)
    x = x_(batch=3, length=32, seed=23)
    with torch.no_grad():
        masked = module(x, mask=torch.ones(3, 32, dtype=torch.bool), is_causal=causal)
        assert_close(module(x, is_causal=causal), masked)
        assert_close(module(x[1:2], is_causal=causal), masked[1:2])


def test_sinkhorn_operator_tends_to_doubly_stochastic():
    logits = torch.randn(3, 6, 6, dtype=torch.float64)
    matrix = sinkhorn_mod.sinkhorn(logits, 200)
    assert_close(matrix.sum(-1), torch.ones(3, 6, dtype=torch.float64), atol=1e-6, rtol=0)
    assert_close(matrix.sum(-2), torch.ones(3, 6, dtype=torch.float64), atol=1e-6, rtol=0)
    sharp = sinkhorn_mod.sinkhorn(logits / 0.01, 200)  # low temperature: near a permutation
    assert (sharp.amax(-1) > 0.9).all()
    assert torch.equal(sharp.argmax(-1).sort(-1).values, torch.arange(6).expand(3, 6))
    masked = logits.masked_fill(torch.eye(6, dtype=torch.bool), float("-inf"))
    assert (sinkhorn_mod.sinkhorn(masked, 5).diagonal(dim1=-2, dim2=-1) == 0).all()


def test_sinkhorn_gumbel_noise_in_training_only_and_seq_len():
    module = make("sinkhorn", seq_len=40, bucket_size=4, attn_drop=0.3)
    x = x_(length=40, seed=16)
    assert torch.equal(module(x), module(x))
    module.train()
    assert not torch.equal(module(x), module(x))
    module.eval()
    assert module(x_(length=9)).shape == (2, 9, DIM)  # shorter: first blocks of the sort net
    with pytest.raises(ValueError, match="seq_len"):
        module(x_(length=41))
    with pytest.raises(TypeError):
        attnzoo.create("sinkhorn", DIM, num_heads=HEADS)  # seq_len is required
    with pytest.raises(NotImplementedError):
        module(x, x)


# --------------------------------------------------------------------------------- all three

LONG = {  # reformer with one round takes its fused path, with two its grouped one
    "reformer": ("reformer", {"bucket_size": 4, "n_hashes": 2}),
    "reformer_one_round": ("reformer", {"bucket_size": 4, "n_hashes": 1}),
    "routing": ("routing", {"num_clusters": 4}),
    "sinkhorn": ("sinkhorn", {"seq_len": 32, "bucket_size": 4}),
}


@pytest.mark.parametrize("case", sorted(LONG))
@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance_and_dead_rows_on_long_inputs(case, causal):
    name, options = LONG[case]
    module = make(name, **options)
    x, real = x_(length=29, seed=17), padding(2, 29, 13)
    out = module(x, mask=real, is_causal=causal)
    garbage = x.clone()
    garbage[1, 13:] = 1e3 * torch.randn(16, DIM, dtype=torch.float64)
    assert_close(module(garbage, mask=real, is_causal=causal)[real], out[real])
    garbage[1, 13:] = float("nan")  # NaN stored in padding reaches nothing, not even gradients
    module.train()
    nan_in = garbage.clone().requires_grad_(True)
    y = module(nan_in, mask=real, is_causal=causal)
    y[real].sum().backward()
    assert torch.isfinite(y[real]).all() and torch.isfinite(nan_in.grad[real]).all()
    assert all(torch.isfinite(b).all() for b in module.buffers())  # routing's centroids
    module.zero_grad(set_to_none=True)  # (weight gradients see the NaN inputs through x)
    dead = x.clone().requires_grad_(True)
    y = module(dead, mask=torch.zeros(2, 29, dtype=torch.bool), is_causal=causal)
    y.square().sum().backward()
    assert_close(y, module.out_proj.bias.expand_as(y))  # nothing to attend: zero attention
    assert torch.isfinite(dead.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("case", sorted(LONG))
def test_recorded_weights_reproduce_the_fast_path(case):
    name, options = LONG[case]
    module = make(name, **options)
    x, real = x_(length=30, seed=18), padding(2, 30, 20)
    for causal in (False, True):
        fast = module(x, mask=real, is_causal=causal)
        with attnzoo.viz.record_attention(module) as maps:
            slow = module(x, mask=real, is_causal=causal)
        (weights,) = maps.values()
        assert weights.shape == (2, HEADS, 30, 30)
        assert_close(slow, fast)
        assert (weights[1, :, :, 20:] == 0).all()  # padded keys get no weight
        if causal:
            assert (weights.triu(1) == 0).all()


@pytest.mark.parametrize("case", sorted(LONG))
def test_half_precision_keeps_dtype_and_stays_finite(case):
    name, options = LONG[case]
    module = attnzoo.create(name, DIM, num_heads=HEADS, **options).to(torch.bfloat16).eval()
    x = x_(length=30, seed=19).to(torch.bfloat16)
    out = module(x, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_complexity_strings_and_tags():
    for name in ("reformer", "routing", "sinkhorn"):
        entry = attnzoo.info(name)
        assert "clustering" in entry.tags and "dense" not in entry.tags
        assert entry.paper.url.startswith("https://arxiv.org/abs/")
    assert math.isclose(reformer_mod.SELF_PENALTY, 1e5)
