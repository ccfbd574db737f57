"""Memory-efficient exact attention (Rabe & Staats 2021): query/key chunks, online softmax."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from attnzoo._checks import check_positive_int, type_name
from attnzoo.functional.attention import attention_reference
from attnzoo.functional.dropout import dropout
from attnzoo.functional.softmax import key_padding_keep
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["MemoryEfficientAttention", "chunked_attention"]


def _mask_chunk(mask: torch.Tensor, q0: int, q1: int, k0: int, k1: int) -> torch.Tensor:
    rows = slice(q0, q1) if mask.shape[-2] != 1 else slice(None)
    return mask[..., rows, k0:k1]


def _query_chunk(q, k_chunks, v_chunks, mask, q0, offset, dropout_p):
    """Online softmax of one query chunk ``q (B, nh, lq, hd)`` (pre-scaled) over all keys.

    Keys and values come in chunks from ``split`` (its backward is one ``cat``; slicing in a loop
    would fill a full-size zero gradient per chunk).
    """
    batch, heads, lq, _ = q.shape
    top = q.new_full((batch, heads, lq, 1), float("-inf"))  # running max (a stabiliser only)
    total = q.new_zeros(batch, heads, lq, 1)  # running sum of exp
    acc = q.new_zeros(batch, heads, lq, v_chunks[0].shape[-1])  # running weighted sum of values
    q_pos = torch.arange(q0, q0 + lq, device=q.device).unsqueeze(-1)  # (lq, 1)
    k1 = 0
    for k_c, v_c in zip(k_chunks, v_chunks, strict=True):
        k0, k1 = k1, k1 + k_c.shape[2]
        if offset is not None and k0 > q0 + lq - 1 + offset:
            break  # this key chunk and all later ones are in every query's future
        scores = q @ k_c.transpose(-2, -1)  # (B, nh, lq, lk)
        # In-place from here on: none of these backward formulas needs an overwritten tensor.
        if mask is not None:
            part = _mask_chunk(mask, q0, q0 + lq, k0, k1)
            if part.dtype == torch.bool:
                scores.masked_fill_(~part, float("-inf"))
            else:
                scores += part
        if offset is not None and k1 - 1 > q0 + offset:
            future = torch.arange(k0, k1, device=q.device) > q_pos + offset  # (lq, lk)
            scores.masked_fill_(future, float("-inf"))
        with torch.no_grad():  # the running max is a stabiliser: the result does not depend on it
            new_top = torch.maximum(top, scores.amax(-1, keepdim=True))
            safe = new_top.masked_fill(new_top == float("-inf"), 0.0)
            rescale = torch.exp(top - safe)
        weights = scores.sub_(safe).exp_()  # masked keys: exp(-inf) = 0
        total = total * rescale + weights.sum(-1, keepdim=True)
        if dropout_p > 0:
            weights = dropout(weights, p=dropout_p)
        acc = acc * rescale + weights @ v_c
        top = new_top
    dead = total == 0  # nothing to attend: exact zeros
    return torch.where(dead, 0.0, acc / total.masked_fill(dead, 1.0))


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    query_chunk_size: int = 1024,
    key_chunk_size: int = 4096,
    dropout_p: float = 0.0,
    checkpoint: bool = True,
) -> torch.Tensor:
    """Exact scaled dot-product attention in chunks, never holding more than one score chunk.

    Args:
        q: Queries ``(B, nh, L, hd)``.
        k: Keys ``(B, nh, S, hd)``.
        v: Values ``(B, nh, S, hd_v)``.
        mask: Validated bool or additive float mask broadcastable to ``(B, nh, L, S)``.
        is_causal: Bottom-right causality (query ``i`` sees ``j <= i + S - L``).
        query_chunk_size: Queries per chunk.
        key_chunk_size: Keys per chunk.
        dropout_p: Dropout on the weights.
        checkpoint: Recompute each query chunk in the backward pass instead of storing it.

    Returns:
        ``(B, nh, L, hd_v)``; rows with no visible key are exact zeros.
    """
    compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v = q.to(compute) * q.shape[-1] ** -0.5, k.to(compute), v.to(compute)
    keep = key_padding_keep(mask, v)
    if keep is not None:
        v = v.masked_fill(~keep, 0.0)  # NaN or inf stored at padded keys cannot leak
    q_len, kv_len = q.shape[2], k.shape[2]
    offset = kv_len - q_len if is_causal else None
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if q_len == 0 or kv_len == 0:  # nothing to attend: zeros
        return q.new_zeros(*q.shape[:-1], v.shape[-1])
    k_chunks, v_chunks = k.split(key_chunk_size, dim=2), v.split(key_chunk_size, dim=2)
    outs = []
    for i, q_c in enumerate(q.split(query_chunk_size, dim=2)):
        args = (q_c, k_chunks, v_chunks, mask, i * query_chunk_size, offset, dropout_p)
        if checkpoint and grads:
            outs.append(grad_checkpoint(_query_chunk, *args, use_reentrant=False))
        else:
            outs.append(_query_chunk(*args))
    return torch.cat(outs, dim=2)


@EFFICIENT.register(
    "memory_efficient",
    paper=Paper(
        title="Self-attention Does Not Need O(n^2) Memory",
        authors="Rabe, Staats",
        year=2021,
        url="https://arxiv.org/abs/2112.05682",
    ),
    tags=("exact", "dense", "chunked", "self", "cross"),
    complexity="O(L S d) time; O(L d + chunk^2) memory",
)
class MemoryEfficientAttention(AttentionBase):
    r"""Exact multi-head attention computed in query and key chunks with an online softmax.

    Rabe, Staats, "Self-attention Does Not Need O(n^2) Memory", 2021,
    https://arxiv.org/abs/2112.05682. Queries are split into chunks of ``query_chunk_size``;
    for each, the keys are visited in chunks of ``key_chunk_size`` while a running maximum
    ``m``, a running sum ``z = sum exp(s - m)`` and a running weighted sum ``a = sum exp(s - m)
    v`` are rescaled by ``exp(m_old - m_new)`` at every step; the output is ``a / z``. This is
    dense attention, not an approximation: it equals ``mha`` with the same weights to
    round-off (1e-12 in float64) for any chunk sizes, dividing ``L`` or not.

    Time ``O(L S d)``; memory ``O(L d)`` plus one ``(B, nh, query_chunk, key_chunk)`` score
    chunk, instead of ``O(L S)``. With ``checkpoint`` (the paper's use of ``jax.checkpoint``)
    the backward pass recomputes each query chunk instead of storing its scores.

    Can: any mask of the module layouts (padding ``(B, S)``, ``(B, L, S)``, ``(B, nh, L, S)``,
    bool or additive float; a mask is itself ``L x S``, only the scores are chunked), causality
    (bottom-right; key chunks entirely in the future are skipped), cross-attention, dropout.
    Rows with nothing to attend are exact zeros. Weight recording takes the dense reference.

    Defaults and deviations: ``query_chunk_size=1024`` and ``key_chunk_size=4096`` are the
    chunk sizes of the paper's reference code. On CPU, PyTorch's SDPA (``mha``) is usually
    faster; this layer is the portable, inspectable version of the same computation.

    Formula:
        $$
        \begin{aligned}
        m &\leftarrow \max(m_{\mathrm{old}}, \max_j s_j), \qquad s_j = q\, k_j^\top / \sqrt{d_h} \\
        z &\leftarrow z\, e^{m_{\mathrm{old}} - m} + \textstyle\sum_j e^{s_j - m}, \qquad
        a \leftarrow a\, e^{m_{\mathrm{old}} - m} + \textstyle\sum_j e^{s_j - m} v_j
        \end{aligned}
        $$

        over the key chunks, then $\mathrm{out} = a / z$: exactly $\mathrm{softmax}(q K^\top /
        \sqrt{d_h})\, V$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        query_chunk_size: Queries per chunk, ``>= 1``.
        key_chunk_size: Keys per chunk, ``>= 1``.
        checkpoint: Recompute chunks in the backward pass (saves memory when training).

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; context: ``(B, S, C)``
        - mask: ``(B, S)``, ``(B, L, S)`` or ``(B, nh, L, S)``
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("memory_efficient", 64, num_heads=4, query_chunk_size=7)
        >>> attn(torch.randn(2, 50, 64), is_causal=True).shape
        torch.Size([2, 50, 64])
    """

    backend = "chunked exact attention with running log-sum-exp (Rabe & Staats)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        query_chunk_size: int = 1024,
        key_chunk_size: int = 4096,
        checkpoint: bool = True,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.query_chunk_size = check_positive_int("query_chunk_size", query_chunk_size)
        self.key_chunk_size = check_positive_int("key_chunk_size", key_chunk_size)
        if not isinstance(checkpoint, bool):
            raise TypeError(f"checkpoint must be a bool, got {type_name(checkpoint)}")
        self.checkpoint = checkpoint

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # the reference path, weights from the probe (or a clear refusal)
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        batch, _, q_len, _ = q.shape
        mask = self.check_mask(mask, batch, q_len, k.shape[2], q.dtype)
        if self.probe.recording:
            out, attn = attention_reference(
                q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.dropout_p, need_weights=True
            )
            self.probe(attn)
        else:
            out = chunked_attention(
                q,
                k,
                v,
                mask=mask,
                is_causal=is_causal,
                query_chunk_size=self.query_chunk_size,
                key_chunk_size=self.key_chunk_size,
                dropout_p=self.dropout_p,
                checkpoint=self.checkpoint,
            )
        return self.finish(out.to(q.dtype), unbatched)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, query_chunk_size={self.query_chunk_size}, "
            f"key_chunk_size={self.key_chunk_size}, checkpoint={self.checkpoint}"
        )
