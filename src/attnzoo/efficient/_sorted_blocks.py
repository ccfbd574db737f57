"""``[own block; sorted block]`` keys and values of Sinkhorn attention's fused SDPA path.

- :func:`own_and_sorted`: both halves by ``cat`` (with autograd);
- :func:`streamed_sorted_layer`: the whole layer without autograd, ``STREAM_TOKENS`` tokens at
  a time, the own halves projected straight into the keys' and values' buffers and the sorted
  halves written by ``matmul(out=)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["STREAM_TOKENS", "block_mask", "own_and_sorted", "streamed_sorted_layer"]

#: Tokens per chunk of :func:`streamed_sorted_layer` (whole blocks, at least one).
STREAM_TOKENS = 4096


def block_mask(blocks: int, size: int, device: torch.device) -> torch.Tensor:
    """Causal ``(n, 1, b, 2b)`` SDPA mask: own block causal, sorted block (all earlier) visible.

    Block 0 has no earlier block, so its sorted half is masked.
    """
    mask = torch.ones(blocks, 1, size, 2 * size, dtype=torch.bool, device=device)
    mask[..., :size] = mask[..., :size].tril()
    mask[0, ..., size:] = False
    return mask


def own_and_sorted(own: torch.Tensor, blocks: torch.Tensor, sort: torch.Tensor) -> torch.Tensor:
    """``[own block; sorted block]`` keys or values ``(B n, nh, 2b, hd)`` by ``cat``.

    ``own`` ``(B, n, b, nh, hd)`` token-major, ``blocks`` the same head-major
    ``(B, nh, n, b, hd)``, ``sort`` ``(B, nh, n, n)``.
    """
    batch, heads, count, size, width = blocks.shape
    ordered = sort @ blocks.flatten(3)  # (B, nh, n, b * hd)
    ordered = ordered.view(batch, heads, count, size, width).transpose(1, 2)  # (B, n, nh, b, hd)
    both = torch.cat([own.transpose(2, 3), ordered], dim=3)  # (B, n, nh, 2b, hd)
    return both.view(batch * count, heads, 2 * size, width)  # (B n, nh, 2b, hd)


def streamed_sorted_layer(
    module, x: torch.Tensor, size: int, is_causal: bool, dtype: torch.dtype
) -> torch.Tensor:
    """Sinkhorn attention's layer on whole blocks without autograd: ``(B, L, C)``.

    Each chunk of ``STREAM_TOKENS`` tokens is projected on its own (the GEMM outputs are
    chunk-sized and reused by the allocator, where whole-sequence ones are fresh pages on every
    call): keys and values straight into the own halves of two ``(B, nh, n, 2, b hd)``
    buffers, head-major. The sort net reads the key blocks there, ``sort @ blocks`` is written
    into the other halves, and a second pass over the chunks projects the queries, runs one
    SDPA call per chunk (its batch is the blocks) and writes ``out_proj`` of the result.
    ``module`` is the :class:`~attnzoo.efficient.sinkhorn.SinkhornAttention`.
    """
    batch, length, _ = x.shape
    heads, width, blocks = module.num_heads, module.head_dim, length // size
    # chunks of about STREAM_TOKENS tokens: several whole rows when rows are short, else
    # runs of whole blocks of one row
    per_chunk = max(1, STREAM_TOKENS // length)  # rows per chunk
    step = blocks if per_chunk > 1 else max(1, STREAM_TOKENS // size)  # blocks per chunk
    chunks = [
        (start, min(start + per_chunk, batch), first, min(first + step, blocks))
        for start in range(0, batch, per_chunk)
        for first in range(0, blocks, step)
    ]
    keys = x.new_empty(batch, heads, blocks, 2, size * width, dtype=dtype)  # (B, nh, n, 2, b hd)
    values = torch.empty_like(keys)
    for start, stop, first, last in chunks:
        tokens = x[start:stop, first * size : last * size]  # (R, r, C)
        rows, count = stop - start, last - first
        for buffer, projection in ((keys, module.k_proj), (values, module.v_proj)):
            own = buffer[start:stop, :, first:last, 0]  # (R, nh, c, b hd)
            own = own.view(rows, heads, count, size, width)  # (R, nh, c, b, hd)
            projected = projection(tokens).view(
                rows, count, size, heads, width
            )  # (R, c, b, nh, hd)
            own.copy_(projected.permute(0, 3, 1, 2, 4))  # (R, nh, c, b, hd)
    k_blocks = keys[:, :, :, 0].view(batch, heads, blocks, size, width)  # (B, nh, n, b, hd)
    sort = module.sort_matrix(k_blocks, is_causal)  # (B, nh, n, n)
    for buffer in (keys, values):
        torch.matmul(sort, buffer[:, :, :, 0], out=buffer[:, :, :, 1])  # (B, nh, n, b hd)
    keys, values = (
        buffer.view(batch, heads, blocks, 2 * size, width).transpose(1, 2)  # (B, n, nh, 2b, hd)
        for buffer in (keys, values)
    )
    mask = block_mask(blocks, size, x.device) if is_causal else None  # (n, 1, b, 2b)
    out = None if len(chunks) == 1 else x.new_empty(batch, length, module.dim)  # (B, L, C)
    for start, stop, first, last in chunks:
        tokens = x[start:stop, first * size : last * size]  # (R, r, C)
        rows, count = stop - start, last - first
        q = (
            module.q_proj(tokens).to(dtype).view(rows * count, size, heads, width)
        )  # (R c, b, nh, hd)
        shape = (rows * count, heads, 2 * size, width)
        part = F.scaled_dot_product_attention(
            q.transpose(1, 2),  # (R c, nh, b, hd), read in place
            keys[start:stop, first:last].reshape(shape),  # (R c, nh, 2b, hd), a view for R = 1
            values[start:stop, first:last].reshape(shape),  # (R c, nh, 2b, hd)
            attn_mask=None if mask is None else mask[first:last].repeat(rows, 1, 1, 1),
            scale=width**-0.5,
        )  # (R c, nh, b, hd), token-major in memory
        part = part.transpose(1, 2).reshape(rows, count * size, heads * width)  # (R, r, C), a view
        projected = module.out_proj(part.to(x.dtype))  # (R, r, C)
        if out is None:  # one chunk: the whole output, no copy
            return projected
        out[start:stop, first * size : last * size] = projected
    return out
