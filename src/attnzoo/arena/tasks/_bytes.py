"""Byte-level tokenisation shared by the text tasks (LRA's ``ByteTextEncoder``).

Token ids are the UTF-8 bytes of the text plus one (1-256), so that 0 stays the padding id: a
vocabulary of 257. Text read from files that are not valid UTF-8 keeps its raw bytes through
Python's ``surrogateescape`` error handler, so every byte of a document reaches the model.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BYTE_VOCAB", "decode_bytes", "encode_bytes"]

BYTE_VOCAB = 257  # 256 byte values shifted by one, and the padding id 0


def encode_bytes(text: str, max_len: int) -> list[int]:
    """The first ``max_len`` UTF-8 bytes of ``text`` as ids ``byte + 1``.

    Example:
        >>> encode_bytes("Ab é", 10)
        [66, 99, 33, 196, 170]
        >>> encode_bytes("Ab é", 2)
        [66, 99]
    """
    return [b + 1 for b in text.encode("utf-8", "surrogateescape")[:max_len]]


def decode_bytes(ids: Iterable[int]) -> str:
    """Inverse of :func:`encode_bytes`; padding ids (0) are dropped.

    Example:
        >>> decode_bytes([66, 99, 33, 196, 170, 0, 0])
        'Ab é'
    """
    data = bytes(int(i) - 1 for i in ids if int(i) != 0)
    return data.decode("utf-8", "surrogateescape")
