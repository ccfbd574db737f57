"""Attention scoring functions: how similar is each query to each key.

Every function maps queries ``(..., L, dq)`` and keys ``(..., S, dk)`` to scores ``(..., L, S)``;
a masked softmax of the scores gives the attention weights (see ``attention_pooling``).

- ``dot_score``: ``q . k`` (Luong et al. 2015, "dot").
- ``scaled_dot_score``: ``q . k / sqrt(d)`` (Vaswani et al. 2017), any scale allowed.
- ``additive_score``: ``w_v^T tanh(W_q q + W_k k)`` (Bahdanau et al. 2015); ``dq != dk`` allowed.
- ``bilinear_score``: ``q^T W k`` (Luong et al. 2015, "general"); ``dq != dk`` allowed.
- ``cosine_score``: ``scale * cos(q, k)`` (cosine attention, e.g. Swin V2 / Graves 2014).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo._checks import check_finite, type_name

__all__ = [
    "additive_score",
    "bilinear_score",
    "cosine_score",
    "dot_score",
    "l2_score",
    "scaled_dot_score",
    "squared_distances",
]


def _check_pair(q: object, k: object, *, same_dim: bool) -> None:
    for name, t in (("queries", q), ("keys", k)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type_name(t)}")
        if t.dim() < 2:
            raise ValueError(f"{name} must be at least 2-D (..., n, d), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating tensor, got dtype {t.dtype}; convert with "
                f"{name}.float()"
            )
    if q.dtype != k.dtype:
        raise TypeError(f"queries and keys must share a dtype, got {q.dtype} and {k.dtype}")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"keys must have batch dims (...) that broadcast with those of queries, got "
            f"queries {tuple(q.shape)} and keys {tuple(k.shape)}"
        ) from None
    if same_dim and q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same feature size for this score, got "
            f"{q.shape[-1]} and {k.shape[-1]}; use additive_score or bilinear_score for "
            "different sizes"
        )


def _check_weight(name: str, weight: torch.Tensor, queries: torch.Tensor) -> None:
    if weight.dtype != queries.dtype:
        raise TypeError(
            f"{name} must have the dtype of queries ({queries.dtype}), got {weight.dtype}; "
            f"convert with {name}.to(queries.dtype)"
        )


def dot_score(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Dot-product score ``q . k``.

    Args:
        queries: ``(..., L, d)``.
        keys: ``(..., S, d)``.

    Returns:
        Scores ``(..., L, S)``.

    Shape:
        - queries ``(..., L, d)``, keys ``(..., S, d)`` -> ``(..., L, S)``

    Example:
        >>> dot_score(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
        tensor([[11.,  1.]])
    """
    _check_pair(queries, keys, same_dim=True)
    return queries @ keys.transpose(-2, -1)


def scaled_dot_score(
    queries: torch.Tensor, keys: torch.Tensor, *, scale: float | None = None
) -> torch.Tensor:
    """Scaled dot-product score ``scale * q . k``, ``scale = 1 / sqrt(d)`` by default.

    The scale is applied to the queries before the product, which keeps float16 products finite.

    Args:
        queries: ``(..., L, d)``.
        keys: ``(..., S, d)``.
        scale: Any finite float; default ``1 / sqrt(d)`` with ``d`` the per-head feature size.

    Returns:
        Scores ``(..., L, S)``.

    Shape:
        - queries ``(..., L, d)``, keys ``(..., S, d)`` -> ``(..., L, S)``

    Example:
        >>> scaled_dot_score(torch.ones(1, 4), torch.ones(2, 4))
        tensor([[2., 2.]])
    """
    _check_pair(queries, keys, same_dim=True)
    scale = 1.0 / math.sqrt(queries.shape[-1]) if scale is None else check_finite("scale", scale)
    return (queries * scale) @ keys.transpose(-2, -1)


def additive_score(
    queries: torch.Tensor,
    keys: torch.Tensor,
    w_q: torch.Tensor | None,
    w_k: torch.Tensor | None,
    w_v: torch.Tensor,
) -> torch.Tensor:
    """Additive (Bahdanau) score ``w_v^T tanh(W_q q + W_k k)``.

    Bahdanau, Cho, Bengio, "Neural Machine Translation by Jointly Learning to Align and
    Translate", 2015, https://arxiv.org/abs/1409.0473. Queries and keys may have different sizes.
    Memory is ``O(L S h)`` (the definition broadcasts every query against every key).

    Args:
        queries: ``(..., L, dq)``.
        keys: ``(..., S, dk)``.
        w_q: ``(h, dq)`` query projection (``nn.Linear.weight`` layout), or None when ``queries``
            are already projected (``dq == h``).
        w_k: ``(h, dk)`` key projection, or None when ``keys`` are already projected.
        w_v: ``(h,)`` score vector, or ``(nh, h)`` one per head for ``(..., nh, L, h)`` inputs.

    Returns:
        Scores ``(..., L, S)``.

    Shape:
        - queries ``(..., L, dq)``, keys ``(..., S, dk)`` -> ``(..., L, S)``

    Example:
        >>> q, k = torch.ones(1, 2), torch.zeros(3, 3)
        >>> additive_score(q, k, torch.ones(4, 2), torch.ones(4, 3), torch.ones(4)).shape
        torch.Size([1, 3])
    """
    _check_pair(queries, keys, same_dim=False)
    if not isinstance(w_v, torch.Tensor) or w_v.dim() not in (1, 2):
        raise ValueError(f"w_v must be a (h,) or (nh, h) tensor, got {type_name(w_v)}")
    _check_weight("w_v", w_v, queries)
    hidden = w_v.shape[-1]
    for name, weight, x in (("w_q", w_q, queries), ("w_k", w_k, keys)):
        if weight is None:
            if x.shape[-1] != hidden:
                raise ValueError(
                    f"with {name}=None the inputs must already have h = {hidden} "
                    f"features, got {tuple(x.shape)}"
                )
        elif not isinstance(weight, torch.Tensor) or weight.shape != (hidden, x.shape[-1]):
            raise ValueError(
                f"{name} must have shape (h, d) = ({hidden}, {x.shape[-1]}), got "
                f"{type_name(weight)}"
            )
        else:
            _check_weight(name, weight, queries)
    projected_q = queries if w_q is None else F.linear(queries, w_q)
    projected_k = keys if w_k is None else F.linear(keys, w_k)
    features = torch.tanh(projected_q.unsqueeze(-2) + projected_k.unsqueeze(-3))  # (..., L, S, h)
    if w_v.dim() == 1:
        return features @ w_v  # (..., L, S)
    if queries.dim() < 3 or queries.shape[-3] != w_v.shape[0]:
        raise ValueError(
            f"a per-head w_v {tuple(w_v.shape)} needs inputs (..., nh, L, h) with "
            f"nh = {w_v.shape[0]}, got queries {tuple(queries.shape)}"
        )
    return torch.einsum("...hlsd,hd->...hls", features, w_v)  # (..., nh, L, S)


def bilinear_score(queries: torch.Tensor, keys: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Bilinear ("general") score ``q^T W k``.

    Luong, Pham, Manning, "Effective Approaches to Attention-based Neural Machine Translation",
    2015, https://arxiv.org/abs/1508.04025.

    Args:
        queries: ``(..., L, dq)``.
        keys: ``(..., S, dk)``.
        weight: ``(dq, dk)``.

    Returns:
        Scores ``(..., L, S)``.

    Shape:
        - queries ``(..., L, dq)``, keys ``(..., S, dk)`` -> ``(..., L, S)``

    Example:
        >>> bilinear_score(torch.ones(1, 2), torch.ones(1, 3), torch.ones(2, 3))
        tensor([[6.]])
    """
    _check_pair(queries, keys, same_dim=False)
    expected = (queries.shape[-1], keys.shape[-1])
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected:
        raise ValueError(f"weight must have shape (dq, dk) = {expected}, got {type_name(weight)}")
    _check_weight("weight", weight, queries)
    return (queries @ weight) @ keys.transpose(-2, -1)


def cosine_score(
    queries: torch.Tensor, keys: torch.Tensor, *, scale: float = 1.0, eps: float = 1e-8
) -> torch.Tensor:
    """Cosine-similarity score ``scale * q . k / (|q| |k|)``.

    Args:
        queries: ``(..., L, d)``.
        keys: ``(..., S, d)``.
        scale: Multiplier (an inverse temperature); cosine alone lies in ``[-1, 1]``.
        eps: Lower bound on the norms, so zero vectors give zero scores.

    Returns:
        Scores ``(..., L, S)``.

    Shape:
        - queries ``(..., L, d)``, keys ``(..., S, d)`` -> ``(..., L, S)``

    Example:
        >>> cosine_score(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
        tensor([[1., 0.]])
    """
    _check_pair(queries, keys, same_dim=True)
    scale = check_finite("scale", scale)
    q = F.normalize(queries, dim=-1, eps=eps)
    k = F.normalize(keys, dim=-1, eps=eps)
    return (q * scale) @ k.transpose(-2, -1)


def squared_distances(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``|q_i - k_j|^2`` of ``(..., L, d)`` and ``(..., S, d)``: ``(..., L, S)``, unchecked.

    Computed from the differences (``torch.cdist`` without its matrix-product shortcut), so the
    result is exact to the rounding of ``q_i - k_j`` even far from the origin, where the
    ``|q|^2 + |k|^2 - 2 q.k`` expansion cancels, in ``O(L S)`` memory.
    """
    if queries.shape[-2] == 0 or keys.shape[-2] == 0 or queries.shape[-1] == 0:
        return queries.new_zeros(*queries.shape[:-1], keys.shape[-2])  # (..., L, S)
    return torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist").square()


def l2_score(
    queries: torch.Tensor, keys: torch.Tensor, *, scale: float | None = None
) -> torch.Tensor:
    """Negative squared-distance score ``-scale * |q - k|^2`` (Kim, Papamakarios, Mnih 2021).

    The score of L2 self-attention ("The Lipschitz Constant of Self-Attention", ICML 2021,
    https://arxiv.org/abs/2006.04710), whose softmax is the Gaussian-kernel weighting of the
    survey's Nadaraya–Watson regression. ``scale = 1 / sqrt(d)`` by default.

    Args:
        queries: ``(..., L, d)``.
        keys: ``(..., S, d)``.
        scale: Any finite float; default ``1 / sqrt(d)``.

    Returns:
        Scores ``(..., L, S)``, exact to the rounding of the differences.

    Example:
        >>> s = l2_score(torch.zeros(1, 2), torch.tensor([[1.0, 1.0], [0.0, 2.0]]), scale=1.0)
        >>> torch.allclose(s, torch.tensor([[-2.0, -4.0]]))
        True
    """
    _check_pair(queries, keys, same_dim=True)
    scale = 1.0 / math.sqrt(queries.shape[-1]) if scale is None else check_finite("scale", scale)
    return -scale * squared_distances(queries, keys)
