"""Mask functions with FlexAttention's signature: ``mask_mod(b, h, q_idx, kv_idx) -> bool``.

A mask function says whether query ``q_idx`` of batch ``b`` and head ``h`` may attend to key
``kv_idx`` (``True`` = may attend). Every function here is written with tensor operations only,
so it works both on broadcast index grids (:func:`materialize`) and under ``torch.vmap`` inside
``torch.nn.attention.flex_attention.create_block_mask``. Combine them with :func:`and_masks`,
:func:`or_masks` and :func:`not_mask`; draw them with :func:`to_string`.

Pattern mechanisms (``local``, ``strided``, ``longformer``, ``bigbird`` ...) are defined by these
functions: their fast paths must equal dense attention with ``materialize(mask_mod)``.

Example:
    >>> from attnzoo import masks
    >>> print(masks.to_string(masks.sliding_window(1), 5))
    ██···
    ███··
    ·███·
    ··███
    ···██
"""

from __future__ import annotations

from collections.abc import Callable

from attnzoo.functional.mask_basic import (
    causal,
    dilated,
    document,
    fixed,
    global_tokens,
    prefix_lm,
    sliding_window,
    strided,
)
from attnzoo.functional.mask_ops import (
    MaskMod,
    and_masks,
    materialize,
    not_mask,
    or_masks,
    to_string,
)
from attnzoo.functional.mask_sparse import bigbird, longformer, random_blocks

__all__ = [
    "MASK_FUNCTIONS",
    "MaskMod",
    "and_masks",
    "bigbird",
    "causal",
    "dilated",
    "document",
    "fixed",
    "global_tokens",
    "longformer",
    "materialize",
    "not_mask",
    "or_masks",
    "prefix_lm",
    "random_blocks",
    "sliding_window",
    "strided",
    "to_string",
]

MASK_FUNCTIONS: dict[str, Callable[..., MaskMod]] = {
    "causal": causal,
    "sliding_window": sliding_window,
    "dilated": dilated,
    "strided": strided,
    "global_tokens": global_tokens,
    "random_blocks": random_blocks,
    "longformer": longformer,
    "bigbird": bigbird,
    "prefix_lm": prefix_lm,
    "document": document,
    "fixed": fixed,
    # the pattern mechanisms' registry names, as aliases
    "local": sliding_window,
    "global": global_tokens,
    "sparse_transformer": fixed,
}
"""Every mask function by name (the names ``attnzoo mask NAME`` takes)."""
