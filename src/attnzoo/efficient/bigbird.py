"""BigBird attention: block window + global blocks + seeded random blocks."""

from __future__ import annotations

import torch

from attnzoo._checks import check_positive_int
from attnzoo.efficient._blocks import pattern_keep
from attnzoo.efficient._pattern import PatternAttention
from attnzoo.functional.attention import attention
from attnzoo.functional.mask_ops import MaskMod
from attnzoo.functional.mask_sparse import bigbird
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["BigBirdAttention"]


@EFFICIENT.register(
    "bigbird",
    paper=Paper(
        title="Big Bird: Transformers for Longer Sequences",
        authors="Zaheer, Guruganesh, Dubey, Ainslie, Alberti, Ontanon, Pham, Ravula, Wang, "
        "Yang, Ahmed",
        year=2020,
        url="https://arxiv.org/abs/2007.14062",
    ),
    tags=("pattern", "local", "global", "random", "self"),
    complexity="O(L (w + g + r) b d)",
)
class BigBirdAttention(PatternAttention):
    r"""BigBird-ITC block-sparse self-attention: window, global and random blocks.

    Zaheer et al., "Big Bird: Transformers for Longer Sequences", 2020,
    https://arxiv.org/abs/2007.14062. The sequence is cut into blocks of ``block_size``; query
    block ``r`` attends the ``num_window_blocks`` blocks centred on it, the
    ``num_global_blocks`` global blocks (first and last, then alternately), and
    ``num_random_blocks`` random blocks drawn with ``torch.Generator().manual_seed(seed)`` from
    the remaining ones; global blocks attend everything. Defined by
    ``attnzoo.masks.bigbird(block_size, q_len=L, ...)``, and equal to dense attention with that
    mask materialised (merged with the call's padding mask).

    Fast path: the block-sparse engine (:func:`~attnzoo.functional.block_sparse_attention`)
    on the pattern's block mask with blocks of ``block_size``, so every block pair is either
    empty or full: each query block gathers its window, global and random key blocks, global
    query blocks gather all of them. It is as fast as the former banded path forward and
    faster backward (``docs/benchmarks.md``). Time ``O(L (w + g + r) b d)``, memory
    ``O(L (w + g + r) b)``; no ``L x L`` tensor.

    Lengths: any ``L``. A last partial block is a block like the others (the mask function
    decides, the fast path pads internally and equals the reference exactly). Short sequences:
    when every block row of the pattern is full — with the defaults for ``L <= 7 * block_size``
    (7 blocks or fewer), including every ``L <= block_size`` — the layer *is* dense attention
    and runs through SDPA.

    Can: padding masks ``(B, L)``. Cannot: causality (the random and global blocks are
    bidirectional, as in the paper's encoder; use ``local`` or ``longformer``), cross-attention
    (both raise ``NotImplementedError``). Per-query or float masks and weight recording take the
    dense reference path. The random draw depends on ``L`` (one table per length) and on
    ``seed``, never on the data or the global RNG.

    Defaults and deviations: the paper's base configuration, ``block_size=64``, 3 window, 2
    global and 3 random blocks. The reference implementation draws different random blocks per
    head and per layer; here all heads share the draw of ``seed`` (give each layer its own
    ``seed``).

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in N(i)} \mathrm{softmax}_{j \in N(i)}\!\left(
        \frac{q_i k_j^\top}{\sqrt{d_h}}\right) v_j, \qquad
        N(i) = \bigcup_{B \,\in\, W(r) \,\cup\, G \,\cup\, R(r)} B \quad (r = \text{block of } i)
        $$

        with blocks of `block_size`: $W(r)$ the window blocks around $r$, $G$ the global blocks
        (which
        attend everything) and $R(r)$ the seeded random blocks.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        block_size: Tokens per block.
        num_window_blocks: Odd number of blocks in the sliding block window.
        num_global_blocks: Global blocks (front and back alternately).
        num_random_blocks: Random key blocks per query block.
        seed: Seed of the random-block draw.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; mask: ``(B, L)`` padding
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("bigbird", 64, num_heads=4, block_size=8)
        >>> attn(torch.randn(2, 100, 64)).shape
        torch.Size([2, 100, 64])
    """

    backend = "block_sparse engine with blocks of block_size (every block pair empty or full)"

    supports_causal = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        block_size: int = 64,
        num_window_blocks: int = 3,
        num_global_blocks: int = 2,
        num_random_blocks: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.block_size = check_positive_int("block_size", block_size)
        self.num_window_blocks = check_positive_int("num_window_blocks", num_window_blocks)
        if num_window_blocks % 2 == 0:
            raise ValueError(
                f"num_window_blocks must be odd (centred window), got {num_window_blocks}"
            )
        self.num_global_blocks = check_positive_int(
            "num_global_blocks", num_global_blocks, minimum=0
        )
        self.num_random_blocks = check_positive_int(
            "num_random_blocks", num_random_blocks, minimum=0
        )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        self.seed = seed
        self._dense_reasons: dict[tuple, str | None] = {}

    def pattern(self, q_len: int, kv_len: int) -> MaskMod:
        """``attnzoo.masks.bigbird(block_size, q_len=q_len, ...)`` (one random draw per length)."""
        return bigbird(
            self.block_size,
            q_len=q_len,
            num_window_blocks=self.num_window_blocks,
            num_global_blocks=self.num_global_blocks,
            num_random_blocks=self.num_random_blocks,
            seed=self.seed,
        )

    def _block_table(self, length: int, device: torch.device | None = None):
        """``(keep_fn, first position of each block (nb,), block table (nb, nb))``."""
        keep_fn = pattern_keep(self.pattern(length, length), length, length, False)
        starts = torch.arange(0, length, self.block_size, device=device)  # (nb,)
        return keep_fn, starts, keep_fn(starts.unsqueeze(-1), starts)  # (nb, nb) block table

    def dense_reason(self, q_len: int, kv_len: int) -> str | None:
        """Dense SDPA when every block sees every block (7 blocks or fewer by default).

        Kept per length and options, so that a compiled forward never redraws the table.
        """
        key = (self.extra_repr(), q_len)
        if key not in self._dense_reasons:
            reason = None
            if bool(self._block_table(q_len)[2].all()):
                blocks = -(-q_len // self.block_size)
                reason = f"{blocks} block(s) of block_size={self.block_size}, each sees every block"
            self._dense_reasons[key] = reason
        return self._dense_reasons[key]

    def fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        if self.dense_reason(q.shape[2], k.shape[2]) is not None:  # every block sees all
            mask = None if key_padding is None else key_padding[:, None, None, :]  # (B, 1, 1, S)
            return attention(q, k, v, mask=mask, dropout_p=self.dropout_p)
        return self.engine(q, k, v, key_padding, is_causal, block_size=self.block_size)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, block_size={self.block_size}, "
            f"num_window_blocks={self.num_window_blocks}, "
            f"num_global_blocks={self.num_global_blocks}, "
            f"num_random_blocks={self.num_random_blocks}, seed={self.seed}"
        )
