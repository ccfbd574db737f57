"""Sequence token mixers ``(B, L, C) -> (B, L, C)``.

Members: ``mha``, ``additive_attention``, ``nadaraya_watson``, ``masked``.
"""

from attnzoo.sequence import interop
from attnzoo.sequence.additive import AdditiveAttention
from attnzoo.sequence.cache import KVCache
from attnzoo.sequence.masked import MaskedAttention
from attnzoo.sequence.multihead import MultiHeadAttention
from attnzoo.sequence.nadaraya_watson import NadarayaWatsonAttention

__all__ = [
    "AdditiveAttention",
    "KVCache",
    "MaskedAttention",
    "MultiHeadAttention",
    "NadarayaWatsonAttention",
    "interop",
]
