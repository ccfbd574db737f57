"""Basic mask functions: causal, local, dilated/strided, global tokens, prefix LM, documents.

Each returns a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` written with tensor operations only, so
it works on broadcast index grids and under ``torch.vmap`` (FlexAttention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnzoo._checks import check_choice, check_positive_int, type_name
from attnzoo.functional.mask_ops import MaskMod, check_len, materialize, or_masks, to_string  # noqa: F401  (doctests)

__all__ = [
    "causal",
    "dilated",
    "document",
    "fixed",
    "global_tokens",
    "prefix_lm",
    "sliding_window",
    "strided",
]


def causal(
    *, q_len: int | None = None, kv_len: int | None = None, alignment: str = "bottom_right"
) -> MaskMod:
    """Causal mask: query ``i`` sees keys ``j <= i + offset``.

    Args:
        q_len: Query length ``L``; with ``kv_len`` it sets the bottom-right offset ``S - L``.
        kv_len: Key length ``S``.
        alignment: ``"bottom_right"`` (``offset = S - L``, what a KV cache needs; ``0`` when the
            lengths are not given) or ``"top_left"`` (``offset = 0``, PyTorch's ``is_causal``).

    Returns:
        A mask function.

    Example:
        >>> print(to_string(causal(q_len=2, kv_len=4), 2, 4))
        ███·
        ████
    """
    check_choice("alignment", alignment, ("bottom_right", "top_left"))
    q_len, kv_len = check_len("q_len", q_len), check_len("kv_len", kv_len)
    offset = kv_len - q_len if alignment == "bottom_right" and None not in (q_len, kv_len) else 0

    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    return mask_mod


def sliding_window(window: int, *, causal: bool = False) -> MaskMod:
    """Local attention: ``|i - j| <= window`` (``i - window <= j <= i`` when ``causal``).

    Args:
        window: One-sided half width; ``0`` lets each token see only itself.
        causal: Keep only the left half of the window.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(sliding_window(1, causal=True), 4))
        █···
        ██··
        ·██·
        ··██
    """
    window = check_positive_int("window", window, minimum=0)

    def mask_mod(b, h, q_idx, kv_idx):
        diff = q_idx - kv_idx
        near = diff <= window if causal else diff.abs() <= window
        return near & (diff >= 0) if causal else near

    return mask_mod


def dilated(dilation: int, *, window: int | None = None, causal: bool = False) -> MaskMod:
    """Dilated (strided) attention: ``j = i + m * dilation`` with ``|m| <= window``.

    With ``window=None`` the pattern is unbounded: the Sparse Transformer's strided head,
    ``(i - j) mod dilation == 0``. With a window it is Longformer's dilated sliding window.

    Args:
        dilation: Gap between attended keys, ``>= 1`` (``1`` is a plain sliding window).
        window: Number of attended keys on each side, or ``None`` for no limit.
        causal: Keep only keys ``j <= i``.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(dilated(2, causal=True), 5))
        █····
        ·█···
        █·█··
        ·█·█·
        █·█·█
    """
    dilation = check_positive_int("dilation", dilation)
    window = check_len("window", window)

    def mask_mod(b, h, q_idx, kv_idx):
        diff = q_idx - kv_idx
        keep = diff.remainder(dilation) == 0
        if window is not None:
            keep = keep & (diff.abs() <= window * dilation)
        return keep & (diff >= 0) if causal else keep

    return mask_mod


def strided(stride: int, *, causal: bool = False) -> MaskMod:
    """Sparse Transformer strided pattern: local window united with every ``stride``-th key.

    Query ``i`` sees ``|i - j| <= stride`` and every ``j`` with ``(i - j) mod stride == 0``.

    Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse Transformers", 2019,
    https://arxiv.org/abs/1904.10509. The paper splits the two parts over two heads; this is the
    union, which is what one head of a merged pattern attends.

    Args:
        stride: The stride ``l`` (about ``sqrt(L)`` in the paper).
        causal: Keep only keys ``j <= i``.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(strided(2, causal=True), 6))
        █·····
        ██····
        ███···
        ·███··
        █·███·
        ·█·███
    """
    stride = check_positive_int("stride", stride)
    return or_masks(sliding_window(stride, causal=causal), dilated(stride, causal=causal))


def fixed(block: int, num_summary: int = 8, *, causal: bool = False) -> MaskMod:
    """Sparse Transformer fixed pattern: own block, plus the last ``num_summary`` of every block.

    Query ``i`` sees ``j`` when ``i // block == j // block`` (the paper's ``A(1)``) or when
    ``j mod block >= block - num_summary`` (``A(2)``, the summary columns). Child, Gray, Radford,
    Sutskever, "Generating Long Sequences with Sparse Transformers", 2019,
    https://arxiv.org/abs/1904.10509 (section 4.3; the paper uses ``block`` 128 and
    ``num_summary`` in 8, 16, 32). As for :func:`strided`, this is the union of the two heads.

    Args:
        block: Block length ``l``.
        num_summary: Summary positions ``c`` at the end of every block, ``0 <= c <= block``.
        causal: Keep only keys ``j <= i``.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(fixed(3, 1, causal=True), 7))
        █······
        ██·····
        ███····
        ··██···
        ··███··
        ··████·
        ··█··██
    """
    block = check_positive_int("block", block)
    num_summary = check_positive_int("num_summary", num_summary, minimum=0)
    if num_summary > block:
        raise ValueError(f"num_summary must be <= block ({block}), got {num_summary}")

    def mask_mod(b, h, q_idx, kv_idx):
        keep = (q_idx // block == kv_idx // block) | (kv_idx % block >= block - num_summary)
        return keep & (kv_idx <= q_idx) if causal else keep

    return mask_mod


def global_tokens(
    indices: Sequence[int] | torch.Tensor | None = None, *, num_global: int | None = None
) -> MaskMod:
    """Global tokens: they attend to every key and every query attends to them.

    Args:
        indices: Positions of the global tokens.
        num_global: Alternatively, the first ``num_global`` positions are global.

    Returns:
        A mask function (combine with a local pattern through :func:`or_masks`).

    Example:
        >>> print(to_string(global_tokens([0]), 3))
        ███
        █··
        █··
    """
    if (indices is None) == (num_global is None):
        raise ValueError("give exactly one of indices or num_global")
    if num_global is not None:
        count = check_positive_int("num_global", num_global, minimum=0)

        def first_n(b, h, q_idx, kv_idx):
            return (q_idx < count) | (kv_idx < count)

        return first_n
    if isinstance(indices, str | bytes) or (
        isinstance(indices, torch.Tensor) and (indices.is_floating_point() or indices.is_complex())
    ):
        raise TypeError(f"indices must be a sequence of ints or an integer tensor, got {indices!r}")
    try:
        index = torch.as_tensor(indices, dtype=torch.long).flatten()  # (G,)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"indices must be a sequence of ints, got {type_name(indices)}") from None
    if bool((index < 0).any()):
        raise ValueError(f"indices must be >= 0, got {index.tolist()}")

    def mask_mod(b, h, q_idx, kv_idx):
        idx = index.to(q_idx.device)
        return (q_idx.unsqueeze(-1) == idx).any(-1) | (kv_idx.unsqueeze(-1) == idx).any(-1)

    return mask_mod


def prefix_lm(prefix_len: int | torch.Tensor) -> MaskMod:
    """Prefix LM: keys ``j < prefix_len`` are visible to all, the rest causally.

    Args:
        prefix_len: An int, or a ``(B,)`` tensor of per-sample prefix lengths.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(prefix_lm(2), 4))
        ██··
        ██··
        ███·
        ████
    """
    if isinstance(prefix_len, torch.Tensor):
        if prefix_len.is_floating_point() or prefix_len.is_complex():
            raise TypeError(
                f"prefix_len must be an int or an integer (B,) tensor, got dtype {prefix_len.dtype}"
            )
        lengths = prefix_len.long().flatten()  # (B,)

        def per_sample(b, h, q_idx, kv_idx):
            return (kv_idx < lengths.to(q_idx.device)[b]) | (kv_idx <= q_idx)

        return per_sample
    prefix_len = check_positive_int("prefix_len", prefix_len, minimum=0)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx < prefix_len) | (kv_idx <= q_idx)

    return mask_mod


def document(document_ids: torch.Tensor) -> MaskMod:
    """Packed sequences: tokens attend only within their own document.

    Combine with :func:`causal` for packed language-model training.

    Args:
        document_ids: ``(L,)`` or ``(B, L)`` integer document id of every token.

    Returns:
        A mask function.

    Example:
        >>> print(to_string(document(torch.tensor([0, 0, 1])), 3))
        ██·
        ██·
        ··█
    """
    if not isinstance(document_ids, torch.Tensor) or document_ids.dim() not in (1, 2):
        raise ValueError(
            f"document_ids must be a (L,) or (B, L) tensor, got {type_name(document_ids)}"
        )
    if document_ids.is_floating_point() or document_ids.is_complex():
        raise TypeError(f"document_ids must be an integer tensor, got dtype {document_ids.dtype}")
    ids = document_ids if document_ids.dim() == 2 else document_ids.unsqueeze(0)  # (B, L)
    per_batch = document_ids.dim() == 2

    def mask_mod(b, h, q_idx, kv_idx):
        table = ids.to(q_idx.device)
        row = b if per_batch else torch.zeros_like(b)
        return table[row, q_idx] == table[row, kv_idx]

    return mask_mod
