"""Shared machinery of the clustering / sorting mechanisms: reformer, routing, sinkhorn.

Content-based sparse attention works on *groups*: tokens are gathered into groups (hash buckets
cut into chunks, the members of a k-means cluster, blocks), attention runs inside every group as
one batched matmul, and a token that took part in several groups (several hash rounds, several
clusters) merges its results with logsumexp weights, which equals one softmax over everything
the token saw. The pieces:

- :func:`gather_rows` / :func:`gather_flags`: gather tokens into groups (one ``gather`` each);
- :func:`bucket_layout`: sort tokens by (bucket, position) and give every bucket whole chunks;
- :func:`look_back`: each chunk also sees the chunk before it;
- :func:`attend_groups`: masked softmax inside the groups, returning the log-normaliser;
- :func:`merge_slots`: logsumexp-weighted merge of each token's group results (one scatter);
- :func:`dense_weights`: the equivalent ``(B, nh, L, S)`` weights, only while a probe records.

Nothing here builds an ``L x S`` tensor except :func:`dense_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnzoo.functional.dropout import dropout

__all__ = [
    "attend_groups",
    "bucket_layout",
    "compute_dtype",
    "dense_weights",
    "gather_flags",
    "gather_rows",
    "look_back",
    "merge_slots",
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


def look_back(x: torch.Tensor, chunk_dim: int, item_dim: int) -> torch.Tensor:
    """Prepend each chunk's predecessor (the first chunk gets the last one) along ``item_dim``."""
    return torch.cat([x.roll(1, dims=chunk_dim), x], dim=item_dim)


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
