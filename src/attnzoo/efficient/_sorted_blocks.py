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
    step = max(1, STREAM_TOKENS // size)  # blocks per chunk
    keys = x.new_empty(batch, heads, blocks, 2, size * width, dtype=dtype)  # (B, nh, n, 2, b hd)
    values = torch.empty_like(keys)
    chunks = [
        (row, first, min(first + step, blocks))
        for row in range(batch)
        for first in range(0, blocks, step)
    ]
    for row, first, last in chunks:
        tokens = x[row, first * size : last * size]  # (r, C)
        count = last - first
        for buffer, projection in ((keys, module.k_proj), (values, module.v_proj)):
            own = buffer[row, :, first:last, 0].view(heads, count, size, width)  # (nh, c, b, hd)
            projected = projection(tokens).view(count, size, heads, width)  # (c, b, nh, hd)
            own.copy_(projected.permute(2, 0, 1, 3))  # (nh, c, b, hd)
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
    for row, first, last in chunks:
        tokens = x[row, first * size : last * size]  # (r, C)
        q = module.q_proj(tokens).to(dtype).view(-1, size, heads, width)  # (c, b, nh, hd)
        part = F.scaled_dot_product_attention(
            q.transpose(1, 2),  # (c, nh, b, hd), read in place
            keys[row, first:last],
            values[row, first:last],
            attn_mask=None if mask is None else mask[first:last],
            scale=width**-0.5,
        )  # (c, nh, b, hd), token-major in memory
        part = part.transpose(1, 2).reshape(tokens.shape[0], heads * width)  # (r, C), a view
        projected = module.out_proj(part.to(x.dtype))  # (r, C)
        if out is None:  # one chunk (B = 1, L <= STREAM_TOKENS): no copy
            return projected.unsqueeze(0)  # (1, L, C)
        out[row, first * size : last * size] = projected
    return out
