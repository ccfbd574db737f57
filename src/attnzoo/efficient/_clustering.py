"""Shared machinery of the clustering / sorting mechanisms: reformer, routing, sinkhorn.

Content-based sparse attention works on *groups*: tokens are gathered into groups (hash buckets
cut into chunks, the members of a k-means cluster, blocks), attention runs inside every group as
one batched matmul, and a token that took part in several groups (several hash rounds, several
clusters) merges its results with logsumexp weights, which equals one softmax over everything
the token saw. The pieces:

- :func:`gather_rows` / :func:`gather_flags`: gather tokens into groups (one ``gather`` each);
- :func:`bucket_layout`: sort tokens by (bucket, position) and give every bucket whole chunks;
- :func:`token_slots`: the inverse of a layout, the slot of each token;
- :func:`attend_groups`: masked softmax inside the groups, returning the log-normaliser;
- :func:`fused_chunks`: chunks of sorted buckets through fused SDPA, when no normaliser is
  needed (one round, no weight dropout), with :func:`chunk_bias` as their masks;
- :func:`merge_slots`: logsumexp-weighted merge of each token's group results (one scatter);
- :func:`dense_weights` / :func:`grouped_dense_weights`: the equivalent ``(B, nh, L, S)``
  weights, only while a probe records.

Nothing here builds an ``L x S`` tensor except those two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attnzoo.functional.dropout import dropout

__all__ = [
    "attend_groups",
    "bucket_layout",
    "chunk_bias",
    "compute_dtype",
    "dense_weights",
    "fused_chunks",
    "gather_flags",
    "gather_rows",
    "grouped_dense_weights",
    "merge_slots",
    "token_slots",
]

NEG_INF = float("-inf")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores of half-precision inputs are computed in float32 (as ``attention_reference``)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` ``(B, H | 1, L, D)`` at ``index`` ``(B, H, *G)`` -> ``(B, H, *G, D)``.

    ``index`` must hold valid positions (clamp empty slots to 0 and mask them yourself).
    """
    batch, heads = index.shape[:2]
    width = x.shape[-1]
    x = x.expand(batch, heads, x.shape[2], width)
    flat = index.reshape(batch, heads, -1, 1)  # (B, H, N, 1)
    out = x.gather(2, flat.expand(-1, -1, -1, width))  # (B, H, N, D)
    return out.view(*index.shape, width)  # (B, H, *G, D)


def gather_flags(flags: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-token values ``(B, H | 1, L)`` at ``index`` ``(B, H, *G)`` -> ``(B, H, *G)``."""
    batch, heads = index.shape[:2]
    flags = flags.expand(batch, heads, flags.shape[-1])
    out = flags.gather(2, index.reshape(batch, heads, -1))  # (B, H, N)
    return out.view(index.shape)  # (B, H, *G)


def bucket_layout(
    buckets: torch.Tensor, chunk: int, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort tokens by (bucket, position) and pad every bucket to whole chunks.

    A chunk then never holds two buckets, so the tokens a member can see (its chunk and, with
    :func:`look_back`, the chunk before it, both masked to its own bucket) depend only on the
    members of its bucket that come before it: the layout keeps causal attention causal.

    Args:
        buckets: ``(B, H, R, L)`` bucket of every token in each of ``R`` independent rounds, in
            ``[0, num_buckets)``, or ``-1`` for tokens left out (padding).
        chunk: Chunk length ``m``.
        num_buckets: Number of buckets per round.

    Returns:
        ``(slot_token, slot_bucket)``, both ``(B, H, R, T)`` with ``T`` the largest number of
        slots any round needs (a multiple of ``chunk``, at most ``L + num_buckets * (chunk - 1)``):
        the token in each slot and its bucket, ``-1`` for empty slots.
    """
    batch, heads, rounds, length = buckets.shape
    left_out = buckets < 0
    keyed = buckets.masked_fill(left_out, num_buckets)  # left-out tokens sort last
    positions = torch.arange(length, device=buckets.device)
    order = (keyed * length + positions).argsort(dim=-1)  # (B, H, R, L)
    sorted_bucket = keyed.gather(-1, order)  # (B, H, R, L)
    counts = torch.zeros(
        batch, heads, rounds, num_buckets + 1, dtype=torch.long, device=buckets.device
    ).scatter_add_(-1, keyed, torch.ones_like(keyed))  # (B, H, R, nb + 1)
    first = counts.cumsum(-1) - counts  # sorted position of each bucket's first member
    padded = (counts + chunk - 1) // chunk * chunk
    start = padded.cumsum(-1) - padded  # slot of each bucket's first member
    total = int(start[..., num_buckets].max()) if start.numel() else 0
    rank = positions - first.gather(-1, sorted_bucket)  # rank inside the bucket
    slot = start.gather(-1, sorted_bucket) + rank
    slot = slot.masked_fill(sorted_bucket == num_buckets, total)  # left out -> dump slot
    slot_token = torch.full(
        (batch, heads, rounds, total + 1), -1, dtype=torch.long, device=buckets.device
    )
    slot_token = slot_token.scatter_(-1, slot, order)[..., :total]  # (B, H, R, T)
    slot_bucket = keyed.gather(-1, slot_token.clamp_min(0)).masked_fill(slot_token < 0, -1)
    return slot_token, slot_bucket


def token_slots(slot_token: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of a layout: the slot of every token ``(B, H, R, length)``, ``-1`` where none.

    ``slot_token`` ``(B, H, R, T)`` holds tokens in ``[0, length)``; a token in several slots of
    one round (a dump row for empty slots) keeps one of them.
    """
    slots = torch.arange(slot_token.shape[-1], device=slot_token.device).expand_as(slot_token)
    inverse = slot_token.new_full((*slot_token.shape[:-1], length), -1)
    return inverse.scatter_(-1, slot_token, slots)  # (B, H, R, length)


def attend_groups(
    scores: torch.Tensor,
    v: torch.Tensor,
    keep: Sequence[torch.Tensor],
    dropout_p: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked softmax attention inside groups, with the softmax log-normaliser.

    Works in place on ``scores`` when no gradient is needed (saves the copies on long inputs).

    Args:
        scores: ``(..., w, K)`` scores of each group's queries against its keys.
        v: ``(..., K, dv)`` the group's values (zero them where no query may see them if they
            may hold NaN).
        keep: Bool masks broadcastable to ``scores`` (True where the query may see the key);
            a key is visible where all of them are True. Pass small broadcast shapes: they are
            applied one after the other, never combined into a full-size mask.
        dropout_p: Dropout on the weights (training only; pass 0 in eval).

    Returns:
        ``(out (..., w, dv), attn (..., w, K), lse (..., w))``. A query row that sees nothing
        gets exact zeros and ``lse = -inf``, with zero (never NaN) gradients.
    """
    inplace = not (torch.is_grad_enabled() and scores.requires_grad)
    for mask in keep:
        scores = (
            scores.masked_fill_(~mask, NEG_INF) if inplace else scores.masked_fill(~mask, NEG_INF)
        )
    top = scores.detach().amax(dim=-1, keepdim=True)
    alive = top > NEG_INF
    top = torch.where(alive, top, 0.0)
    e = scores.sub_(top).exp_() if inplace else torch.exp(scores - top)
    total = torch.where(alive, e.sum(dim=-1, keepdim=True), 1.0)
    attn = e.div_(total) if inplace else e / total
    lse = torch.where(alive, top + total.log(), NEG_INF).squeeze(-1)
    dropped = dropout(attn, p=dropout_p) if dropout_p > 0 else attn
    return dropped @ v, attn, lse


def merge_slots(
    out: torch.Tensor, lse: torch.Tensor, index: torch.Tensor, length: int, single: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge each token's group results with logsumexp weights.

    A token that appears in slots ``s`` with softmax normalisers ``lse_s`` gets
    ``sum_s exp(lse_s - logsumexp_s' lse_s') out_s``: one softmax over the union of the keys its
    slots saw (keys seen in several slots count several times). Tokens in no slot, or whose
    slots saw nothing, get exact zeros.

    Args:
        out: ``(B, H, N, D)`` slot outputs.
        lse: ``(B, H, N)`` slot log-normalisers (``-inf`` for empty or dead slots).
        index: ``(B, H, N)`` token of each slot in ``[0, length)``.
        length: Number of tokens.
        single: Every token is in at most one slot: the merge is a plain scatter.

    Returns:
        ``(merged (B, H, length, D), weights (B, H, N))``.
    """
    batch, heads, _ = lse.shape
    spread = index.unsqueeze(-1).expand(-1, -1, -1, out.shape[-1])  # (B, H, N, D)
    merged = out.new_zeros(batch, heads, length, out.shape[-1])
    if single:  # dead slots already hold zeros
        return merged.scatter_add(2, spread, out), (lse > NEG_INF).to(out.dtype)
    with torch.no_grad():
        top = lse.new_full((batch, heads, length), NEG_INF)
        top = top.scatter_reduce(2, index, lse.detach(), reduce="amax")
        top = torch.where(top > NEG_INF, top, 0.0).gather(2, index)
    alive = lse > NEG_INF
    e = torch.where(alive, torch.exp(torch.where(alive, lse, 0.0) - top), 0.0)
    total = e.new_zeros(batch, heads, length).scatter_add(2, index, e).gather(2, index)
    weights = torch.where(total > 0, e / torch.where(total > 0, total, 1.0), 0.0)
    merged = merged.scatter_add(2, spread, weights.unsqueeze(-1) * out)  # (B, H, L, D)
    return merged, weights


def dense_weights(
    attn: torch.Tensor,
    weights: torch.Tensor,
    q_index: torch.Tensor,
    k_index: torch.Tensor,
    length: int,
    kv_len: int,
) -> torch.Tensor:
    """Dense-equivalent ``(B, H, length, kv_len)`` weights of grouped attention (probe only).

    Args:
        attn: ``(B, H, G, w, K)`` weights inside the groups.
        weights: ``(B, H, G, w)`` merge weight of each query slot (:func:`merge_slots`).
        q_index: ``(B, H, G, w)`` token of each query slot (any valid index where empty).
        k_index: ``(B, H, G, K)`` token of each key slot (any valid index where empty).
        length: Query length ``L``.
        kv_len: Key length ``S``.
    """
    batch, heads = attn.shape[:2]
    flat = q_index.unsqueeze(-1) * kv_len + k_index.unsqueeze(-2)  # (B, H, G, w, K)
    values = attn * weights.unsqueeze(-1)  # (B, H, G, w, K)
    dense = attn.new_zeros(batch, heads, length * kv_len)
    flat = flat.reshape(batch, heads, -1)  # (B, H, G * w * K)
    dense = dense.scatter_add(2, flat, values.reshape(batch, heads, -1))  # (B, H, L * S)
    return dense.view(batch, heads, length, kv_len)  # (B, H, L, S)


def grouped_dense_weights(
    parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    groups_per_plane: int,
    planes: int,
    size: int,
) -> torch.Tensor:
    """Dense-equivalent ``(planes, size, size)`` weights of groups from flattened planes.

    Args:
        parts: ``(weights (n, w, K), group (n,), q_index (n, w), k_index (n, K))`` tuples: the
            final weights of ``n`` groups, their flat group numbers (plane ``group //
            groups_per_plane``) and the tokens of their query and key slots. Weights that
            several parts give one pair add up.
        groups_per_plane: Groups of each ``(batch, head)`` plane.
        planes: ``B * H``.
        size: Tokens per plane (queries and keys).
    """
    values = parts[0][0]
    dense = values.new_zeros(planes * size * size)
    for weights, group, q_index, k_index in parts:
        plane = (group // groups_per_plane).view(-1, 1, 1)  # (n, 1, 1)
        flat = (plane * size + q_index.unsqueeze(-1)) * size + k_index.unsqueeze(-2)  # (n, w, K)
        dense = dense.index_add(0, flat.reshape(-1), weights.reshape(-1))
    return dense.view(planes, size, size)  # (planes, size, size)


def chunk_bias(chunk: int, causal: bool, penalty: float, dtype, device) -> torch.Tensor:
    """Additive score masks ``(m + 1, m, m)`` of a chunk by its number of filled slots.

    Entry ``c``: keys ``>= c`` (empty slots) at ``-inf``, the diagonal lowered by ``penalty``
    and, if ``causal``, keys after the query at ``-inf``.
    """
    slots = torch.arange(chunk, device=device)
    filled = torch.arange(chunk + 1, device=device).view(-1, 1, 1)  # (m + 1, 1, 1)
    visible = (slots.view(1, 1, chunk) < filled).expand(-1, chunk, -1)  # (m + 1, m, m)
    if causal:
        visible = visible & (slots.view(-1, 1) >= slots.view(1, -1))  # (m, m) query >= key
    bias = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, NEG_INF)
    bias.diagonal(dim1=-2, dim2=-1).sub_(penalty)
    return bias


def fused_chunks(
    q_rows: torch.Tensor,
    v_rows: torch.Tensor,
    rows: torch.Tensor,
    count: torch.Tensor,
    continues: torch.Tensor,
    causal: bool,
    penalty: float,
    classes: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of chunk attention without dropout, as a few fused SDPA calls.

    A chunk that starts a bucket attends to its own slots; a chunk that continues one also to
    its previous chunk (full, and earlier: all of it visible). Only the first ``s`` slots of a
    chunk are computed, ``s`` its filled slots rounded up to a multiple of ``m / classes``, so
    the partly filled last chunk of every bucket costs what it holds; chunks of one kind and
    one ``s`` go through one SDPA call, all-empty chunks through none.

    Args:
        q_rows: ``(rows, hd)`` query rows (the keys are their normalised copies).
        v_rows: ``(rows, hd)`` value rows.
        rows: ``(N, m)`` row of each chunk slot (any valid row where empty).
        count: ``(N,)`` filled slots of each chunk (they come first).
        continues: ``(N,)`` True where chunk ``n - 1`` holds the same bucket.
        causal: Causal inside the chunk.
        penalty: Subtracted from each query's score with its own key.
        classes: Number of sizes ``s``.

    Returns:
        ``(out (rows', hd), offset (N,))``: slot ``i < count[n]`` of chunk ``n`` has its output
        in row ``offset[n] + i``.
    """
    chunk, width = rows.shape[-1], q_rows.shape[-1]
    bias = chunk_bias(chunk, causal, penalty, q_rows.dtype, q_rows.device)  # (m + 1, m, m)
    step = -(-chunk // classes)
    size = ((count + step - 1) // step * step).clamp_max(chunk)  # (N,) slots computed
    offset = torch.zeros_like(count)
    outs, done = [q_rows.new_zeros(0, width)], 0  # (0, hd) when no slot is filled
    for computed in range(step, chunk + step, step):
        computed = min(computed, chunk)
        for later in (False, True):
            group = ((size == computed) & (continues == later)).nonzero().squeeze(1)  # (n,)
            if not group.numel():
                continue
            window = rows[group, :computed]  # (n, s) own slots
            mask = bias[:, :computed, :computed].index_select(0, count[group])  # (n, s, s)
            if later:  # the previous chunk's m keys come first
                window = torch.cat([rows[group - 1], window], dim=-1)  # (n, m + s)
                mask = F.pad(mask, (chunk, 0))  # (n, s, m + s)
            shape = (1, len(group), window.shape[-1], width)  # (1, n, K, hd)
            keys = q_rows.index_select(0, window.view(-1)).view(shape)
            values = v_rows.index_select(0, window.view(-1)).view(shape)
            out = F.scaled_dot_product_attention(
                keys[:, :, -computed:],  # (1, n, s, hd): the queries are the own slots
                F.normalize(keys, dim=-1),  # shared QK: unit keys
                values,
                attn_mask=mask.unsqueeze(0),  # (1, n, s, K)
                scale=1.0,
            )
            outs.append(out.view(-1, width))  # (n s, hd)
            offset[group] = done + computed * torch.arange(len(group), device=count.device)
            done += computed * len(group)
    return torch.cat(outs), offset
