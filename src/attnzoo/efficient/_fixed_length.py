"""Fixed-length token mixers: the ``seq_len`` checks shared by synthesizer, mixer and aft.

A fixed-length mechanism owns parameters indexed by position (a ``seq_len x seq_len`` matrix,
an MLP over the token axis ...). It is built with ``seq_len``; an input of length
``L <= seq_len`` uses the first ``L`` positions of those parameters (the fairseq rule for
Linformer, failure mode 33), and a longer input raises ``ValueError`` naming ``seq_len``.
"""

from __future__ import annotations

from typing import Any

from attnzoo._checks import check_positive_int, type_name

__all__ = ["check_length", "check_seq_len"]


def check_seq_len(seq_len: Any, owner: str, *, required: bool = True) -> int | None:
    """``seq_len`` validated for the constructor of ``owner``.

    Args:
        seq_len: The longest sequence the module will take (an ``int >= 1``), or None when the
            module (in its current mode) has no positional parameters and ``required`` is False.
        owner: Name used in the error message (e.g. ``"aft(mode='full')"``).
        required: Whether None is an error.

    Returns:
        The validated ``seq_len`` (or None).
    """
    if seq_len is None:
        if required:
            raise ValueError(
                f"{owner} has parameters indexed by position and needs seq_len= (the longest "
                "input length, e.g. seq_len=1024); got seq_len=None"
            )
        return None
    if isinstance(seq_len, bool) or not isinstance(seq_len, int):
        raise TypeError(f"seq_len must be an int >= 1, got {type_name(seq_len)}")
    return check_positive_int("seq_len", seq_len)


def check_length(owner: str, length: int, seq_len: int | None) -> None:
    """Raise ``ValueError`` when an input of ``length`` tokens exceeds ``seq_len``.

    ``seq_len=None`` means the module has no length limit.
    """
    if seq_len is not None and length > seq_len:
        raise ValueError(
            f"{owner} was built with seq_len={seq_len} and cannot take a sequence of length "
            f"{length}: its positional parameters stop at {seq_len}. Build it with "
            f"seq_len >= {length}; shorter inputs use the first L positions."
        )
