"""Block-sparse attention: softmax attention computed only on the non-empty blocks of a mask.

The engine behind ``attention(backend="block_sparse")`` and the ``masked`` module. Given a
:class:`~attnzoo.functional.block_mask.BlockMask`, every query block attends the key blocks its
row lists: the keys of those blocks are gathered into one ``(m * bk)``-wide window per query
block, scores are one batched matrix product per chunk of query blocks, the partial blocks'
cell masks become a 0 / ``-inf`` bias (full blocks get none), and the softmax and the weighted
sum are two more batched operations. Query-block rows are sorted by how many key blocks they
see, so a chunk pads its rows only to its own longest one: the cost follows the number of
non-empty blocks (causal masks pay half of dense, a window of 256 pays ``~5 / nk`` of it).
Forward and backward are plain autograd over these few large operations; in training each
chunk is recomputed in the backward pass (``recompute=True``), so memory is that of the inputs
and the output plus one chunk's scores, never ``L x S``.

Semantics equal :func:`~attnzoo.functional.attention_reference` with the dense mask: rows that
may attend to nothing give exact zeros (and zero gradients), and whatever padded keys hold
(NaN, inf) never reaches the output. Grouped-query attention stacks the query heads of one
key/value head as extra rows of the same blocks (no key copy) when the mask does not depend on
the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnzoo._checks import check_choice, check_finite, check_probability, type_name
from attnzoo._recompute import needs_grad, recomputed
from attnzoo.functional.attention import validate_qkv
from attnzoo.functional.block_mask import BlockMask
from attnzoo.functional.dropout import dropout

__all__ = ["block_sparse_attention"]

_CHUNK_SCORES = 1 << 22  # scores per chunk (16 MB in float32) across batch and heads
_RECOMPUTE_SCORES = 1 << 20  # the same when recomputed in backward: a smaller transient peak
_BACKENDS = ("auto", "engine", "flex")


def _check_block_mask(block_mask: object, q: torch.Tensor, k: torch.Tensor) -> BlockMask:
    if not isinstance(block_mask, BlockMask):
        raise TypeError(
            "block_mask must be an attnzoo.functional.BlockMask (create_block_mask(mask_mod, "
            f"...) or BlockMask.from_mask(mask)), got {type_name(block_mask)}"
        )
    if q.dim() != 4:
        raise ValueError(
            f"q, k and v must be 4-D (B, nh, L, hd) for block_sparse_attention, got q "
            f"{tuple(q.shape)}"
        )
    batch, heads, q_len, _ = q.shape
    g_b, g_h, mask_q, mask_kv = block_mask.shape
    if (mask_q, mask_kv) != (q_len, k.shape[2]):
        raise ValueError(
            f"block_mask was built for (L, S) = ({mask_q}, {mask_kv}) but q and k give "
            f"({q_len}, {k.shape[2]}); build it with q_len={q_len}, kv_len={k.shape[2]}"
        )
    if g_b not in (1, batch) or g_h not in (1, heads):
        raise ValueError(
            f"block_mask has batch x heads = {g_b} x {g_h}, which does not broadcast to the "
            f"inputs' {batch} x {heads}"
        )
    if block_mask.device != q.device:
        raise ValueError(
            f"block_mask is on {block_mask.device} but q is on {q.device}; build it with "
            f"device=q.device"
        )
    return block_mask


def _check_padding(key_padding_mask: object, batch: int, kv_len: int) -> torch.Tensor | None:
    if key_padding_mask is None:
        return None
    if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
        raise TypeError(
            f"key_padding_mask must be a bool tensor (B, S), True = real key, got "
            f"{type_name(key_padding_mask)}"
        )
    if tuple(key_padding_mask.shape) != (batch, kv_len):
        raise ValueError(
            f"key_padding_mask must have shape (B, S) = ({batch}, {kv_len}), got "
            f"{tuple(key_padding_mask.shape)}"
        )
    return key_padding_mask


@dataclass
class _Chunk:
    """One chunk of query-block rows and how to mask its scores (cached on the block mask)."""

    rows: slice  # the query-block rows
    indices: torch.Tensor  # (G_b, G_h, n, m) key blocks of each row
    drops: list  # [(slot or None, drop)]: cells to hide, per key-block slot or full width
    dead: torch.Tensor | None  # (G_b, G_h, n, 1, bq, 1) rows that see nothing, or None
    shared: bool  # every row has the same key blocks: one tall product, no key copy per row
    band: int | None  # row i sees blocks band + i .. band + i + m - 1 (a window): unfold views


def _keep_cells(bm: BlockMask, rows, m: int) -> torch.Tensor:
    """``(G_b, G_h, n, 1, bq, m * bk)`` bool: the visible cells of a chunk's gathered blocks."""
    bq, bk = bm.block_size
    partial = bm.partial_index[:, :, rows, :m]  # (G_b, G_h, n, m)
    valid = bm.slot_valid()[:, :, rows, :m]
    g_b, g_h, n, _ = partial.shape
    keep = valid[..., None, None].expand(g_b, g_h, n, m, bq, bk).clone()  # (.., n, m, bq, bk)
    is_partial = partial >= 0
    if bool(is_partial.any()):
        keep[is_partial] = bm.partial_masks[partial[is_partial]]
    return keep.transpose(3, 4).reshape(g_b, g_h, n, 1, bq, m * bk)  # (.., n, 1, bq, m * bk)


def _plan(bm: BlockMask, per_row: int, budget: int) -> list[_Chunk]:
    """The chunks of a call (see :func:`_chunk_rows`), built once per block mask and size."""
    if (per_row, budget) in bm.plans:
        return bm.plans[per_row, budget]
    bk = bm.block_size[1]
    chunks = []
    for rows, m in _chunk_rows(bm, per_row, budget):
        indices = bm.kv_indices[:, :, rows, :m]  # (G_b, G_h, n, m)
        keep = _keep_cells(bm, rows, m)
        hidden = ~keep
        # (G_b, G_h, n, 1, bq, m * bk) -> (.., m, bk) -> (m,): slots with a hidden cell
        slots = hidden.unflatten(-1, (m, bk)).any(-1).flatten(0, -2).any(0).nonzero()  # (s, 1)
        slots = slots.flatten().tolist()  # (s,) key-block slots with a hidden cell
        if len(slots) * 2 <= m:  # few masked slots (a band's two edges): mask only those
            drops = [(j, hidden[..., j * bk : (j + 1) * bk].clone()) for j in slots]
        else:
            drops = [(None, hidden)]
        dead = ~keep.any(dim=-1, keepdim=True)
        shared = bool((indices == indices[:, :, :1]).all())
        dead = dead if bool(dead.any()) else None
        chunks.append(_Chunk(rows, indices, drops, dead, shared, _band_start(indices, rows)))
    bm.plans[per_row, budget] = chunks
    return chunks


def _band_start(indices: torch.Tensor, rows) -> int | None:
    """First key block when the chunk's rows see consecutive, sliding windows of blocks."""
    if indices.shape[:2] != (1, 1):
        return None
    n, m = indices.shape[2:]
    first = int(indices[0, 0, 0, 0])
    window = first + torch.arange(n).unsqueeze(1) + torch.arange(m)  # (n, m)
    return first if torch.equal(indices[0, 0], window.to(indices.device)) else None


def _weights(scores, drops, dead, dropout_p: float, bk: int) -> torch.Tensor:
    """Masked softmax of a chunk's ``scores (..., n, g, bq, m * bk)`` (drops broadcast)."""
    for slot, drop in drops:  # hidden cells of partial blocks, padding slots, padded keys
        target = scores if slot is None else scores[..., slot * bk : (slot + 1) * bk]
        target.masked_fill_(drop, -math.inf)
    if dead is not None:  # rows that see nothing: finite scores, then exact zeros
        scores = scores.masked_fill(dead, 0.0)
    attn = torch.softmax(scores, dim=-1)
    if dead is not None:
        attn = attn.masked_fill(dead, 0.0)
    return dropout(attn, p=dropout_p) if dropout_p > 0 else attn


def _band_chunk(q_chunk, k_flat, v_flat, chunk: _Chunk, drops, dead, dropout_p, shape, scale):
    """A window chunk without copying keys: per (batch, head), ``unfold`` views of the keys.

    Only for calls without autograd: an ``unfold`` backward scatters into overlapping windows,
    slower than the gather's.
    """
    batch, kv_heads, n, groups, bq, bk, m = shape
    width = m * bk
    outs = []
    for b in range(batch):
        for h in range(kv_heads):
            keys = k_flat[b, h].unfold(0, width, bk)[chunk.band : chunk.band + n]  # (n, hd, w)
            values = v_flat[b, h].unfold(0, width, bk)[chunk.band : chunk.band + n]  # (n, dv, w)
            scores = torch.bmm(q_chunk[b, h], keys).mul_(scale).view(1, 1, n, groups, bq, width)
            attn = _weights(scores, drops, dead, dropout_p, bk).view(n, groups * bq, width)
            outs.append(torch.bmm(attn, values.transpose(1, 2)))  # (n, g * bq, dv)
    return torch.stack(outs).view(batch, kv_heads, n, groups * bq, -1)  # (B, nkv, n, gbq, dv)


def _gathered_chunk(q_chunk, k_blocks, v_blocks, indices, drops, dead, dropout_p, shape, scale):
    """One chunk: gather its key blocks, masked softmax of the scores, weighted sum."""
    batch, kv_heads, n, groups, bq, bk, m = shape
    keys = _gather_blocks(k_blocks, indices)  # (B, nkv, n | 1, m * bk, hd)
    values = _gather_blocks(v_blocks, indices)  # (B, nkv, n | 1, m * bk, hd_v)
    scores = torch.matmul(q_chunk, keys.transpose(-2, -1)).mul_(scale)  # (B, nkv, n|1, rows, m*bk)
    scores = scores.view(batch, kv_heads, n, groups, bq, m * bk)
    attn = _weights(scores, drops, dead, dropout_p, bk)
    attn = attn.view(*q_chunk.shape[:-1], m * bk)  # (B, nkv, n | 1, rows, m * bk)
    return torch.matmul(attn, values)  # (B, nkv, n | 1, rows, hd_v)


def _chunk_rows(bm: BlockMask, per_row: int, budget: int) -> list[tuple[slice, int]]:
    """Consecutive query-block rows grouped so that each chunk is padded only a little.

    A chunk grows while its scores (padded to its longest row) fit the budget and its rows'
    key-block counts stay within a quarter of each other, so padding wastes at most ~25%: a
    causal mask gets chunks of rows of similar length, a window one chunk per budget. Returns
    ``(rows, m)`` pairs: a slice of rows and the chunk's number of key-block slots.
    """
    counts = bm.kv_num_blocks.amax(dim=(0, 1)).tolist()  # longest row over batch and heads
    chunks, start, nq = [], 0, len(counts)
    while start < nq:
        low = high = max(1, counts[start])
        stop = start + 1
        while stop < nq:
            count = max(1, counts[stop])
            low2, high2 = min(low, count), max(high, count)
            if high2 > low2 + max(1, low2 // 4) or (stop + 1 - start) * per_row * high2 > budget:
                break
            low, high, stop = low2, high2, stop + 1
        chunks.append((slice(start, stop), high))
        start = stop
    return chunks


def _padded_drops(bm: BlockMask, chunk: _Chunk, padding: torch.Tensor) -> tuple[list, object]:
    """A chunk's drops and dead rows with the call's key padding ``(B, S)`` added."""
    bk = bm.block_size[1]
    _, g_h, n, m = chunk.indices.shape
    batch = padding.shape[0]
    pad = F.pad(padding, (0, -padding.shape[1] % bk)).view(batch, -1, bk)  # (B, nk, bk)
    rows_b = torch.arange(batch, device=pad.device).view(batch, 1, 1, 1)
    window = pad[rows_b, chunk.indices.expand(batch, g_h, n, m)]  # (B, G_h, n, m, bk)
    keep = _keep_cells(bm, chunk.rows, m) & window.reshape(batch, g_h, n, 1, 1, m * bk)
    dead = ~keep.any(dim=-1, keepdim=True)  # (B, G_h, n, 1, bq, 1)
    return [(None, ~keep)], (dead if bool(dead.any()) else None)


def _pad(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x (..., N, d)`` with ``rows`` zero rows appended (no copy when there are none)."""
    return F.pad(x, (0, 0, 0, rows)) if rows else x


def _gather_blocks(blocks: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``blocks (B, H, nk, bk, d)`` at ``indices (G_b, G_h, n, m)`` -> ``(B, H, n, m * bk, d)``."""
    batch, heads, _, bk, width = blocks.shape
    g_b, g_h, n, m = indices.shape
    if g_b == 1 and g_h == 1:
        picked = blocks.index_select(2, indices.reshape(-1))  # (B, H, n * m, bk, d)
    else:
        b = torch.arange(batch, device=blocks.device).view(batch, 1, 1, 1)
        h = torch.arange(heads, device=blocks.device).view(1, heads, 1, 1)
        picked = blocks[b, h, indices.expand(batch, heads, n, m)]  # (B, H, n, m, bk, d)
    return picked.reshape(batch, heads, n, m * bk, width)  # (B, H, n, m * bk, d)


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: BlockMask,
    *,
    scale: float | None = None,
    key_padding_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
    recompute: bool = True,
) -> torch.Tensor:
    """Softmax attention over the non-empty blocks of ``block_mask`` only.

    Equals :func:`~attnzoo.functional.attention_reference` with ``mask=block_mask.to_dense()``
    (and the key padding) to floating-point rounding, forward and backward, with exact zeros for
    rows that see nothing. Half-precision inputs are computed in float32, as the reference.

    Args:
        q: Queries ``(B, nh, L, hd)``.
        k: Keys ``(B, nkv, S, hd)``; ``nh`` a multiple of ``nkv`` (GQA).
        v: Values ``(B, nkv, S, hd_v)``.
        block_mask: From :func:`~attnzoo.functional.create_block_mask` or
            :meth:`~attnzoo.functional.BlockMask.from_mask`, for this ``L`` and ``S``.
        scale: Score scale, default ``1 / sqrt(hd)``.
        key_padding_mask: Optional bool ``(B, S)``, ``True`` = real key.
        dropout_p: Dropout on the weights whenever ``> 0``.
        backend: ``"engine"`` (this module's block computation, CPU or GPU), ``"flex"``
            (``torch.nn.attention.flex_attention`` with the same blocks: no dropout, no key
            padding, no backward on CPU) or ``"auto"`` (flex on CUDA without dropout and
            padding, else the engine).
        recompute: When gradients are needed, keep only the inputs of each chunk of query
            blocks and recompute its scores and weights in the backward pass (activation
            checkpointing per chunk, as FlashAttention recomputes its tiles): training memory
            is then that of ``q``, ``k``, ``v`` and the output, not of every computed score,
            for one more forward of the attention core in backward. Dropout masks are replayed
            exactly. ``False`` keeps the weights for backward: faster, more memory.

    Returns:
        ``(B, nh, L, hd_v)``.

    Shape:
        - q: ``(B, nh, L, hd)``; k: ``(B, nkv, S, hd)``; v: ``(B, nkv, S, hd_v)``

    Example:
        >>> from attnzoo import masks
        >>> from attnzoo.functional import create_block_mask
        >>> q = k = v = torch.randn(1, 2, 1024, 16)
        >>> bm = create_block_mask(masks.sliding_window(64), None, None, 1024)
        >>> block_sparse_attention(q, k, v, bm).shape
        torch.Size([1, 2, 1024, 16])
    """
    groups = validate_qkv(q, k, v)
    bm = _check_block_mask(block_mask, q, k)
    backend = check_choice("backend", backend, _BACKENDS)
    dropout_p = check_probability("dropout_p", dropout_p)
    if not isinstance(recompute, bool):
        raise TypeError(f"recompute must be a bool, got {type_name(recompute)}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else check_finite("scale", scale)
    batch, heads, q_len, _ = q.shape
    kv_len = k.shape[2]
    padding = _check_padding(key_padding_mask, batch, kv_len)
    if backend == "auto":
        backend = "flex" if q.is_cuda and dropout_p == 0 and padding is None else "engine"
    if backend == "flex":
        return _flex(q, k, v, bm, scale, groups, dropout_p, padding)
    if padding is not None:  # whatever padded keys hold cannot leak (0 * NaN would)
        k = k.masked_fill(~padding[:, None, :, None], 0.0)
        v = v.masked_fill(~padding[:, None, :, None], 0.0)
    head_mask = bm.kv_num_blocks.shape[1] > 1
    if groups > 1 and head_mask:  # per-head patterns: one key copy per query head
        k = k.repeat_interleave(groups, dim=1)  # (B, nh, S, hd)
        v = v.repeat_interleave(groups, dim=1)  # (B, nh, S, hd_v)
        groups = 1
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    bq, bk = bm.block_size
    nq, nk = bm.num_blocks
    kv_heads, head_dim, value_dim = k.shape[1], q.shape[-1], v.shape[-1]
    q_pad = _pad(q.to(compute), nq * bq - q_len)  # (B, nh, Lp, hd); scaled per chunk
    # (B, nkv, g, nq, bq, hd) -> (B, nkv, nq, g * bq, hd): the heads of a group share blocks
    q_blocks = q_pad.view(batch, kv_heads, groups, nq, bq, head_dim).transpose(2, 3)
    q_blocks = q_blocks.reshape(batch, kv_heads, nq, groups * bq, head_dim)
    k_flat = _pad(k.to(compute), nk * bk - kv_len)  # (B, nkv, Sp, hd)
    v_flat = _pad(v.to(compute), nk * bk - kv_len)  # (B, nkv, Sp, hd_v)
    k_blocks = k_flat.view(batch, kv_heads, nk, bk, head_dim)  # (B, nkv, nk, bk, hd)
    v_blocks = v_flat.view(batch, kv_heads, nk, bk, value_dim)  # (B, nkv, nk, bk, hd_v)
    training = needs_grad(q, k, v)
    per_row = batch * kv_heads * groups * bq * bk
    outputs = []
    budget = _RECOMPUTE_SCORES if training and recompute else _CHUNK_SCORES
    for chunk in _plan(bm, per_row, budget):
        drops, dead = (
            (chunk.drops, chunk.dead) if padding is None else (_padded_drops(bm, chunk, padding))
        )
        n, m = chunk.indices.shape[2:]
        q_chunk = q_blocks[:, :, chunk.rows]  # (B, nkv, n, g * bq, hd)
        if chunk.band is not None and not chunk.shared and not training:
            shape = (batch, kv_heads, n, groups, bq, bk, m)
            out = _band_chunk(q_chunk, k_flat, v_flat, chunk, drops, dead, dropout_p, shape, scale)
            outputs.append(out)  # (B, nkv, n, g * bq, hd_v)
            continue
        indices = chunk.indices
        if chunk.shared:  # every row sees the same key blocks: stack them into one query block
            stacked = n * groups * bq
            q_chunk = q_chunk.reshape(batch, kv_heads, 1, stacked, head_dim)  # (B, nkv, 1, ngb, hd)
            indices = indices[:, :, :1]
        shape = (batch, kv_heads, n, groups, bq, bk, m)
        args = (q_chunk, k_blocks, v_blocks, indices, drops, dead, dropout_p, shape, scale)
        # with recompute, autograd keeps only the inputs: the chunk is recomputed in backward
        out = recomputed(_gathered_chunk, *args) if recompute else _gathered_chunk(*args)
        outputs.append(out.view(batch, kv_heads, n, groups * bq, value_dim))
    if not outputs:  # L = 0
        return q.new_zeros(batch, heads, q_len, value_dim)
    out = torch.cat(outputs, dim=2)  # (B, nkv, nq, g * bq, hd_v)
    # (B, nkv, nq, g, bq, hd_v) -> (B, nkv, g, nq, bq, hd_v) -> (B, nh, Lp, hd_v)
    out = out.view(batch, kv_heads, nq, groups, bq, value_dim).transpose(2, 3)  # (.., g, nq, ..)
    out = out.reshape(batch, heads, nq * bq, value_dim)[:, :, :q_len]  # (B, nh, L, hd_v)
    return out.to(q.dtype)


def _flex(q, k, v, bm: BlockMask, scale, groups, dropout_p, padding):
    from torch.nn.attention.flex_attention import flex_attention

    if dropout_p > 0:
        raise ValueError(f"backend='flex' has no dropout, got dropout_p={dropout_p}")
    if padding is not None:
        raise ValueError(
            "backend='flex' takes no key_padding_mask: put the padding in the mask function "
            "(and_masks(mask_mod, padding_mod)) or use backend='engine'"
        )
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad and q.device.type == "cpu":
        raise ValueError(
            "backend='flex' has no backward on CPU (PyTorch's FlexAttention); use "
            "backend='engine' to train, or run under torch.no_grad()"
        )
    if not needs_grad:
        q, k, v = q.detach(), k.detach(), v.detach()
    return flex_attention(q, k, v, block_mask=bm.to_flex(), scale=scale, enable_gqa=groups > 1)
