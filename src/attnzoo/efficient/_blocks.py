"""Block engine shared by the pattern mechanisms (local, strided, longformer, bigbird ...).

Every pattern mechanism is *defined* by a mask function of :mod:`attnzoo.masks`; its reference
path is dense :func:`~attnzoo.functional.attention_reference` with the materialised pattern. The
fast path here computes the same attention from blocks, never building an ``L x S`` tensor:

- :func:`band_plan` + :func:`band_attention`: queries in blocks of ``block``; every block attends
  a window of keys ``[start - before, start + block + after)`` taken as an ``unfold`` view (no
  copy), optionally followed by ``extra`` keys gathered per block (global tokens, BigBird's
  random blocks, Sparse Transformer summaries). With ``dilation=d`` the sequence is first split
  into its ``d`` residue classes (``i mod d``), so a dilated window is a plain window inside its
  class. Which keys a query keeps is decided by evaluating the mask function on the gathered
  positions, so the result equals dense attention whenever every allowed key lies in the
  window or the extras (each key counted once: an extra inside the window is dropped).
- :func:`with_dense_rows`: the few query rows that see everything (global tokens), computed densely.
- :func:`merge_lse`: exact union of two disjoint key sets from their outputs and log-sum-exps.

Scores are computed per (batch, head) in chunks of blocks (``baddbmm`` with a 0 / ``-inf`` bias,
softmax, ``bmm``): few large operations, memory ``O(L (window + extras))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnzoo.functional.attention import attention
from attnzoo.functional.dropout import dropout
from attnzoo.functional.mask_ops import MaskMod

__all__ = [
    "BandPlan",
    "KeepFn",
    "band_attention",
    "band_plan",
    "merge_lse",
    "pattern_keep",
    "with_dense_rows",
]

KeepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHUNK_ELEMENTS = 1 << 20  # scores per chunk (4 MB in float32): cache-sized, few operations


def pattern_keep(mask_mod: MaskMod, q_len: int, kv_len: int, is_causal: bool) -> KeepFn:
    """``keep(q_pos, kv_pos)``: pattern, bottom-right causality and ``0 <= pos < len`` validity.

    Positions may be out of range (block padding); the mask function only sees clamped ones.
    """

    def keep(q_pos: torch.Tensor, kv_pos: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=torch.long, device=q_pos.device)
        q_in = (q_pos >= 0) & (q_pos < q_len)
        kv_in = (kv_pos >= 0) & (kv_pos < kv_len)
        q_c, kv_c = q_pos.clamp(0, max(q_len - 1, 0)), kv_pos.clamp(0, max(kv_len - 1, 0))
        out = mask_mod(zero, zero, q_c, kv_c) & q_in & kv_in
        return out & (kv_pos <= q_pos + (kv_len - q_len)) if is_causal else out

    return keep


@dataclass
class BandPlan:
    """Geometry and key selection of one banded call (reused while the lengths do not change).

    ``keep`` is ``(d, nb, block, kb + E)``: window keys then extra keys; ``kv_pos`` holds their
    positions ``(d, nb, kb + E)`` (``-1`` = none); ``bias`` the matching 0 / ``-inf`` scores
    bias.
    """

    block: int
    before: int
    after: int
    dilation: int
    blocks: int  # nb: query blocks per residue class
    window: int  # kb = before + block + after
    chunk: int  # blocks per chunk
    keep: torch.Tensor
    kv_pos: torch.Tensor
    extra: torch.Tensor | None  # (d, nb, E) positions of the extra keys, or None
    bias: torch.Tensor
    dead: torch.Tensor | None  # (d, nb, block, 1) rows with nothing to attend, or None


def _pieces(t: torch.Tensor | None, nb: int, chunk: int) -> list | None:
    """``(d, nb, ...)`` as the chunks the loop visits, in order (``None`` stays ``None``).

    Residue classes are looped over and their blocks batched in chunks of ``chunk``, except
    when each class is a single block; then the classes are batched. ``unbind`` and ``split``
    (not indexing) keep the backward pass to one ``stack`` / ``cat`` per level.
    """
    if t is None:
        return None
    units = [t.squeeze(1)] if nb == 1 else t.unbind(0)
    return [piece for unit in units for piece in unit.split(chunk)]


def _attend_chunk(q, k, v, bias, pad_bias, dead, scale, dropout_p, return_lse):
    """Softmax attention of a chunk of blocks: ``q (c, b, hd)`` over ``k, v (c, kb, hd)``."""
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)  # (c, b, kb)
    if pad_bias is not None:
        scores += pad_bias
    if dead is not None:  # rows that keep nothing: finite scores, then exact zeros
        scores = scores.masked_fill(dead, 0.0)
    lse = None
    if return_lse:
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # (c, b, 1)
        attn = torch.exp(scores - lse)
    else:
        attn = torch.softmax(scores, dim=-1)
    if dead is not None:
        attn = attn.masked_fill(dead, 0.0)
        lse = None if lse is None else lse.masked_fill(dead, float("-inf"))
    if dropout_p > 0:
        attn = dropout(attn, p=dropout_p)
    return torch.bmm(attn, v), lse


def band_plan(
    keep_fn: KeepFn,
    q_len: int,
    kv_len: int,
    *,
    block: int,
    before: int,
    after: int,
    dtype: torch.dtype,
    device: torch.device,
    dilation: int = 1,
    extra: torch.Tensor | None = None,
) -> BandPlan:
    """Evaluate the pattern on the blocks of a banded call.

    Args:
        keep_fn: Pattern on original positions (see :func:`pattern_keep`).
        q_len: Query length ``L``.
        kv_len: Key length ``S``.
        block: Queries per block (in residue-class steps when dilated).
        before: Window keys before the block start (residue-class steps).
        after: Window keys after the block end (residue-class steps).
        dtype: Dtype of the bias (the compute dtype).
        device: Device of the plan.
        dilation: Number ``d`` of residue classes (``1``: plain contiguous blocks).
        extra: Positions of extra keys, shared ``(E,)`` or per block ``(d, nb, E)``; ``-1`` = none.
    """
    d = dilation
    per_class = -(-q_len // d)  # queries per residue class (the last classes may be short)
    nb = max(-(-per_class // block), 1)
    kb = before + block + after
    r = torch.arange(d, device=device).view(d, 1, 1)  # (d, 1, 1)
    m = torch.arange(nb, device=device).view(1, nb, 1)  # (1, nb, 1)
    q_pos = (m * block + torch.arange(block, device=device)) * d + r  # (d, nb, b)
    kv_pos = (m * block - before + torch.arange(kb, device=device)) * d + r  # (d, nb, kb)
    kv_pos = kv_pos.masked_fill((kv_pos < 0) | (kv_pos >= kv_len), -1)
    keep = keep_fn(q_pos.unsqueeze(-1), kv_pos.unsqueeze(-2))  # (d, nb, b, kb)
    if extra is not None:
        extra = extra.to(device)
        if extra.dim() == 1:
            extra = extra.view(1, 1, -1).expand(d, nb, extra.numel())  # (d, nb, E)
        start = (m * block - before) * d + r  # (d, nb, 1) first window position
        offset = extra - start
        in_window = (offset % d == 0) & (offset >= 0) & (offset < kb * d)
        extra = extra.masked_fill(in_window | (extra < 0) | (extra >= kv_len), -1)
        extra_keep = keep_fn(q_pos.unsqueeze(-1), extra.unsqueeze(-2))  # (d, nb, b, E)
        keep = torch.cat([keep, extra_keep], dim=-1)  # (d, nb, b, kb + E)
        kv_pos = torch.cat([kv_pos, extra], dim=-1)  # (d, nb, kb + E)
    bias = torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill_(~keep, float("-inf"))
    dead = ~keep.any(-1, keepdim=True)  # (d, nb, b, 1)
    chunk = max(CHUNK_ELEMENTS // (block * keep.shape[-1]), 1)
    return BandPlan(
        block,
        before,
        after,
        d,
        nb,
        kb,
        chunk,
        keep,
        kv_pos,
        extra,
        bias,
        dead if bool(dead.any()) else None,
    )


def band_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BandPlan,
    *,
    key_padding: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention restricted to the plan's windows and extras, exact on that key set.

    Args:
        q: Queries ``(B, nh, L, hd)``.
        k: Keys ``(B, nh, S, hd)``.
        v: Values ``(B, nh, S, hd_v)``.
        plan: From :func:`band_plan` for these lengths.
        key_padding: ``(B, S)`` bool, ``True`` = real key.
        scale: Score scale, default ``1 / sqrt(hd)``.
        dropout_p: Dropout on the weights.
        return_lse: Also return the log-sum-exp of the kept scores ``(B, nh, L)`` (``-inf``
            where nothing is kept), for :func:`merge_lse`.

    Returns:
        ``out (B, nh, L, hd_v)`` (rows with no key are exact zeros), and ``lse`` if asked.
    """
    batch, heads, q_len, hd = q.shape
    d, b, nb, kb = plan.dilation, plan.block, plan.blocks, plan.window
    scale = hd**-0.5 if scale is None else scale
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v = q.to(compute), k.to(compute), v.to(compute)
    if d * nb * b != q_len:
        q = F.pad(q, (0, 0, 0, d * nb * b - q_len))
    qv = q.view(batch, heads, nb, b, d, hd).permute(0, 1, 4, 2, 3, 5)  # (B, nh, d, nb, b, hd)
    padded = plan.before + nb * b + plan.after  # key steps per residue class

    def windows(t: torch.Tensor) -> torch.Tensor:
        front = plan.before * d
        t = F.pad(t, (0, 0, front, padded * d - front - t.shape[2]))
        t = t.view(batch, heads, padded, d, t.shape[-1])  # (B, nh, P, d, hd)
        return t.unfold(2, kb, b).permute(0, 1, 3, 2, 5, 4)  # (B, nh, d, nb, kb, hd)

    kw, vw = windows(k), windows(v)
    bias, chunk = plan.bias.to(compute), plan.chunk
    extra = plan.extra
    outs, lses = [], []
    for bi, (q_b, k_b, v_b, kf_b, vf_b) in enumerate(zip(qv, kw, vw, k, v, strict=True)):
        dead, pad_bias = plan.dead, None
        if key_padding is not None:
            real = key_padding[bi][plan.kv_pos.clamp(min=0)] & (plan.kv_pos >= 0)  # (d, nb, kbE)
            pad_bias = torch.zeros(real.shape, dtype=compute, device=q.device)
            pad_bias = pad_bias.masked_fill_(~real, float("-inf")).unsqueeze(-2)  # (d, nb, 1, kbE)
            dead = ~(plan.keep & real.unsqueeze(-2)).any(-1, keepdim=True)  # (d, nb, b, 1)
            dead = dead if bool(dead.any()) else None
        biases, pads, deads = (_pieces(t, nb, chunk) for t in (bias, pad_bias, dead))
        for q_h, k_h, v_h, kf_h, vf_h in zip(q_b, k_b, v_b, kf_b, vf_b, strict=True):
            ks, vs = _pieces(k_h, nb, chunk), _pieces(v_h, nb, chunk)
            if extra is not None:  # gathered once per head: (d, nb, E, hd)
                index = extra.clamp(min=0)
                ks = [
                    torch.cat(p, 1) for p in zip(ks, _pieces(kf_h[index], nb, chunk), strict=True)
                ]
                vs = [
                    torch.cat(p, 1) for p in zip(vs, _pieces(vf_h[index], nb, chunk), strict=True)
                ]
            for i, (q_c, k_c, v_c) in enumerate(zip(_pieces(q_h, nb, chunk), ks, vs, strict=True)):
                out, lse = _attend_chunk(
                    q_c,
                    k_c,
                    v_c,
                    biases[i],
                    None if pads is None else pads[i],
                    None if deads is None else deads[i],
                    scale,
                    dropout_p,
                    return_lse,
                )
                outs.append(out)
                lses.append(lse)
    hd_v = v.shape[-1]
    unit = (d, nb) if nb > 1 else (nb, d)  # order in which the units were produced
    out = torch.cat(outs).view(batch, heads, *unit, b, hd_v)  # (B, nh, d|1, nb|d, b, hd_v)
    if nb == 1:
        out = out.transpose(2, 3)  # (B, nh, d, 1, b, hd_v)
    out = out.permute(0, 1, 3, 4, 2, 5).reshape(batch, heads, nb * b * d, hd_v)  # (B, nh, L', hd)
    out = out[:, :, :q_len]
    if not return_lse:
        return out
    lse = torch.cat(lses).view(batch, heads, *unit, b)  # (B, nh, d|1, nb|d, b)
    if nb == 1:
        lse = lse.transpose(2, 3)  # (B, nh, d, 1, b)
    lse = lse.permute(0, 1, 3, 4, 2).reshape(batch, heads, nb * b * d)  # (B, nh, L')
    return out, lse[:, :, :q_len]


def with_dense_rows(
    out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rows: torch.Tensor,
    keep_fn: KeepFn,
    *,
    key_padding: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``out`` ``(B, nh, L, hd_v)`` with the query ``rows`` ``(G,)`` replaced by dense attention.

    Global queries attend every key their pattern allows; the band engine cannot cover such
    rows, so they are computed densely (``G`` rows, ``O(G S)``) and written over the band result.
    """
    if rows.numel() == 0:
        return out
    kv_pos = torch.arange(k.shape[2], device=q.device)
    keep = keep_fn(rows.unsqueeze(-1), kv_pos)  # (G, S)
    mask = keep if key_padding is None else keep & key_padding[:, None, None, :]  # (B, 1, G, S)
    full = attention(q.index_select(2, rows), k, v, mask=mask, dropout_p=dropout_p)
    return out.index_copy(2, rows, full.to(out.dtype))  # the band may run in float32


def merge_lse(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> torch.Tensor:
    """Attention over the union of two disjoint key sets from the two partial results."""
    top = torch.maximum(lse_a, lse_b)
    top = top.masked_fill(top == float("-inf"), 0.0)
    wa, wb = torch.exp(lse_a - top), torch.exp(lse_b - top)
    total = wa + wb
    total = total.masked_fill(total == 0, 1.0)
    return (out_a * (wa / total).unsqueeze(-1)) + (out_b * (wb / total).unsqueeze(-1))
