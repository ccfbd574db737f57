"""The functional core of kernelised (linear) attention, shared by ``linear`` and ``performer``.

With a feature map ``phi`` that has non-negative outputs, attention becomes

``out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))``

and costs ``O(L m d)`` instead of ``O(L S d)`` (``m`` features). Appending a column of ones to
``v`` makes numerator and denominator one product. The causal form sums only keys ``j <= i``
(bottom-right aligned when ``L != S``); it runs in chunks of ``chunk_size`` tokens: inside a
chunk the masked ``(C, C)`` products, across chunks an exclusive prefix sum (``cumsum``) of the
per-chunk states ``phi(K_c)^T [V_c, 1]`` — a handful of large tensor ops, no Python loop over
tokens, no ``L x S`` tensor. The state after the last key is what a :class:`RecurrentState`
carries between calls, so token-by-token (RNN-mode) decoding equals one causal call.

Log-scaled keys: features whose values leave the float range (FAVOR+'s
``exp(w^T k - |k|^2 / 2)`` for large ``k``) are passed as ``f * exp(log_k)`` with ``f <= 1``.
Every sum is then kept relative to the largest log-scale it holds — over the real keys only
(padding never shifts it), and as a running maximum in the causal form (no later key can
change an earlier output) — and rescaled online when a larger one arrives, as the online
softmax of FlashAttention does with its row maxima.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo.functional.dropout import dropout

__all__ = [
    "kernel_attention",
    "kernel_weights",
    "largest_log_scale",
    "log_weight",
    "mask_keys",
    "normalise",
]


def mask_keys(
    phi_k: torch.Tensor, v: torch.Tensor, gone: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero padded keys and apply weight dropout, in any ``(..., token, head, ...)`` layout.

    Padded keys (``gone``, a bool tensor broadcastable to ``phi_k[..., :1]``) get zero features
    and zero values (``masked_fill``, so NaN stored there cannot leak). Dropout drops whole key
    columns of the implicit weight matrix (one Bernoulli mask per ``(b, head, key)``, shared by
    every query, rescaled by ``1 / (1 - p)``) in the numerator only (``v``; the normaliser's
    ``phi(k)`` keeps every key), so it is applied once and stays ``O(L)``.

    Returns:
        ``phi_k`` and ``v`` with the shapes they came in.
    """
    if gone is not None:
        phi_k = phi_k.masked_fill(gone, 0.0)
        v = v.masked_fill(gone, 0.0)
    if dropout_p > 0:
        v = v * dropout(v.new_ones(*v.shape[:-1], 1), p=dropout_p)
    return phi_k, v


def normalise(num_den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)`` from ``(..., dv + 1)``; rows that see no key give exact zeros."""
    return _divide(num_den[..., :-1], num_den[..., -1:], eps)


def _divide(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)``, exact zeros where ``den + eps`` is zero (no key seen)."""
    den = den + eps
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _state(phi_k: torch.Tensor, v_ext: torch.Tensor) -> torch.Tensor:
    return phi_k.transpose(-2, -1) @ v_ext  # (..., m, dv + 1)


# Log-scaled keys (Performer's softmax features): key j's true features are
# phi_k[j] * exp(log_k[j]), where exp(log_k) may lie far outside the float range. Every sum is
# kept relative to a reference, the largest log-scale it contains (``-inf`` before any real
# key): the factor exp(log_k - reference) is at most 1 and cancels in the normalisation. The
# references are detached (they cancel), so gradients are those of the exact expression.
def _finite(reference: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference))


def log_weight(log_scale: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``exp(log_scale - reference)``: 0 where ``log_scale`` is ``-inf`` (padded, no key)."""
    return (log_scale - _finite(reference)).exp()


def largest_log_scale(log_k: torch.Tensor, prefix_log_scale: torch.Tensor | None) -> torch.Tensor:
    """Detached largest log-scale over the keys (dim 2) and the prefix: ``(B, nh, 1, 1)``."""
    if log_k.shape[2] == 0:
        largest = log_k.new_full((*log_k.shape[:2], 1, 1), -math.inf)
    else:
        largest = log_k.detach().amax(2, keepdim=True)  # (B, nh, 1, 1)
    return largest if prefix_log_scale is None else torch.maximum(largest, prefix_log_scale)


def _merge_keys(
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    log_k: torch.Tensor | None,
    prefix: torch.Tensor | None,
    prefix_log_scale: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """State of every key plus ``prefix``: ``(state (B, nh, m, dv + 1), its log-scale)``."""
    if log_k is None:
        state = _state(phi_k, v_ext)
        return (state if prefix is None else state + prefix), None
    reference = largest_log_scale(log_k, prefix_log_scale)  # (B, nh, 1, 1)
    state = _state(phi_k, v_ext * log_weight(log_k, reference))
    if prefix is not None:
        state = state + prefix * log_weight(prefix_log_scale, reference)
    return state, reference


def _causal_square(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    prefix: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal core for ``n`` queries and ``n`` keys: query ``i`` sees ``prefix`` and ``j <= i``.

    Returns ``(num_den, state after the last key, prefix included)``.
    """
    batch, heads, n, m = phi_q.shape
    width = v_ext.shape[-1]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    if pad:
        phi_q, phi_k = F.pad(phi_q, (0, 0, 0, pad)), F.pad(phi_k, (0, 0, 0, pad))
        v_ext = F.pad(v_ext, (0, 0, 0, pad))
    blocks = (n + pad) // chunk
    qc = phi_q.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    kc = phi_k.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    vc = v_ext.reshape(batch, heads, blocks, chunk, width)  # (B, nh, nc, C, dv + 1)
    per_chunk = _state(kc, vc)  # (B, nh, nc, m, dv + 1)
    running = per_chunk.cumsum(dim=2)  # inclusive prefix over chunks
    if prefix is not None:
        running = running + prefix[:, :, None]
        first = prefix[:, :, None]
    else:
        first = torch.zeros_like(running[:, :, :1])
    before = torch.cat([first, running[:, :, :-1]], dim=2)  # exclusive prefix
    inner = (qc @ kc.transpose(-2, -1)).tril()  # (B, nh, nc, C, C)
    out = qc @ before + inner @ vc  # (B, nh, nc, C, dv + 1)
    out = out.reshape(batch, heads, blocks * chunk, width)[:, :, :n]  # (B, nh, n, dv + 1)
    return out, running[:, :, -1]


def _causal_square_scaled(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    log_k: torch.Tensor,
    prefix: torch.Tensor | None,
    prefix_log_scale: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_causal_square` for log-scaled keys, relative to running maxima (online rescaling).

    Query ``i`` works relative to ``c_i``, the largest log-scale among the keys it sees (a
    running maximum, so no later key can change it: causality holds to the last bit). Chunk
    ``t``'s state is kept relative to ``M_t``, the running maximum at its end; the exclusive
    prefix over chunks is the recurrence ``R_t = R_(t-1) exp(M_(t-1) - M_t) + P_t`` (one
    ``addcmul`` per chunk: the rescaling factors forbid a plain ``cumsum``).

    Returns ``(num_den, state after the last key, its log-scale (B, nh, 1, 1))``.
    """
    batch, heads, n, m = phi_q.shape
    width = v_ext.shape[-1]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    if pad:
        phi_q, phi_k = F.pad(phi_q, (0, 0, 0, pad)), F.pad(phi_k, (0, 0, 0, pad))
        v_ext = F.pad(v_ext, (0, 0, 0, pad))
        log_k = F.pad(log_k, (0, 0, 0, pad), value=-math.inf)
    blocks = (n + pad) // chunk
    none_yet = log_k.new_full((batch, heads, 1, 1), -math.inf)
    start = none_yet if prefix_log_scale is None else prefix_log_scale  # (B, nh, 1, 1)
    seen_max = torch.maximum(log_k.detach().cummax(dim=2).values, start)  # (B, nh, n', 1)
    qc = phi_q.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    kc = phi_k.reshape(batch, heads, blocks, chunk, m)  # (B, nh, nc, C, m)
    vc = v_ext.reshape(batch, heads, blocks, chunk, width)  # (B, nh, nc, C, dv + 1)
    lc = log_k.reshape(batch, heads, blocks, chunk, 1)  # (B, nh, nc, C, 1)
    query_ref = seen_max.reshape(batch, heads, blocks, chunk, 1)  # (B, nh, nc, C, 1): c_i
    chunk_end = query_ref[:, :, :, -1:]  # M_t: (B, nh, nc, 1, 1)
    chunk_start = torch.cat([start[:, :, None], chunk_end[:, :, :-1]], dim=2)  # M_(t-1)
    per_chunk = _state(kc, vc * log_weight(lc, chunk_end))  # P_t: (B, nh, nc, m, dv + 1)
    decay = log_weight(chunk_start, chunk_end)  # (B, nh, nc, 1, 1), <= 1
    running = prefix if prefix is not None else per_chunk.new_zeros(batch, heads, m, width)
    before = []
    for t in range(blocks):
        before.append(running)
        running = torch.addcmul(per_chunk[:, :, t], running, decay[:, :, t])
    exclusive = torch.stack(before, dim=2)  # (B, nh, nc, m, dv + 1), relative to M_(t-1)
    later = torch.ones(chunk, chunk, dtype=torch.bool, device=phi_q.device).triu(1)
    inner_log = (lc.transpose(-2, -1) - _finite(query_ref)).masked_fill(later, -math.inf)
    inner = (qc @ kc.transpose(-2, -1)) * inner_log.exp()  # (B, nh, nc, C, C)
    out = (qc @ exclusive) * log_weight(chunk_start, query_ref) + inner @ vc  # (B,nh,nc,C,dv+1)
    out = out.reshape(batch, heads, blocks * chunk, width)[:, :, :n]  # (B, nh, n, dv + 1)
    return out, running, chunk_end[:, :, -1]


def kernel_attention(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    *,
    is_causal: bool = False,
    eps: float = 0.0,
    prefix: torch.Tensor | None = None,
    chunk_size: int = 64,
    log_k: torch.Tensor | None = None,
    prefix_log_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Linear-time kernel attention from non-negative features.

    Args:
        phi_q: ``(B, nh, L, m)`` query features.
        phi_k: ``(B, nh, S, m)`` key features (padded keys already zero, see
            :func:`mask_keys`).
        v_ext: ``(B, nh, S, dv + 1)`` values with a last column of ones.
        is_causal: Query ``i`` sees keys ``j <= i + S - L`` (bottom-right aligned).
        eps: Added to the denominator (rows that see no key give zeros either way).
        prefix: ``(B, nh, m, dv + 1)`` state of earlier keys seen by every query (a
            :class:`RecurrentState`), or None.
        chunk_size: Chunk length of the causal prefix sums.
        log_k: ``(B, nh, S, 1)`` per-key log-scales (key ``j``'s features are
            ``phi_k[j] * exp(log_k[j])``; ``-inf`` for padded keys), or None.
        prefix_log_scale: ``(B, nh, 1, 1)`` log-scale of ``prefix`` (with ``log_k``).

    Returns:
        ``(out (B, nh, L, dv), state (B, nh, m, dv + 1), its log-scale (B, nh, 1, 1) or
        None)``: the state includes ``prefix`` and every key of this call.

    Shape:
        - phi_q ``(B, nh, L, m)``, phi_k ``(B, nh, S, m)``, v_ext ``(B, nh, S, dv + 1)``
    """
    batch, heads, q_len, _ = phi_q.shape
    kv_len = phi_k.shape[2]
    if not is_causal:
        state, state_log = _merge_keys(phi_k, v_ext, log_k, prefix, prefix_log_scale)
        return normalise(phi_q @ state, eps), state, state_log
    offset = kv_len - q_len
    if offset > 0:  # keys before the first query's diagonal: seen by every query
        head_log = None if log_k is None else log_k[:, :, :offset]
        prefix, prefix_log_scale = _merge_keys(
            phi_k[:, :, :offset], v_ext[:, :, :offset], head_log, prefix, prefix_log_scale
        )
        phi_k, v_ext = phi_k[:, :, offset:], v_ext[:, :, offset:]
        log_k = None if log_k is None else log_k[:, :, offset:]
    blind = max(-offset, 0)  # queries before the first key: they see nothing
    seen = phi_q[:, :, blind:]
    if seen.shape[2] == 0:
        state, state_log = _merge_keys(phi_k, v_ext, log_k, prefix, prefix_log_scale)
        num_den = phi_q.new_zeros(batch, heads, q_len, v_ext.shape[-1])
    else:
        if log_k is None:
            num_den, state = _causal_square(seen, phi_k, v_ext, prefix, chunk_size)
            state_log = None
        else:
            num_den, state, state_log = _causal_square_scaled(
                seen, phi_k, v_ext, log_k, prefix, prefix_log_scale, chunk_size
            )
        if blind:
            num_den = F.pad(num_den, (0, 0, blind, 0))
    return normalise(num_den, eps), state, state_log


def kernel_weights(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    *,
    is_causal: bool = False,
    eps: float = 0.0,
    log_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """The explicit ``(B, nh, L, S)`` weights ``phi(q_i)^T phi(k_j) / sum_j' ...`` (O(L S)).

    The closed form of :func:`kernel_attention`, used while a probe records. Padded keys must
    already have zero features (and ``-inf`` log-scales); rows that see no key are exact zeros.
    """
    scores = phi_q @ phi_k.transpose(-2, -1)  # (B, nh, L, S)
    diagonal = phi_k.shape[2] - phi_q.shape[2]
    if log_k is not None:
        logits = log_k.transpose(-2, -1).expand_as(scores)  # (B, nh, L, S)
        if is_causal:  # keys a query cannot see get weight exp(-inf) = 0 (no inf * 0)
            visible = torch.ones_like(scores, dtype=torch.bool).tril(diagonal=diagonal)
            logits = logits.masked_fill(~visible, -math.inf)
        row_ref = logits.detach().amax(-1, keepdim=True) if scores.shape[-1] else logits[..., :1]
        scores = scores * log_weight(logits, row_ref)
    if is_causal:
        scores = scores.tril(diagonal=diagonal)
    den = scores.sum(-1, keepdim=True) + eps
    return scores / torch.where(den > 0, den, torch.ones_like(den))
