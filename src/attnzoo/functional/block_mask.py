"""Block masks: which ``(query block, key block)`` pairs of a mask are empty, full or partial.

A :class:`BlockMask` is the compressed form of a ``(B, nh, L, S)`` boolean mask that
:func:`~attnzoo.functional.block_sparse_attention` computes from, with FlexAttention's
semantics (``torch.nn.attention.flex_attention.BlockMask``): the queries are cut into blocks of
``block_size[0]`` rows and the keys into blocks of ``block_size[1]`` columns; a block pair is
*empty* (nothing visible: never computed), *full* (everything visible: computed without a mask)
or *partial* (computed, and its ``bq x bk`` cell mask applied). Only partial blocks store a
mask, so a sliding window of 256 over 16K tokens keeps 2 x 128 small masks, not an
``L x S`` tensor.

Build one with :func:`create_block_mask` from any mask function (evaluated in chunks of query
blocks: memory ``O(chunk x S)``, never ``L x S``) or with :meth:`BlockMask.from_mask` from a
boolean tensor you already have. :meth:`BlockMask.to_flex` hands the same block structure to
``torch.nn.attention.flex_attention``.

Example:
    >>> from attnzoo import masks
    >>> bm = create_block_mask(masks.causal(), None, None, 256, block_size=64)
    >>> bm.counts()  # (empty, full, partial) block pairs
    (6, 6, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attnzoo._checks import check_positive_int, type_name
from attnzoo.functional.mask_basic import causal
from attnzoo.functional.mask_ops import MaskMod, and_masks

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "BlockMask",
    "check_block_size",
    "create_block_mask",
    "pattern_block_mask",
]

# Measured on 2 CPU cores (fp32, head dim 64, sliding window 256 at 16K tokens, forward +
# backward): 128 x 128 blocks run within 5% of the fastest size and waste the least on partial
# blocks (docs/benchmarks.md, "Block-sparse engine").
DEFAULT_BLOCK_SIZE = 128
_EVAL_ELEMENTS = 1 << 24  # mask cells evaluated per chunk while classifying the blocks


def check_block_size(block_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``block_size`` as ``(bq, bk)``: an int for both, a pair, or None for the default."""
    if block_size is None:
        return DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_SIZE
    if isinstance(block_size, tuple | list) and len(block_size) == 2:
        q_block, kv_block = block_size
        return (
            check_positive_int("block_size[0]", q_block),
            check_positive_int("block_size[1]", kv_block),
        )
    if isinstance(block_size, int) and not isinstance(block_size, bool):
        size = check_positive_int("block_size", block_size)
        return size, size
    raise TypeError(
        f"block_size must be an int or a (q_block, kv_block) pair of ints, got "
        f"{type_name(block_size)}"
    )


@dataclass(eq=False)
class BlockMask:
    """The block structure of a boolean attention mask (see the module docstring).

    ``G_b`` and ``G_h`` are 1 when the mask is the same for every batch element / head (it is
    then broadcast), else ``B`` / ``nh``. Every query-block row lists its non-empty key blocks
    in ascending order, padded to the longest row.

    Attributes:
        q_len: Query length ``L``.
        kv_len: Key length ``S``.
        block_size: ``(bq, bk)``.
        kv_indices: ``(G_b, G_h, nq, max_k)`` long: the non-empty key blocks of each row.
        kv_num_blocks: ``(G_b, G_h, nq)`` long: how many entries of ``kv_indices`` are real.
        partial_index: ``(G_b, G_h, nq, max_k)`` long: row of ``partial_masks`` for a partial
            block, ``-1`` for a full one (and for padding entries).
        partial_masks: ``(P, bq, bk)`` bool: the cell masks of the partial blocks; cells past
            ``L`` repeat the last query row, cells past ``S`` are False.
        mask_mod: The mask function it was built from, if any (FlexAttention needs one).

    Example:
        >>> bm = BlockMask.from_mask(torch.ones(8, 8, dtype=torch.bool).tril(), block_size=4)
        >>> bm.kv_num_blocks.tolist()
        [[[1, 2]]]
    """

    q_len: int
    kv_len: int
    block_size: tuple[int, int]
    kv_indices: torch.Tensor
    kv_num_blocks: torch.Tensor
    partial_index: torch.Tensor
    partial_masks: torch.Tensor
    mask_mod: MaskMod | None = None
    # chunk plans of the engine per call size (built on first use; the block mask is immutable)
    plans: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(G_b, G_h, L, S)``: the mask this block mask stands for."""
        return (*self.kv_num_blocks.shape[:2], self.q_len, self.kv_len)

    @property
    def num_blocks(self) -> tuple[int, int]:
        """``(nq, nk)``: query and key blocks."""
        bq, bk = self.block_size
        return -(-self.q_len // bq), -(-self.kv_len // bk)

    @property
    def device(self) -> torch.device:
        return self.kv_indices.device

    def slot_valid(self) -> torch.Tensor:
        """``(G_b, G_h, nq, max_k)`` bool: which entries of ``kv_indices`` are real."""
        slots = torch.arange(self.kv_indices.shape[-1], device=self.device)
        return slots < self.kv_num_blocks.unsqueeze(-1)

    def counts(self) -> tuple[int, int, int]:
        """``(empty, full, partial)`` block pairs, summed over the mask's batch and heads."""
        valid = self.slot_valid()
        partial = int((self.partial_index >= 0).sum())
        full = int(valid.sum()) - partial
        nq, nk = self.num_blocks
        groups = self.kv_num_blocks.shape[0] * self.kv_num_blocks.shape[1]
        return groups * nq * nk - full - partial, full, partial

    def density(self) -> float:
        """Fraction of block pairs that are computed (full or partial)."""
        empty, full, partial = self.counts()
        total = empty + full + partial
        return (full + partial) / total if total else 0.0

    def to_dense(self) -> torch.Tensor:
        """The ``(G_b, G_h, L, S)`` bool mask it stands for (for tests and pictures)."""
        g_b, g_h, nq, _ = self.kv_indices.shape
        bq, bk = self.block_size
        nk = self.num_blocks[1]
        cells = torch.zeros(g_b, g_h, nq, nk, bq, bk, dtype=torch.bool, device=self.device)
        valid = self.slot_valid()
        block = torch.ones(bq, bk, dtype=torch.bool, device=self.device)
        ids = self.partial_index.clamp(min=0)
        with_padding = torch.cat([self.partial_masks, block[None]])  # (P + 1, bq, bk)
        ids = torch.where(self.partial_index >= 0, ids, self.partial_masks.shape[0])
        rows = torch.arange(nq, device=self.device).view(1, 1, nq, 1).expand_as(ids)  # (..., max_k)
        gb = torch.arange(g_b, device=self.device).view(g_b, 1, 1, 1).expand_as(ids)
        gh = torch.arange(g_h, device=self.device).view(1, g_h, 1, 1).expand_as(ids)
        cells[gb[valid], gh[valid], rows[valid], self.kv_indices[valid]] = with_padding[ids[valid]]
        grid = cells.transpose(3, 4).reshape(g_b, g_h, nq * bq, nk * bk)  # (G_b, G_h, Lp, Sp)
        return grid[..., : self.q_len, : self.kv_len]

    @classmethod
    def from_mask(
        cls, mask: torch.Tensor, *, block_size: int | tuple[int, int] | None = None
    ) -> BlockMask:
        """The block mask of a boolean tensor broadcastable to ``(B, nh, L, S)``.

        Args:
            mask: Bool tensor of 2 to 4 dims, ``True`` = may attend.
            block_size: ``bq`` = ``bk``, or ``(bq, bk)``; default :data:`DEFAULT_BLOCK_SIZE`.
        """
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend) of 2 to 4 dims, got "
                f"{type_name(mask)}"
            )
        if not 2 <= mask.dim() <= 4:
            raise ValueError(
                f"mask must have 2 to 4 dims (B, nh, L, S), got shape {tuple(mask.shape)}"
            )
        table = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, nh|1, L, S)
        sizes = table.shape

        def lookup(b, h, q_idx, kv_idx):
            index = (b, h, q_idx, kv_idx)
            return table[tuple(i if n > 1 else 0 for i, n in zip(index, sizes, strict=True))]

        batch = sizes[0] if sizes[0] > 1 else None
        heads = sizes[1] if sizes[1] > 1 else None
        return create_block_mask(
            lookup, batch, heads, sizes[2], sizes[3], block_size=block_size, device=mask.device
        )

    def to_flex(self):
        """The same blocks as a ``torch.nn.attention.flex_attention.BlockMask``."""
        from torch.nn.attention.flex_attention import BlockMask as FlexBlockMask

        if self.mask_mod is None:
            raise ValueError("to_flex needs the mask function the block mask was built from")
        valid = self.slot_valid()
        partial = valid & (self.partial_index >= 0)
        full = valid & (self.partial_index < 0)

        def pack(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            nk = self.num_blocks[1]
            order = torch.sort((~keep).to(torch.int8), dim=-1, stable=True).indices
            indices = self.kv_indices.gather(-1, order)  # kept entries first
            num = keep.sum(-1).to(torch.int32)
            padded = torch.zeros(*indices.shape[:-1], nk, dtype=torch.int32, device=self.device)
            width = min(nk, indices.shape[-1])
            padded[..., :width] = indices[..., :width].to(torch.int32)
            return num, padded

        kv_num, kv_idx = pack(partial)
        full_num, full_idx = pack(full)
        return FlexBlockMask.from_kv_blocks(
            kv_num,
            kv_idx,
            full_num,
            full_idx,
            BLOCK_SIZE=self.block_size,
            mask_mod=self.mask_mod,
            seq_lengths=(self.q_len, self.kv_len),
        )

    def __repr__(self) -> str:
        empty, full, partial = self.counts()
        return (
            f"BlockMask(shape={self.shape}, block_size={self.block_size}, "
            f"full={full}, partial={partial}, empty={empty}, density={self.density():.3f})"
        )


def create_block_mask(
    mask_mod: MaskMod,
    batch: int | None,
    heads: int | None,
    q_len: int,
    kv_len: int | None = None,
    *,
    block_size: int | tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> BlockMask:
    """Classify every ``(query block, key block)`` pair of ``mask_mod`` as empty, full or partial.

    Same arguments as FlexAttention's ``create_block_mask``. The mask function is evaluated on
    chunks of query blocks (about 16M cells at a time), so memory stays ``O(chunk x S)`` plus
    the partial blocks' cell masks; no ``L x S`` tensor is built.

    Args:
        mask_mod: ``mask_mod(b, h, q_idx, kv_idx) -> bool`` tensor (see :mod:`attnzoo.masks`).
        batch: ``B`` when the mask depends on the batch element, else None (broadcast).
        heads: ``nh`` when the mask depends on the head, else None (broadcast).
        q_len: Query length ``L``.
        kv_len: Key length ``S``, default ``L``.
        block_size: ``bq`` = ``bk``, or ``(bq, bk)``; default :data:`DEFAULT_BLOCK_SIZE`.
        device: Device of the block mask (that of the attention inputs).

    Returns:
        A :class:`BlockMask`.

    Example:
        >>> from attnzoo import masks
        >>> bm = create_block_mask(masks.sliding_window(256), None, None, 4096)
        >>> bm.counts()[1:], bm.partial_masks.shape  # (full, partial) blocks
        ((94, 60), torch.Size([60, 128, 128]))
    """
    if not callable(mask_mod):
        raise TypeError(
            f"mask_mod must be callable (b, h, q_idx, kv_idx) -> bool tensor, got "
            f"{type_name(mask_mod)}"
        )
    g_b = 1 if batch is None else check_positive_int("batch", batch)
    g_h = 1 if heads is None else check_positive_int("heads", heads)
    q_len = check_positive_int("q_len", q_len, minimum=0)
    kv_len = q_len if kv_len is None else check_positive_int("kv_len", kv_len, minimum=0)
    bq, bk = check_block_size(block_size)
    nq, nk = -(-q_len // bq), -(-kv_len // bk)
    b = torch.arange(g_b, device=device).view(g_b, 1, 1, 1)  # (G_b, 1, 1, 1)
    h = torch.arange(g_h, device=device).view(1, g_h, 1, 1)  # (1, G_h, 1, 1)
    kv = torch.arange(nk * bk, device=device).view(1, 1, 1, nk * bk)  # (1, 1, 1, Sp)
    kv_in = kv < kv_len
    kv = kv.clamp(max=max(kv_len - 1, 0))
    non_empty = torch.zeros(g_b, g_h, nq, nk, dtype=torch.bool, device=device)
    partial_index = torch.full((g_b, g_h, nq, nk), -1, dtype=torch.long, device=device)
    partial_masks = [torch.zeros(0, bq, bk, dtype=torch.bool, device=device)]
    found = 0
    # at most ~16M cells and at most an eighth of the query blocks per chunk: never L x S
    rows_per_chunk = max(1, min(_EVAL_ELEMENTS // max(1, g_b * g_h * bq * nk * bk), nq // 8))
    for start in range(0, nq, rows_per_chunk):
        stop = min(nq, start + rows_per_chunk)
        # query rows past L repeat the last real row: they never change a block's class
        q = torch.arange(start * bq, stop * bq, device=device).clamp(max=max(q_len - 1, 0))
        cells = torch.as_tensor(mask_mod(b, h, q.view(1, 1, -1, 1), kv))  # (G_b, G_h, rows, Sp)
        if cells.dtype != torch.bool:
            raise TypeError(f"mask_mod must return a bool tensor, got dtype {cells.dtype}")
        cells = (cells & kv_in).expand(g_b, g_h, (stop - start) * bq, nk * bk)
        # (G_b, G_h, rows, Sp) -> (G_b, G_h, n, nk, bq, bk): one cell mask per block pair
        cells = cells.reshape(g_b, g_h, stop - start, bq, nk, bk).transpose(3, 4)
        visible = cells.any(dim=(-2, -1))  # (G_b, G_h, n, nk)
        partial = visible & ~cells.all(dim=(-2, -1))
        count = int(partial.sum())
        non_empty[:, :, start:stop] = visible
        ids = torch.arange(found, found + count, device=device)
        partial_index[:, :, start:stop][partial] = ids
        partial_masks.append(cells[partial])  # (count, bq, bk)
        found += count
    kv_num_blocks = non_empty.sum(-1)  # (G_b, G_h, nq)
    # at least one slot (an invalid one when nothing is visible): rows that see nothing still
    # flow through the computation and come out as exact zeros with zero gradients
    max_k = max(1, int(kv_num_blocks.max())) if kv_num_blocks.numel() else 1
    # the non-empty blocks of each row first, in ascending order (a stable sort of "is empty")
    order = torch.sort((~non_empty).to(torch.int8), dim=-1, stable=True).indices[..., :max_k]
    valid = torch.arange(max_k, device=device) < kv_num_blocks.unsqueeze(-1)
    kv_indices = torch.where(valid, order, 0)  # (G_b, G_h, nq, max_k)
    partial_index = torch.where(valid, partial_index.gather(-1, order), -1)
    return BlockMask(
        q_len=q_len,
        kv_len=kv_len,
        block_size=(bq, bk),
        kv_indices=kv_indices,
        kv_num_blocks=kv_num_blocks,
        partial_index=partial_index,
        partial_masks=torch.cat(partial_masks),
        mask_mod=mask_mod,
    )


def pattern_block_mask(
    mask_mod: MaskMod,
    q_len: int,
    kv_len: int,
    *,
    is_causal: bool,
    batch: int | None = None,
    heads: int | None = None,
    block_size: int | tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> BlockMask:
    """The block mask of a module's pattern, with causality when ``is_causal``.

    :func:`create_block_mask` of ``mask_mod``, intersected with bottom-right causality
    (``j <= i + S - L``, as ``mha``'s ``is_causal``) when ``is_causal``.

    Example:
        >>> from attnzoo import masks
        >>> bm = pattern_block_mask(masks.sliding_window(2), 8, 8, is_causal=True, block_size=4)
        >>> want = masks.materialize(masks.sliding_window(2, causal=True), 8)
        >>> bool((bm.to_dense() == want).all())
        True
    """
    if is_causal:
        mask_mod = and_masks(mask_mod, causal(q_len=q_len, kv_len=kv_len))
    return create_block_mask(
        mask_mod, batch, heads, q_len, kv_len, block_size=block_size, device=device
    )
