"""Attention pooling: weights from scores, then a weighted sum of values.

``attention_pooling`` is the survey's generic "attention pooling" (any scores -> masked softmax ->
weighted sum). ``nadaraya_watson`` is the kernel-regression ancestor of attention (Nadaraya 1964,
Watson 1964): ``f(x) = sum_i K(x - x_i) y_i / sum_j K(x - x_j)``; ``average_pooling`` is the naive
baseline the survey compares it with.
"""

from __future__ import annotations

import torch

from attnzoo._checks import check_choice, check_finite, check_probability, type_name
from attnzoo.functional.dropout import dropout
from attnzoo.functional.softmax import (
    causal_mask,
    check_mask,
    key_padding_keep,
    lengths_to_mask,
    merge_masks,
    safe_softmax,
)

__all__ = ["KERNELS", "attention_pooling", "average_pooling", "nadaraya_watson", "pool"]

KERNELS = ("gaussian", "box", "epanechnikov")


def pool(
    scores: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    padding: torch.Tensor | None = None,
    normalize=safe_softmax,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked core of every attention: ``(dropout(safe_softmax(scores, mask)) @ values, w)``.

    ``mask`` must already be validated and merged. Values at keys that a key-padding mask removes
    are zeroed first, so NaN stored there cannot reach the output: pass the user's mask as
    ``padding`` when ``mask`` also carries causality (the merge hides which keys are padding);
    by default ``mask`` itself is inspected. ``normalize(scores, mask)`` replaces the softmax
    (:mod:`attnzoo.functional.normalizers`). Returns the weights before dropout.
    """
    attn = normalize(scores, mask)
    keep = key_padding_keep(mask if padding is None else padding, values)
    if keep is not None:
        values = values.masked_fill(~keep, 0.0)
    dropped = dropout(attn, p=dropout_p) if dropout_p > 0 else attn
    return dropped @ values, attn


def attention_pooling(
    scores: torch.Tensor,
    values: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    valid_lens: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention pooling of the survey: ``masked_softmax(scores) @ values`` for any scores.

    Pair it with any scoring function (``dot_score``, ``additive_score`` ...).

    Args:
        scores: ``(..., L, S)`` from any scoring function.
        values: ``(..., S, dv)``.
        mask: Bool (``True`` = may attend) or additive float mask broadcastable to ``scores``.
        valid_lens: ``(B,)`` or ``(B, L)`` d2l-style valid lengths (intersected with ``mask``).
        is_causal: Also forbid keys after the query (bottom-right aligned when ``L != S``).
        dropout_p: Dropout on the weights whenever ``> 0``.

    Returns:
        ``(output, weights)``: ``(..., L, dv)`` and ``(..., L, S)`` (weights before dropout).

    Shape:
        - scores ``(..., L, S)``, values ``(..., S, dv)`` -> ``(..., L, dv)``, ``(..., L, S)``

    Example:
        >>> out, w = attention_pooling(torch.zeros(1, 2), torch.tensor([[1.0], [3.0]]))
        >>> out
        tensor([[2.]])
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or scores.dim() < 2:
        raise TypeError(f"scores must be a floating (..., L, S) tensor, got {type_name(scores)}")
    if (
        not isinstance(values, torch.Tensor)
        or values.dim() < 2
        or (values.shape[-2] != scores.shape[-1])
    ):
        raise ValueError(
            f"values must be (..., S, dv) with S = {scores.shape[-1]}, got {type_name(values)}"
        )
    _check_values_batch(values, scores.shape[:-2], "scores")
    if values.dtype != scores.dtype:
        raise TypeError(
            f"values must have the dtype of scores ({scores.dtype}), got {values.dtype}; "
            "convert with values.to(scores.dtype)"
        )
    check_probability("dropout_p", dropout_p)
    if mask is not None:
        check_mask(mask, scores.shape, scores.dtype)
    if valid_lens is not None:
        if not isinstance(valid_lens, torch.Tensor):
            raise TypeError(f"valid_lens must be a torch.Tensor, got {type_name(valid_lens)}")
        if scores.dim() < 3:
            raise ValueError(f"valid_lens needs scores (B, ..., L, S), got {tuple(scores.shape)}")
        mask = merge_masks(mask, lengths_to_mask(valid_lens.to(scores.device), scores.shape))
    padding = mask
    if is_causal:
        tri = causal_mask(*scores.shape[-2:], device=scores.device)  # (L, S) bottom-right
        mask = merge_masks(mask, tri)
    return pool(scores, values, mask, dropout_p, padding)


def _check_values_batch(values: torch.Tensor, batch: tuple[int, ...], other: str) -> None:
    """``ValueError`` naming ``values`` if its batch dims do not broadcast with ``batch``."""
    try:
        torch.broadcast_shapes(values.shape[:-2], batch)
    except RuntimeError:
        raise ValueError(
            f"values must have batch dims (...) that broadcast with those of {other}, "
            f"{tuple(batch)}; got values of shape {tuple(values.shape)}"
        ) from None


def _as_features(name: str, x: torch.Tensor, scalar: bool) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor, got {type_name(x)}")
    return x.unsqueeze(-1) if scalar else x  # (..., n, d)


def average_pooling(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """The naive estimator ``f(x) = mean(y)``: every query gets the mean of the values.

    Args:
        queries: ``(n,)`` or ``(..., n, d)``; only its length is used.
        keys: ``(m,)`` or ``(..., m, d)``; unused, kept for the same signature as
            :func:`nadaraya_watson`.
        values: ``(m,)`` or ``(..., m, dv)``.

    Returns:
        ``(n,)`` or ``(..., n, dv)`` predictions.

    Shape:
        - values ``(m,)`` -> ``(n,)``; values ``(..., m, dv)`` -> ``(..., n, dv)``

    Example:
        >>> average_pooling(torch.zeros(3), torch.zeros(2), torch.tensor([1.0, 3.0]))
        tensor([2., 2., 2.])
    """
    del keys
    for name, t in (("queries", queries), ("values", values)):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            raise TypeError(f"{name} must be a (n,) or (..., n, d) tensor, got {type_name(t)}")
    if not values.is_floating_point():
        raise TypeError(f"values must be a floating tensor, got dtype {values.dtype}")
    n = queries.shape[0] if queries.dim() == 1 else queries.shape[-2]
    mean = values.mean(dim=0 if values.dim() == 1 else -2, keepdim=True)
    return mean.expand(n) if values.dim() == 1 else mean.expand(*mean.shape[:-2], n, mean.shape[-1])


def nadaraya_watson(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    kernel: str = "gaussian",
    bandwidth: float | torch.Tensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nadaraya–Watson kernel regression, the non-parametric attention pooling of the survey.

    ``f(q) = sum_i alpha(q, k_i) v_i`` with
    ``alpha(q, k_i) = K((q - k_i)/h) / sum_j K((q - k_j)/h)``. For the Gaussian kernel the weights
    are ``softmax(-|q - k_i|^2 / (2 h^2))``; the box kernel is ``1[|u| <= 1]``; Epanechnikov is
    ``3/4 (1 - u^2)`` for ``|u| <= 1``. A query with no key inside a
    compact kernel's support gets zero weights and a zero prediction (no NaN).

    Nadaraya, "On estimating regression", 1964; Watson, "Smooth regression analysis", 1964.

    Args:
        queries: ``(n,)`` scalar inputs or ``(..., n, d)`` vectors.
        keys: ``(m,)`` or ``(..., m, d)``; same feature layout as ``queries``.
        values: ``(m,)`` or ``(..., m, dv)``.
        kernel: ``"gaussian"``, ``"box"`` or ``"epanechnikov"``.
        bandwidth: ``h > 0``; a float or a tensor (differentiable, e.g. a learned bandwidth).

    Returns:
        ``(predictions, weights)``: ``(n,)`` or ``(..., n, dv)``, and ``(n, m)`` or ``(..., n, m)``.

    Shape:
        - scalar: queries ``(n,)``, keys ``(m,)``, values ``(m,)`` -> ``(n,)``, ``(n, m)``
        - vector: queries ``(..., n, d)``, keys ``(..., m, d)``, values ``(..., m, dv)``
          -> ``(..., n, dv)``, ``(..., n, m)``

    Example:
        >>> x = torch.tensor([0.0, 1.0, 2.0])
        >>> pred, w = nadaraya_watson(torch.tensor([1.0]), x, 2 * x)
        >>> pred
        tensor([2.])
    """
    check_choice("kernel", kernel, KERNELS)
    scalar = isinstance(queries, torch.Tensor) and queries.dim() == 1
    if scalar and not (isinstance(keys, torch.Tensor) and keys.dim() == 1):
        raise ValueError(f"with 1-D queries, keys must be 1-D (m,), got {type_name(keys)}")
    if not scalar and isinstance(keys, torch.Tensor) and keys.dim() == 1:
        raise ValueError(
            f"keys must be (..., m, d) like the queries {type_name(queries)}; 1-D keys (m,) "
            f"go with 1-D queries (n,); got keys {type_name(keys)}"
        )
    q = _as_features("queries", queries, scalar)  # (..., n, d)
    k = _as_features("keys", keys, scalar)  # (..., m, d)
    v_scalar = isinstance(values, torch.Tensor) and values.dim() == 1
    v = _as_features("values", values, v_scalar)  # (..., m, dv)
    for name, t in (("keys", k), ("values", v)):
        if t.dtype != q.dtype:
            raise TypeError(
                f"{name} must have the dtype of queries ({q.dtype}), got {t.dtype}; convert "
                f"with {name}.to(queries.dtype)"
            )
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"keys must have batch dims (...) that broadcast with those of queries, got "
            f"queries {tuple(q.shape)} and keys {tuple(k.shape)}"
        ) from None
    _check_values_batch(v, batch, "queries and keys")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same feature size, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"keys and values must have the same length, got {k.shape[-2]} and {v.shape[-2]}"
        )
    if not isinstance(bandwidth, torch.Tensor):
        bandwidth = check_finite("bandwidth", bandwidth, positive=True)
    elif not bool(torch.isfinite(bandwidth).all()) or bool((bandwidth <= 0).any()):
        raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth}")
    sq_dist = (q.unsqueeze(-2) - k.unsqueeze(-3)).pow(2).sum(-1)  # (..., n, m)
    u2 = sq_dist / bandwidth**2
    if kernel == "gaussian":
        weights = safe_softmax(-u2 / 2)
    else:
        inside = u2 <= 1
        raw = inside.to(u2.dtype) if kernel == "box" else 0.75 * (1 - u2).clamp_min(0) * inside
        total = raw.sum(-1, keepdim=True)
        weights = torch.where(total > 0, raw / total.clamp_min(torch.finfo(raw.dtype).tiny), 0.0)
    pred = weights @ v  # (..., n, dv)
    return (pred.squeeze(-1) if v_scalar else pred), weights
