"""Kernelised (linear) attention: the core shared by ``linear`` and ``performer``.

With a feature map ``phi`` that has non-negative outputs, attention becomes

``out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))``

and costs ``O(L m d)`` instead of ``O(L S d)`` (``m`` features). Appending a column of ones to
``v`` makes numerator and denominator one product. The causal form sums only keys ``j <= i``
(bottom-right aligned when ``L != S``); it runs in chunks of ``chunk_size`` tokens: inside a
chunk the masked ``(C, C)`` products, across chunks an exclusive prefix sum (``cumsum``) of the
per-chunk states ``phi(K_c)^T [V_c, 1]`` — a handful of large tensor ops, no Python loop, no
``L x S`` tensor. The state after the last key is what a :class:`RecurrentState` carries between
calls, so token-by-token (RNN-mode) decoding equals one causal call.

:class:`KernelAttentionBase` is the module both mechanisms subclass; they only define their
feature maps. The feature-map helpers of Performer (orthogonal random features, positive softmax
features, ReLU features) live here too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int, type_name
from attnzoo.layers.attention_base import AttentionBase

__all__ = [
    "KernelAttentionBase",
    "RecurrentState",
    "elu_features",
    "kernel_attention",
    "kernel_weights",
    "orthogonal_gaussian",
    "prepare_keys",
    "relu_kernel_features",
    "softmax_kernel_features",
]

HALF = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- feature maps
def elu_features(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = elu(x) + 1`` (Katharopoulos et al. 2020): positive, ``exp(x)`` for ``x < 0``."""
    return F.elu(x) + 1.0


def orthogonal_gaussian(
    nb_features: int,
    dim: int,
    *,
    scaling: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(nb_features, dim)`` block-orthogonal Gaussian projection of FAVOR+ (global RNG).

    Rows come in blocks of ``dim`` mutually orthogonal unit vectors (QR of Gaussian matrices);
    each row is then scaled by the norm of an independent ``N(0, I_dim)`` vector
    (``scaling=0``: every row is marginally ``N(0, I)``, so the estimator stays unbiased) or by
    ``sqrt(dim)`` (``scaling=1``).
    """
    blocks = math.ceil(nb_features / dim)
    gauss = torch.randn(blocks, dim, dim, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)  # (blocks, dim, dim), orthonormal columns
    # sign-correct so that Q is Haar-distributed (LAPACK's R has diagonal entries of either sign,
    # which skews every column of Q and biases the estimator; the official code skips this)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    rows = q.transpose(-2, -1).reshape(blocks * dim, dim)[:nb_features]  # (m, dim)
    if scaling == 0:
        norms = torch.randn(nb_features, dim, dtype=torch.float64).norm(dim=1)
    elif scaling == 1:
        norms = torch.full((nb_features,), math.sqrt(dim), dtype=torch.float64)
    else:
        raise ValueError(f"scaling must be 0 (chi norms) or 1 (sqrt(dim)), got {scaling!r}")
    return (norms[:, None] * rows).to(device=device, dtype=dtype)


def softmax_kernel_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    shift: torch.Tensor | float | None = None,
    normalise_rows: bool = False,
) -> torch.Tensor:
    """Positive random features of the softmax kernel (FAVOR+, Choromanski et al. 2021).

    ``phi(x) = exp(w^T x' - |x'|^2 / 2 - shift) / sqrt(m)`` with ``x' = x / hd^(1/4)``, so that
    ``E_w[phi(q)^T phi(k)] = exp(q^T k / sqrt(hd)) * exp(-shift_q - shift_k)``: without a shift
    the estimator is unbiased. Every feature is strictly positive (``exp``).

    Args:
        x: ``(..., n, hd)``.
        projection: ``(m, hd)`` random features ``w``.
        shift: Subtracted from the exponent (stabiliser); a tensor broadcastable to
            ``(..., n, 1)``, a float, or None (0).
        normalise_rows: Instead of ``shift``, divide each row by its own sum (a softmax over
            the features: no overflow, largest feature ``>= 1/m``). A per-row factor cancels in
            that row's normalisation, so use it for queries.

    Returns:
        ``(..., n, m)`` features.
    """
    hd, m = x.shape[-1], projection.shape[0]
    w = projection * hd**-0.25  # w^T x' = (w / hd^(1/4))^T x
    if normalise_rows:  # the |x'|^2 / 2 term is constant per row: it cancels too
        return torch.softmax(x @ w.transpose(0, 1), dim=-1)
    offset = 0.5 * hd**-0.5 * x.square().sum(-1, keepdim=True) + 0.5 * math.log(m)
    if shift is not None:
        offset = offset + shift
    # [x, -offset] @ [w, 1]^T = w^T x' - offset: the matmul does the subtraction, exp runs in
    # place, so the O(n m) tensor is written once and rewritten once
    x_aug = torch.cat([x, -offset.expand(*x.shape[:-1], 1)], dim=-1)  # (..., n, hd + 1)
    w_aug = torch.cat([w, w.new_ones(m, 1)], dim=-1)  # (m, hd + 1)
    return (x_aug @ w_aug.transpose(0, 1)).exp_()


def relu_kernel_features(
    x: torch.Tensor, projection: torch.Tensor, *, eps: float = 1e-3
) -> torch.Tensor:
    """FAVOR+ ReLU kernel features ``relu(w^T x / sqrt(m)) + eps`` (official ``eps = 1e-3``)."""
    return F.relu(x @ projection.transpose(0, 1) * projection.shape[0] ** -0.5) + eps


# ----------------------------------------------------------------------------- core
def prepare_keys(
    phi_k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero padded keys, apply weight dropout, and append the normaliser column to ``v``.

    Padded keys get zero features and zero values (``masked_fill``, so NaN stored there cannot
    leak). Dropout drops whole key columns of the implicit weight matrix (one Bernoulli mask per
    ``(b, head, key)``, shared by every query, rescaled by ``1 / (1 - p)``) in the numerator
    only, so it is applied once and stays ``O(L)``.

    Returns:
        ``phi_k (B, nh, S, m)`` and ``v_ext (B, nh, S, dv + 1)`` (last column: ones).
    """
    if keep is not None:
        gone = ~keep[:, None, :, None]  # (B, 1, S, 1)
        phi_k = phi_k.masked_fill(gone, 0.0)
        v = v.masked_fill(gone, 0.0)
    if dropout_p > 0:
        v = v * F.dropout(v.new_ones(*v.shape[:-1], 1), p=dropout_p)
    return phi_k, torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)


def _normalise(num_den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)`` from ``(..., dv + 1)``; rows that see no key give exact zeros."""
    den = num_den[..., -1:] + eps
    return num_den[..., :-1] / torch.where(den > 0, den, torch.ones_like(den))


def _state(phi_k: torch.Tensor, v_ext: torch.Tensor) -> torch.Tensor:
    return phi_k.transpose(-2, -1) @ v_ext  # (..., m, dv + 1)


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


def kernel_attention(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v_ext: torch.Tensor,
    *,
    is_causal: bool = False,
    eps: float = 0.0,
    prefix: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear-time kernel attention from non-negative features.

    Args:
        phi_q: ``(B, nh, L, m)`` query features.
        phi_k: ``(B, nh, S, m)`` key features (padded keys already zero, see
            :func:`prepare_keys`).
        v_ext: ``(B, nh, S, dv + 1)`` values with a last column of ones.
        is_causal: Query ``i`` sees keys ``j <= i + S - L`` (bottom-right aligned).
        eps: Added to the denominator (rows that see no key give zeros either way).
        prefix: ``(B, nh, m, dv + 1)`` state of earlier keys seen by every query (a
            :class:`RecurrentState`), or None.
        chunk_size: Chunk length of the causal prefix sums.

    Returns:
        ``(out (B, nh, L, dv), state (B, nh, m, dv + 1))``: the state includes ``prefix`` and
        every key of this call.

    Shape:
        - phi_q ``(B, nh, L, m)``, phi_k ``(B, nh, S, m)``, v_ext ``(B, nh, S, dv + 1)``
    """
    batch, heads, q_len, _ = phi_q.shape
    kv_len = phi_k.shape[2]
    if not is_causal:
        state = _state(phi_k, v_ext)  # (B, nh, m, dv + 1)
        if prefix is not None:
            state = state + prefix
        return _normalise(phi_q @ state, eps), state
    offset = kv_len - q_len
    if offset > 0:  # keys before the first query's diagonal: seen by every query
        head = _state(phi_k[:, :, :offset], v_ext[:, :, :offset])
        prefix = head if prefix is None else prefix + head
        phi_k, v_ext = phi_k[:, :, offset:], v_ext[:, :, offset:]
    blind = max(-offset, 0)  # queries before the first key: they see nothing
    seen = phi_q[:, :, blind:]
    if seen.shape[2] == 0:
        state = _state(phi_k, v_ext)
        state = state if prefix is None else state + prefix
        num_den = phi_q.new_zeros(batch, heads, q_len, v_ext.shape[-1])
    else:
        num_den, state = _causal_square(seen, phi_k, v_ext, prefix, chunk_size)
        if blind:
            num_den = F.pad(num_den, (0, 0, blind, 0))
    return _normalise(num_den, eps), state


def kernel_weights(
    phi_q: torch.Tensor, phi_k: torch.Tensor, *, is_causal: bool = False, eps: float = 0.0
) -> torch.Tensor:
    """The explicit ``(B, nh, L, S)`` weights ``phi(q_i)^T phi(k_j) / sum_j' ...`` (O(L S)).

    The closed form of :func:`kernel_attention`, used while a probe records. Padded keys must
    already have zero features; rows that see no key are exact zeros.
    """
    scores = phi_q @ phi_k.transpose(-2, -1)  # (B, nh, L, S)
    if is_causal:
        scores = scores.tril(diagonal=phi_k.shape[2] - phi_q.shape[2])
    den = scores.sum(-1, keepdim=True) + eps
    return scores / torch.where(den > 0, den, torch.ones_like(den))


# ----------------------------------------------------------------------------- state + module
class RecurrentState:
    """Running state of causal kernel attention for RNN-mode (token-by-token) decoding.

    Holds ``S = sum_j phi(k_j) [v_j, 1]^T`` of shape ``(B, nh, m, dv + 1)`` over every token fed
    so far — constant memory, whatever the length. Pass the same object as ``cache=`` to
    successive causal calls of ``linear`` or ``performer`` (self-attention); the outputs equal
    one causal call on the concatenated sequence. The state keeps the autograd graph when the
    inputs carry gradients; decode under ``torch.no_grad()`` to keep it flat.

    Shape:
        - state: ``(B, nh, m, dv + 1)`` or None before the first call

    Example:
        >>> state = RecurrentState()
        >>> len(state), state.state is None
        (0, True)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every token seen so far."""
        self.state: torch.Tensor | None = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def update(self, state: torch.Tensor, new_tokens: int) -> None:
        """Replace the state by ``state`` (which already includes the old one)."""
        if self.state is not None and state.shape != self.state.shape:
            raise ValueError(
                f"the new state {tuple(state.shape)} does not match the cached "
                f"{tuple(self.state.shape)}; call reset() to start a new sequence"
            )
        self.state = state
        self._len += new_tokens


class KernelAttentionBase(AttentionBase):
    """Module shell of kernelised attention; subclasses define :meth:`feature_maps`.

    Forward: projections -> ``feature_maps(q, k)`` (in float32 for half inputs) ->
    :func:`prepare_keys` (padding, dropout) -> :func:`kernel_attention` -> ``out_proj``. While a
    probe records (and no cache is used), it takes the explicit path of
    :func:`kernel_weights` and passes those ``(B, nh, L, S)`` weights through ``probe``.
    """

    supports_mask = True
    supports_causal = True
    supports_cross = True
    eps = 0.0
    chunk_size = 64

    def feature_maps(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi(q) (B, nh, L, m), phi(k) (B, nh, S, m))``, non-negative."""
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: RecurrentState | None = None,
    ) -> torch.Tensor:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        if cache is not None:
            if not isinstance(cache, RecurrentState):
                raise TypeError(f"cache must be a RecurrentState, got {type_name(cache)}")
            if context is not None or not is_causal:
                raise ValueError(
                    "cache= is for causal self-attention decoding: call with is_causal=True "
                    f"and no context (got is_causal={is_causal}, context "
                    f"{'given' if context is not None else 'None'})"
                )
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        batch, _, q_len, _ = q.shape
        keep = self.padding_mask(mask, batch, q_len, k.shape[2], q.dtype)
        compute = torch.float32 if q.dtype in HALF else q.dtype
        phi_q, phi_k = self.feature_maps(q.to(compute), k.to(compute))
        phi_k, v_ext = prepare_keys(phi_k, v.to(compute), keep, self.dropout_p)
        if self.probe.recording and cache is None:
            attn = self.probe(kernel_weights(phi_q, phi_k, is_causal=is_causal, eps=self.eps))
            out = attn @ v_ext[..., :-1]  # (B, nh, L, dv)
        else:
            out, state = kernel_attention(
                phi_q,
                phi_k,
                v_ext,
                is_causal=is_causal,
                eps=self.eps,
                prefix=None if cache is None else cache.state,
                chunk_size=self.chunk_size,
            )
            if cache is not None:
                cache.update(state, q_len)
        return self.finish(out.to(q.dtype), unbatched)

    @staticmethod
    def _check_chunk(chunk_size: int) -> int:
        return check_positive_int("chunk_size", chunk_size)
