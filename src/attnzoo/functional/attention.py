"""Scaled dot-product attention: ``attention`` (dispatching) and ``attention_reference`` (oracle).

``attention_reference`` is plain maths (scores, masked softmax, weighted sum) and is the oracle
every test in attnzoo compares against. ``attention`` has the same signature and uses
``torch.nn.functional.scaled_dot_product_attention`` whenever the weights are not requested.

Paper: Vaswani et al., "Attention Is All You Need", 2017, https://arxiv.org/abs/1706.03762
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo._checks import check_choice, check_finite, check_probability, type_name
from attnzoo.functional.normalizers import get_normalizer
from attnzoo.functional.pooling import pool
from attnzoo.functional.softmax import (
    ALIGNMENTS,
    causal_mask,
    check_mask,
    key_padding_keep,
    merge_masks,
)

__all__ = ["BACKENDS", "attention", "attention_reference", "validate_qkv"]

BACKENDS = ("auto", "sdpa", "reference", "flex", "block_sparse")  # attention(backend=...)


def validate_qkv(q: object, k: object, v: object) -> int:
    """Check ``q, k, v`` of shape ``(..., nh, L|S, hd)`` and return the GQA group size.

    Keys and values may have fewer heads than queries (grouped-query / multi-query attention)
    when the query heads are a multiple of them; ``d_v`` may differ from ``d_qk``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type_name(t)}")
    if not q.is_floating_point():
        raise TypeError(f"q must be a floating tensor, got dtype {q.dtype}; convert with q.float()")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(
                f"{name} must have the dtype of q: q, k and v must have the same dtype, got "
                f"q {q.dtype}, k {k.dtype}, v {v.dtype}; convert with {name}.to(q.dtype)"
            )
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(
                f"{name} must be on the device of q: q, k and v must be on the same device, "
                f"got q {q.device}, k {k.device}, v {v.device}"
            )
    if q.dim() < 2:
        raise ValueError(f"q must be at least 2-D (..., L, hd), got shape {tuple(q.shape)}")
    for name, t in (("k", k), ("v", v)):
        if t.dim() != q.dim():
            raise ValueError(
                f"{name} must have the rank of q ({q.dim()}-D, (..., S, hd)); got q "
                f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
            )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same head dim, got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            "k and v must agree in every dim but the last (..., S, hd); got "
            f"k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if q.dim() < 3:
        return 1
    if q.shape[:-3] != k.shape[:-3]:
        raise ValueError(
            f"q and k must have the same batch dims, got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    q_heads, kv_heads = q.shape[-3], k.shape[-3]
    if q_heads == kv_heads:
        return 1
    if kv_heads == 0 or q_heads % kv_heads:
        raise ValueError(
            f"the number of query heads ({q_heads}) must equal or be a multiple of the number "
            f"of key/value heads ({kv_heads}); shapes q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    return q_heads // kv_heads


def _prepare(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment):
    """Shared validation; returns (gqa groups, scale, mask with causality merged in)."""
    groups = validate_qkv(q, k, v)
    check_probability("dropout_p", dropout_p)
    check_choice("causal_alignment", causal_alignment, ALIGNMENTS)
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool, got {type_name(is_causal)}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else check_finite("scale", scale)
    scores_shape = (*q.shape[:-1], k.shape[-2])
    if mask is not None:
        check_mask(mask, scores_shape, q.dtype)
    if is_causal:
        tri = causal_mask(q.shape[-2], k.shape[-2], alignment=causal_alignment, device=q.device)
        mask = merge_masks(mask, tri)
    return groups, scale, mask


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    causal_alignment: str = "bottom_right",
    normalizer: str = "softmax",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain-maths scaled dot-product attention: the oracle for every test in attnzoo.

    ``out = dropout(softmax(q k^T * scale + mask)) v``, with the scale applied to ``q`` before the
    product (no float16 overflow), softmax in float32 for half inputs, and exact zeros for query
    rows that may attend to nothing.

    Args:
        q: Queries ``(B, nh, L, hd)`` (any ``(..., L, hd)``).
        k: Keys ``(B, nkv, S, hd)``; ``nh`` must be a multiple of ``nkv`` (GQA/MQA).
        v: Values ``(B, nkv, S, hd_v)``.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to
            ``(B, nh, L, S)``.
        is_causal: Forbid keys after the query; combined with ``mask`` by intersection.
        scale: Score scale, default ``1 / sqrt(hd)``; any finite value (0 gives the mean).
        dropout_p: Dropout on the weights, applied whenever ``> 0`` (pass 0 in eval).
        need_weights: Also return the ``(B, nh, L, S)`` weights (before dropout).
        causal_alignment: ``"bottom_right"`` (query ``i`` sees ``j <= i + S - L``) or
            ``"top_left"`` (``j <= i``).
        normalizer: ``"softmax"``, or the sparse ``"sparsemax"`` / ``"entmax15"``
            (:mod:`attnzoo.functional.normalizers`).

    Returns:
        ``out`` of shape ``(B, nh, L, hd_v)``, or ``(out, weights)`` when ``need_weights``.

    Shape:
        - q: ``(B, nh, L, hd)``; k: ``(B, nkv, S, hd)``; v: ``(B, nkv, S, hd_v)``
        - out: ``(B, nh, L, hd_v)``; weights: ``(B, nh, L, S)``

    Example:
        >>> q = k = v = torch.eye(2).view(1, 1, 2, 2)
        >>> attention_reference(q, k, v, scale=0.0)
        tensor([[[[0.5000, 0.5000],
                  [0.5000, 0.5000]]]])
    """
    if not isinstance(need_weights, bool):
        raise TypeError(f"need_weights must be a bool, got {type_name(need_weights)}")
    normalize = get_normalizer(normalizer)
    groups, scale, merged = _prepare(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment)
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    if groups > 1:
        k = k.repeat_interleave(groups, dim=-3)  # (B, nh, S, hd)
        v = v.repeat_interleave(groups, dim=-3)  # (B, nh, S, hd_v)
    keep = key_padding_keep(mask, v)  # keys no query sees: zeroed, whatever they hold
    if keep is not None:
        k, v = k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)
    scores = (q.to(compute) * scale) @ k.to(compute).transpose(-2, -1)  # (B, nh, L, S)
    out, attn = pool(scores, v.to(compute), merged, dropout_p, padding=mask, normalize=normalize)
    out = out.to(q.dtype)  # (B, nh, L, hd_v)
    return (out, attn.to(q.dtype)) if need_weights else out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    causal_alignment: str = "bottom_right",
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention that picks the fastest exact path.

    Same arguments and results as :func:`attention_reference`. Without ``need_weights`` it calls
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels; no ``L x S`` tensor
    when there is no mask and causality is square or top-left); with ``need_weights`` it runs
    the reference. Both paths agree to floating-point round-off, including fully masked rows
    (exact zeros) and NaN-free gradients.

    Args:
        q: Queries ``(B, nh, L, hd)``.
        k: Keys ``(B, nkv, S, hd)``.
        v: Values ``(B, nkv, S, hd_v)``.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to
            ``(B, nh, L, S)``.
        is_causal: Causal masking, bottom-right aligned unless ``causal_alignment="top_left"``.
        scale: Default ``1 / sqrt(hd)``.
        dropout_p: Dropout on the weights whenever ``> 0``.
        need_weights: Return ``(out, weights)``.
        causal_alignment: ``"bottom_right"`` or ``"top_left"``.
        backend: ``"auto"`` (SDPA, or the reference when weights are requested), ``"sdpa"``,
            ``"reference"`` (:func:`attention_reference`) or ``"flex"``
            (``torch.nn.attention.flex_attention`` with a block mask built from ``mask`` and
            causality; eager unless the caller compiles; no dropout) or ``"block_sparse"``
            (:func:`~attnzoo.functional.block_sparse_attention` on the blocks of the boolean
            ``mask`` and causality: only non-empty blocks are computed). A backend that cannot
            do what the call asks (weights from SDPA, Flex or the block engine, dropout in
            Flex, an additive float mask in the block engine) raises ``ValueError`` — there is
            no silent fallback.

    Returns:
        ``out`` ``(B, nh, L, hd_v)``, or ``(out, weights)``.

    Shape:
        - q: ``(B, nh, L, hd)``; k, v: ``(B, nkv, S, hd)``; out: ``(B, nh, L, hd_v)``

    Example:
        >>> q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)
        >>> attention(q, k, v, is_causal=True).shape
        torch.Size([2, 4, 5, 8])
    """
    for flag, value in (("is_causal", is_causal), ("need_weights", need_weights)):
        if not isinstance(value, bool):  # here: the SDPA path hands _prepare is_causal=False
            raise TypeError(f"{flag} must be a bool, got {type_name(value)}")
    backend = check_choice("backend", backend, BACKENDS)
    if need_weights and backend in ("sdpa", "flex", "block_sparse"):
        raise ValueError(
            f"backend={backend!r} cannot return the weights (it never forms them); use "
            "backend='reference' or 'auto' with need_weights=True"
        )
    if backend == "block_sparse":
        return _block_sparse(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment)
    if backend == "flex":
        return _flex_attention(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment)
    if need_weights or backend == "reference":
        out = attention_reference(
            q,
            k,
            v,
            mask=mask,
            is_causal=is_causal,
            scale=scale,
            dropout_p=dropout_p,
            need_weights=need_weights,
            causal_alignment=causal_alignment,
        )
        return out
    groups, scale, merged = _prepare(q, k, v, mask, False, scale, dropout_p, causal_alignment)
    q_len, kv_len = q.shape[-2], k.shape[-2]
    # SDPA's own is_causal is top-left aligned and takes no mask; it equals ours when L == S.
    sdpa_causal = is_causal and mask is None and (q_len == kv_len or causal_alignment == "top_left")
    one_query_sees_all = q_len == 1 and causal_alignment == "bottom_right" and mask is None
    if is_causal and not sdpa_causal and not one_query_sees_all:
        tri = causal_mask(q_len, kv_len, alignment=causal_alignment, device=q.device)  # (L, S)
        merged = merge_masks(merged, tri)
    keep = key_padding_keep(mask, v)  # from the user's mask: causality hides the padding
    if keep is not None:
        # SDPA adds the mask to the scores (NaN + -inf = NaN), so padded keys and values are
        # zeroed first: NaN or inf stored in padding cannot reach the output.
        k = k.masked_fill(~keep, 0.0)
        v = v.masked_fill(~keep, 0.0)
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=merged,
        dropout_p=dropout_p,
        is_causal=sdpa_causal,
        scale=scale,
        enable_gqa=groups > 1,
    )


def _flex_attention(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment):
    """``backend="flex"``: FlexAttention with a block mask of ``mask`` and causality merged."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if dropout_p > 0:
        raise ValueError(f"backend='flex' has no dropout, got dropout_p={dropout_p}")
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad and q.device.type == "cpu":
        raise ValueError(
            "backend='flex' has no backward on CPU (PyTorch's FlexAttention); use "
            "backend='auto' to train, or run under torch.no_grad()"
        )
    if not needs_grad:  # FlexAttention refuses inputs that merely carry requires_grad on CPU
        q, k, v = q.detach(), k.detach(), v.detach()
    groups, scale, merged = _prepare(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment)
    keep = key_padding_keep(mask, v)
    if keep is not None:  # as on the SDPA path: whatever padded keys hold cannot leak
        k, v = k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)
    q_len, kv_len = q.shape[-2], k.shape[-2]
    block_mask = score_mod = None
    if merged is not None:
        table = merged
        while table.dim() < 4:
            table = table[None]  # (B | 1, nh | 1, L | 1, S | 1)
        if table.dim() > 4:
            raise ValueError(f"backend='flex' takes masks of at most 4 dims, got {merged.dim()}")
        sizes = table.shape

        def at(b, h, q_idx, kv_idx):  # the mask entry of one (b, h, i, j), broadcast dims at 0
            index = (b, h, q_idx, kv_idx)
            return table[tuple(i if n > 1 else 0 for i, n in zip(index, sizes, strict=True))]

        if table.dtype == torch.bool:
            batch = sizes[0] if sizes[0] > 1 else None
            heads = sizes[1] if sizes[1] > 1 else None
            block_mask = create_block_mask(at, batch, heads, q_len, kv_len, device=q.device)
        else:  # an additive float mask: a score modification

            def score_mod(score, b, h, q_idx, kv_idx):
                return score + at(b, h, q_idx, kv_idx)

    return flex_attention(
        q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=groups > 1
    )


def _block_sparse(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment):
    """``backend="block_sparse"``: the block engine on the blocks of ``mask`` and causality."""
    from attnzoo.functional.block_mask import BlockMask
    from attnzoo.functional.block_sparse import block_sparse_attention

    if mask is not None and mask.dtype != torch.bool:
        raise ValueError(
            f"backend='block_sparse' takes a bool mask (True = may attend), got dtype "
            f"{mask.dtype}; an additive float mask needs backend='sdpa' or 'reference'"
        )
    if q.dim() != 4:
        raise ValueError(
            f"backend='block_sparse' takes 4-D q, k, v (B, nh, L, hd), got q {tuple(q.shape)}"
        )
    _, scale, merged = _prepare(q, k, v, mask, is_causal, scale, dropout_p, causal_alignment)
    keep = key_padding_keep(mask, v)
    if keep is not None:  # as on the SDPA path: whatever padded keys hold cannot leak
        k, v = k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)
    if merged is None:
        merged = torch.ones(1, 1, dtype=torch.bool, device=q.device)
    full = merged.expand(*merged.shape[:-2], q.shape[-2], k.shape[-2])  # (.., L, S), a view
    block_mask = BlockMask.from_mask(full)
    return block_sparse_attention(
        q, k, v, block_mask, scale=scale, dropout_p=dropout_p, backend="engine"
    )
