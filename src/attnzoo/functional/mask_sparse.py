"""Block-sparse patterns of long-sequence transformers: random blocks, Longformer, BigBird."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnzoo._checks import check_positive_int
from attnzoo.functional.mask_basic import dilated, global_tokens
from attnzoo.functional.mask_ops import (  # noqa: F401  (doctests)
    MaskMod,
    and_masks,
    block_table_mask,
    check_len,
    materialize,
    or_masks,
    to_string,
)

__all__ = ["bigbird", "longformer", "random_blocks"]


def random_blocks(
    block_size: int, num_random: int, *, q_len: int, kv_len: int | None = None, seed: int = 0
) -> MaskMod:
    """Each block of ``block_size`` queries attends ``num_random`` key blocks drawn at random.

    The draw is seeded (``torch.Generator().manual_seed(seed)``), so the same arguments give
    the same pattern on every machine.

    Args:
        block_size: Tokens per block.
        num_random: Key blocks per query block (capped at the number of key blocks).
        q_len: Query length (fixes the number of query blocks).
        kv_len: Key length, default ``q_len``.
        seed: Seed of the draw.

    Returns:
        A mask function.

    Example:
        >>> materialize(random_blocks(2, 1, q_len=6), 6).sum().item()  # 3 rows x 2 x 2
        12
    """
    block_size = check_positive_int("block_size", block_size)
    num_random = check_positive_int("num_random", num_random, minimum=0)
    q_len = check_positive_int("q_len", q_len, minimum=0)
    kv_len = check_len("kv_len", kv_len, q_len)
    q_blocks, kv_blocks = -(-q_len // block_size), -(-kv_len // block_size)
    generator = torch.Generator().manual_seed(seed)
    table = torch.zeros(max(q_blocks, 1), max(kv_blocks, 1), dtype=torch.bool)
    for row in range(q_blocks):
        table[row, torch.randperm(kv_blocks, generator=generator)[:num_random]] = True
    return block_table_mask(table, block_size)


def longformer(
    window: int,
    *,
    dilation: int = 1,
    global_indices: Sequence[int] | torch.Tensor | None = None,
    num_global: int | None = None,
    causal: bool = False,
) -> MaskMod:
    """Longformer (Beltagy et al. 2020): a (dilated) sliding window plus global tokens.

    Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", 2020,
    https://arxiv.org/abs/2004.05150. ``window`` is one-sided (the paper's ``w`` is ``2 * window``).
    With ``causal=True`` every part, the global one included, keeps ``j <= i``.

    Args:
        window: Keys on each side of the query.
        dilation: Gap between window keys (the paper's dilated heads).
        global_indices: Positions of global tokens (e.g. ``[0]`` for CLS).
        num_global: Alternatively, the first ``num_global`` positions.
        causal: Autoregressive variant.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(longformer(1, global_indices=[0]), 5))
        █████
        ███··
        ████·
        █·███
        █··██
    """
    local = dilated(dilation, window=window, causal=causal)
    parts = [local]
    if global_indices is not None or num_global is not None:
        parts.append(global_tokens(global_indices, num_global=num_global))
    mod = or_masks(*parts)
    return and_masks(mod, _lower_triangle) if causal else mod


def _lower_triangle(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


def bigbird(
    block_size: int,
    *,
    q_len: int,
    num_window_blocks: int = 3,
    num_global_blocks: int = 2,
    num_random_blocks: int = 3,
    seed: int = 0,
) -> MaskMod:
    """BigBird-ITC (Zaheer et al. 2020) on blocks: window + global + random blocks.

    Zaheer et al., "Big Bird: Transformers for Longer Sequences", 2020,
    https://arxiv.org/abs/2007.14062. Defaults are the paper's base configuration (3 window
    blocks, 2 global blocks — the first and the last, as in the reference implementation —,
    3 random blocks per row). A last partial block is a block like the others.

    Args:
        block_size: Tokens per block (64 in the paper).
        q_len: Sequence length (self-attention).
        num_window_blocks: Odd number of blocks in the sliding block window.
        num_global_blocks: Global blocks, taken from the front and back alternately
            (1: first; 2: first and last; 3: first two and last ...).
        num_random_blocks: Random key blocks per query block, drawn from the blocks that are
            neither in the window nor global (seeded).
        seed: Seed of the random draw.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(bigbird(2, q_len=12, num_random_blocks=0), 12))
        ████████████
        ████████████
        ██████····██
        ██████····██
        ████████··██
        ████████··██
        ██··████████
        ██··████████
        ██····██████
        ██····██████
        ████████████
        ████████████
    """
    block_size = check_positive_int("block_size", block_size)
    q_len = check_positive_int("q_len", q_len, minimum=0)
    num_window_blocks = check_positive_int("num_window_blocks", num_window_blocks)
    if num_window_blocks % 2 == 0:
        raise ValueError(f"num_window_blocks must be odd (centred window), got {num_window_blocks}")
    num_global_blocks = check_positive_int("num_global_blocks", num_global_blocks, minimum=0)
    num_random_blocks = check_positive_int("num_random_blocks", num_random_blocks, minimum=0)
    blocks = max(-(-q_len // block_size), 1)
    row = torch.arange(blocks)
    table = (row[:, None] - row[None, :]).abs() <= num_window_blocks // 2  # (nb, nb) window
    front = (num_global_blocks + 1) // 2
    back = num_global_blocks // 2
    is_global = (row < front) | (row >= blocks - back)
    table |= is_global[:, None] | is_global[None, :]
    generator = torch.Generator().manual_seed(seed)
    for r in range(blocks):
        if is_global[r]:
            continue
        candidates = (~table[r]).nonzero().flatten()  # (n_free,)
        pick = torch.randperm(candidates.numel(), generator=generator)[:num_random_blocks]
        table[r, candidates[pick]] = True
    return block_table_mask(table, block_size)
