"""Pure attention maths: scoring, masked softmax, attention, pooling, hard attention, masks.

Nothing here is an ``nn.Module``; every module in attnzoo is built from these functions.
"""

from attnzoo.functional import masks
from attnzoo.functional.attention import attention, attention_reference, validate_qkv
from attnzoo.functional.block_mask import BlockMask, create_block_mask
from attnzoo.functional.block_sparse import block_sparse_attention
from attnzoo.functional.dropout import dropout
from attnzoo.functional.hard import hard_attention
from attnzoo.functional.heads import merge_heads, split_heads
from attnzoo.functional.normalizers import entmax15, sparsemax
from attnzoo.functional.pooling import attention_pooling, average_pooling, nadaraya_watson, pool
from attnzoo.functional.scoring import (
    additive_score,
    bilinear_score,
    cosine_score,
    dot_score,
    l2_score,
    scaled_dot_score,
)
from attnzoo.functional.softmax import (
    causal_mask,
    lengths_to_mask,
    masked_softmax,
    merge_masks,
    safe_softmax,
)
from attnzoo.functional.varlen import varlen_attention

__all__ = [
    "BlockMask",
    "additive_score",
    "attention",
    "attention_pooling",
    "attention_reference",
    "average_pooling",
    "bilinear_score",
    "block_sparse_attention",
    "causal_mask",
    "cosine_score",
    "create_block_mask",
    "dot_score",
    "dropout",
    "entmax15",
    "hard_attention",
    "l2_score",
    "lengths_to_mask",
    "masked_softmax",
    "masks",
    "merge_heads",
    "merge_masks",
    "nadaraya_watson",
    "pool",
    "safe_softmax",
    "scaled_dot_score",
    "sparsemax",
    "split_heads",
    "validate_qkv",
    "varlen_attention",
]
