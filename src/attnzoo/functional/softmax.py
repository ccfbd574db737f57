"""Masked softmax: the one place where masks meet scores.

Conventions (docs/design.md section 4): a boolean mask is ``True`` where a query may attend; a float
mask is an additive bias (``-inf`` forbids). A query row with nothing to attend to gives exact
zeros, in the weights and in the gradients, never NaN. Half-precision scores are normalised in
float32 and returned in their own dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo._checks import check_choice, check_positive_int, type_name

__all__ = [
    "ALIGNMENTS",
    "causal_mask",
    "check_mask",
    "key_padding_keep",
    "lengths_to_mask",
    "masked_softmax",
    "merge_masks",
    "safe_softmax",
]


ALIGNMENTS = ("bottom_right", "top_left")


def causal_mask(
    q_len: int, kv_len: int, *, alignment: str = "bottom_right", device: torch.device | None = None
) -> torch.Tensor:
    """``(L, S)`` boolean causal mask, ``True`` where query ``i`` may see key ``j``.

    ``bottom_right`` (the default, what a KV cache needs): ``j <= i + S - L``.
    ``top_left`` (PyTorch's ``is_causal``): ``j <= i``.

    Example:
        >>> causal_mask(2, 4).int()
        tensor([[1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    check_choice("alignment", alignment, ALIGNMENTS)
    if not torch.compiler.is_compiling():  # lengths may be symbolic while compiling
        check_positive_int("q_len", q_len, minimum=0)
        check_positive_int("kv_len", kv_len, minimum=0)
    offset = kv_len - q_len if alignment == "bottom_right" else 0
    ones = torch.ones(q_len, kv_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=offset)


def check_mask(
    mask: object, target_shape: torch.Size | tuple[int, ...], dtype: torch.dtype, name: str = "mask"
) -> torch.Tensor:
    """Validate an attention mask against the scores it will be applied to.

    Args:
        mask: Boolean tensor (``True`` = may attend) or floating tensor of additive biases with the
            same dtype as the scores; at least 2-D and broadcastable to ``target_shape``.
        target_shape: Shape of the scores, ``(..., L, S)``.
        dtype: Dtype of the queries/scores; a float mask must have it.
        name: Argument name used in error messages.

    Returns:
        ``mask`` unchanged.

    Raises:
        TypeError: wrong type or dtype. ValueError: wrong rank, shape, NaN or ``+inf``.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type_name(mask)}")
    if mask.dtype != torch.bool and mask.dtype != dtype:
        raise TypeError(
            f"{name} must be a bool tensor (True = may attend) or a float tensor of additive "
            f"biases with the scores' dtype {dtype}; got dtype {mask.dtype}. Convert with "
            f"mask.bool() or mask.to({dtype})."
        )
    target_shape = tuple(target_shape)
    if mask.dim() < 2 or mask.dim() > len(target_shape):
        raise ValueError(
            f"{name} must have between 2 and {len(target_shape)} dims and broadcast to "
            f"{target_shape} (..., L, S); got shape {tuple(mask.shape)}. For a per-key padding "
            f"mask of shape (B, S) use mask[:, None, None, :]."
        )
    try:
        broadcast = torch.broadcast_shapes(mask.shape, target_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != torch.Size(target_shape):
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{target_shape} (expected each dim to equal the target's or be 1)"
        )
    if mask.dtype != torch.bool and bool(torch.isnan(mask).any() | torch.isposinf(mask).any()):
        raise ValueError(
            f"float {name} contains NaN or +inf; use -inf (or a bool mask) to forbid a position"
        )
    return mask


def merge_masks(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    """Intersect two masks: bool & bool stays bool; with a float mask the result is a float bias."""
    for name, mask in (("first", first), ("second", second)):
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise TypeError(f"{name} must be a mask tensor or None, got {type_name(mask)}")
    if first is None:
        return second
    if second is None:
        return first
    if first.dtype == torch.bool and second.dtype == torch.bool:
        return first & second
    if first.dtype == torch.bool:
        return second.masked_fill(~first, float("-inf"))
    if second.dtype == torch.bool:
        return first.masked_fill(~second, float("-inf"))
    return first + second


def lengths_to_mask(valid_lens: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
    """Boolean mask from d2l-style valid lengths.

    Args:
        valid_lens: ``(B,)`` (keys ``j < valid_lens[b]`` are real for every query of row ``b``) or
            ``(B, L)`` (one length per query).
        target_shape: Scores shape ``(B, ..., L, S)``.

    Returns:
        Bool mask broadcastable to ``target_shape``: ``(B, 1.., 1, S)`` or ``(B, 1.., L, S)``.
    """
    if not isinstance(valid_lens, torch.Tensor):
        raise TypeError(f"valid_lens must be a torch.Tensor, got {type_name(valid_lens)}")
    if valid_lens.is_floating_point() or valid_lens.is_complex() or valid_lens.dtype == torch.bool:
        raise TypeError(f"valid_lens must be an integer tensor, got dtype {valid_lens.dtype}")
    batch, length, keys = target_shape[0], target_shape[-2], target_shape[-1]
    middle = (1,) * (len(target_shape) - 3)
    if valid_lens.shape == (batch,):
        lens = valid_lens.view(batch, *middle, 1, 1)  # (B, 1.., 1, 1)
    elif valid_lens.shape == (batch, length):
        lens = valid_lens.view(batch, *middle, length, 1)  # (B, 1.., L, 1)
    else:
        raise ValueError(
            f"valid_lens must have shape (B,) = ({batch},) or (B, L) = ({batch}, {length}), "
            f"got {tuple(valid_lens.shape)}"
        )
    if bool((valid_lens < 0).any()):
        raise ValueError("valid_lens must be >= 0")
    positions = torch.arange(keys, device=valid_lens.device)
    return positions < lens


def safe_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dim that returns exact zeros for rows with nothing to attend to.

    No validation: callers check ``mask`` with :func:`check_mask` first. Use
    :func:`masked_softmax` from user code.
    """
    if scores.shape[-1] == 0:
        return scores.clone()  # no keys: every (empty) row is "fully masked"
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        if mask.dtype == torch.bool:
            work = work.masked_fill(~mask, float("-inf"))
        else:
            work = work + mask.to(work.dtype)
    # A row whose maximum is -inf has no key to attend to. Filling it with zeros before the
    # softmax keeps it finite, and filling the result with zeros afterwards gives exact zeros
    # whose gradient (through masked_fill) is exactly zero.
    dead = work.amax(dim=-1, keepdim=True) == float("-inf")
    attn = F.softmax(work.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return attn.to(scores.dtype)


def masked_softmax(
    scores: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    valid_lens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the last dim of ``scores`` with masked positions given zero weight.

    The survey's masked softmax (d2l ``masked_softmax``) generalised: a boolean or additive mask,
    or valid lengths, or both (they are intersected).

    Args:
        scores: ``(..., L, S)`` floating tensor of attention scores.
        mask: Bool (``True`` = keep) or additive float mask broadcastable to ``scores``.
        valid_lens: ``(B,)`` or ``(B, L)`` integer lengths; keys at ``j >= valid_len`` get zero
            weight. Needs ``scores`` of at least 3 dims ``(B, ..., L, S)``.

    Returns:
        Weights of the same shape and dtype as ``scores``; each row sums to one over its kept
        keys, and a fully masked row is exactly zero (with zero gradient).

    Shape:
        - scores: ``(B, L, S)`` or ``(B, nh, L, S)`` (any ``(..., L, S)`` without ``valid_lens``)
        - output: same as ``scores``

    Example:
        >>> scores = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]])
        >>> masked_softmax(scores, valid_lens=torch.tensor([2]))
        tensor([[[0.2689, 0.7311, 0.0000],
                 [0.5000, 0.5000, 0.0000]]])
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type_name(scores)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating tensor, got dtype {scores.dtype}")
    if scores.dim() < 1:
        raise ValueError("scores must have at least one dim (..., S)")
    if mask is not None:
        if scores.dim() < 2:
            raise ValueError(f"a mask needs scores of shape (..., L, S), got {tuple(scores.shape)}")
        check_mask(mask, scores.shape, scores.dtype)
    if valid_lens is not None:
        if not isinstance(valid_lens, torch.Tensor):
            raise TypeError(f"valid_lens must be a torch.Tensor, got {type_name(valid_lens)}")
        if scores.dim() < 3:
            raise ValueError(
                f"valid_lens needs scores of shape (B, ..., L, S), got {tuple(scores.shape)}"
            )
        mask = merge_masks(mask, lengths_to_mask(valid_lens.to(scores.device), scores.shape))
    return safe_softmax(scores, mask)


def key_padding_keep(mask: torch.Tensor | None, v: torch.Tensor) -> torch.Tensor | None:
    """``(..., S, 1)``: the keys that some query may attend to, for a boolean ``mask``; else None.

    A key that no query may attend to — a padding key, whether the mask is a ``(B, 1, 1, S)``
    padding mask or a ``(B, L, S)`` / ``(L, S)`` attention mask whose column is all False — can
    have its key and value zeroed before the products, so that NaN or inf stored there reaches
    neither the output nor the gradients (``0 * NaN`` would).
    """
    if mask is None or mask.dtype != torch.bool:
        return None
    if mask.shape[-2] != 1:
        mask = mask.any(dim=-2, keepdim=True)  # (..., 1, S): visible to at least one query
    keep = mask.transpose(-2, -1)  # (..., S, 1)
    if keep.dim() >= 3 and keep.shape[-3] not in (1, v.shape[-3]):
        return None  # per-query-head mask over grouped kv heads
    return keep
