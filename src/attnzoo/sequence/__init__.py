"""Sequence token mixers ``(B, L, C) -> (B, L, C)``.

Members: ``mha``, ``additive_attention``, ``nadaraya_watson``, ``masked``, and the scores and
normalisers of the soft/hard discussion: ``sigmoid_attention``, ``topk_attention``,
``l2_attention``.
"""

from attnzoo.sequence import interop
from attnzoo.sequence.additive import AdditiveAttention
from attnzoo.sequence.cache import KVCache, PackedKVCache
from attnzoo.sequence.l2 import L2Attention
from attnzoo.sequence.masked import MaskedAttention
from attnzoo.sequence.multihead import MultiHeadAttention
from attnzoo.sequence.nadaraya_watson import NadarayaWatsonAttention
from attnzoo.sequence.sigmoid import SigmoidAttention
from attnzoo.sequence.topk import TopKAttention

__all__ = [
    "AdditiveAttention",
    "KVCache",
    "L2Attention",
    "MaskedAttention",
    "MultiHeadAttention",
    "NadarayaWatsonAttention",
    "PackedKVCache",
    "SigmoidAttention",
    "TopKAttention",
    "interop",
]
