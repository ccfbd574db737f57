"""Attention maps: heat maps, per-head grids and attention rollout.

The numbers (:func:`attention_rollout`) need only torch; the ``plot_*`` functions import
matplotlib when they run. Mean attention distance is in :mod:`attnzoo.viz.vit`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attnzoo._checks import check_choice, check_ndim, check_positive_int, type_name
from attnzoo.viz._mpl import axes_for, finish, image_array

__all__ = [
    "attention_rollout",
    "check_weights",
    "grid_shape",
    "normalise_rows",
    "plot_attention",
    "plot_heads",
    "plot_rollout",
]

PathLike = str | os.PathLike | None


def grid_shape(grid_size: int | Sequence[int], name: str = "grid_size") -> tuple[int, int]:
    """``grid_size`` as ``(H, W)``: an int ``g`` means ``(g, g)``.

    Args:
        grid_size: ``g`` or ``(H, W)``, positive ints.
        name: Argument name for error messages.

    Returns:
        ``(H, W)``.

    Example:
        >>> grid_shape(4), grid_shape((2, 3))
        ((4, 4), (2, 3))
    """
    if isinstance(grid_size, int) and not isinstance(grid_size, bool):
        return check_positive_int(name, grid_size), check_positive_int(name, grid_size)
    if isinstance(grid_size, Sequence) and len(grid_size) == 2:
        return check_positive_int(name, grid_size[0]), check_positive_int(name, grid_size[1])
    raise TypeError(f"{name} must be an int or a pair (H, W) of ints, got {type_name(grid_size)}")


def check_weights(name: str, x: Any, ndims: tuple[int, ...], layout: str) -> torch.Tensor:
    """``x`` detached, if it is a floating tensor with one of the ranks ``ndims``."""
    x = check_ndim(name, x, ndims, layout)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor {layout}, got dtype {x.dtype}")
    return x.detach()


def _labels(name: str, labels: Sequence[str] | None, size: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type_name(labels)}")
    if len(labels) != size:
        raise ValueError(f"{name} must have {size} entries (one per token), got {len(labels)}")
    return [str(label) for label in labels]


def _heat_map(ax: Any, weights: torch.Tensor, x_labels, y_labels, cmap: str, vmax=None) -> Any:
    image = ax.imshow(weights.float().cpu().numpy(), cmap=cmap, vmin=0.0, vmax=vmax)
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=90)
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), y_labels)
    ax.set_xlabel("keys")
    ax.set_ylabel("queries")
    return image


def plot_attention(
    weights: torch.Tensor,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Heat map of one attention matrix: keys on x, queries on y, with a colour bar.

    Args:
        weights: ``(L, S)`` attention weights (e.g. ``attn[0, head]``).
        x_labels: ``S`` key token labels.
        y_labels: ``L`` query token labels.
        title: Axes title.
        cmap: matplotlib colour map.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - weights: ``(L, S)``

    Example:
        >>> fig = plot_attention(torch.eye(3), x_labels=["a", "b", "c"])
        >>> fig.axes[0].get_xlabel()
        'keys'
    """
    weights = check_weights("weights", weights, (2,), "(L, S)")
    x_labels = _labels("x_labels", x_labels, weights.shape[1])
    y_labels = _labels("y_labels", y_labels, weights.shape[0])
    fig, (axis,) = axes_for(ax, 1, figsize=(5.0, 4.2))
    image = _heat_map(axis, weights, x_labels, y_labels, cmap)
    fig.colorbar(image, ax=axis, shrink=0.8)
    if title:
        axis.set_title(title)
    return finish(fig, out)


def plot_heads(
    weights: torch.Tensor,
    *,
    batch_index: int = 0,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    ncols: int = 4,
    cmap: str = "viridis",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """A grid of per-head heat maps sharing one colour scale.

    Args:
        weights: ``(nh, L, S)``, or ``(B, nh, L, S)`` (sample ``batch_index`` is drawn).
        batch_index: Sample drawn from a 4-D ``weights``.
        x_labels: ``S`` key token labels.
        y_labels: ``L`` query token labels.
        title: Figure title.
        ncols: Panels per row of a new figure.
        cmap: matplotlib colour map.
        ax: ``nh`` Axes (one per head) to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - weights: ``(nh, L, S)`` or ``(B, nh, L, S)``

    Example:
        >>> fig = plot_heads(torch.rand(1, 2, 3, 3).softmax(-1))
        >>> fig.axes[1].get_title()
        'head 1'
    """
    weights = check_weights("weights", weights, (3, 4), "(nh, L, S) or (B, nh, L, S)")
    if weights.dim() == 4:
        batch = weights.shape[0]
        index = check_positive_int("batch_index", batch_index, minimum=0)
        if index >= batch:
            raise ValueError(f"batch_index must be < B = {batch}, got {index}")
        weights = weights[index]
    heads, length, keys = weights.shape
    x_labels = _labels("x_labels", x_labels, keys)
    y_labels = _labels("y_labels", y_labels, length)
    ncols = check_positive_int("ncols", ncols)
    cols = min(heads, ncols)
    rows = -(-heads // cols)
    fig, axes = axes_for(ax, heads, figsize=(2.6 * cols + 0.8, 2.6 * rows + 0.3), ncols=cols)
    vmax = float(weights.max()) if weights.numel() else 1.0
    image = None
    for head, axis in enumerate(axes):
        image = _heat_map(axis, weights[head], x_labels, y_labels, cmap, vmax=vmax)
        axis.set_title(f"head {head}")
    fig.colorbar(image, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title)
    return finish(fig, out)


def _layer_maps(maps: Any) -> list[torch.Tensor]:
    if isinstance(maps, Mapping):
        maps = list(maps.values())
    if isinstance(maps, torch.Tensor) or not isinstance(maps, Sequence) or not maps:
        raise TypeError(
            "maps must be a non-empty sequence of per-layer (B, nh, N, N) tensors, or the dict "
            f"of record_attention; got {type_name(maps)}"
        )
    layers = []
    for index, attn in enumerate(maps):
        attn = check_weights(f"maps[{index}]", attn, (4,), "(B, nh, N, N)")
        if attn.shape[-1] != attn.shape[-2]:
            raise ValueError(
                f"maps[{index}] must be square self-attention (B, nh, N, N), "
                f"got {tuple(attn.shape)}"
            )
        if layers and (attn.shape[0], attn.shape[-1]) != (layers[0].shape[0], layers[0].shape[-1]):
            raise ValueError(
                f"every layer must have the same B and N; maps[0] is {tuple(layers[0].shape)}, "
                f"maps[{index}] is {tuple(attn.shape)}"
            )
        layers.append(attn)
    return layers


def normalise_rows(a: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums; all-zero rows stay zero."""
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / total.clamp_min(torch.finfo(a.dtype).tiny), 0.0)


def attention_rollout(
    maps: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    *,
    head_fusion: str = "mean",
    residual: bool = True,
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Attention rollout: how much each input token flows into each output token.

    Abnar and Zuidema, "Quantifying Attention Flow in Transformers", 2020,
    https://arxiv.org/abs/2005.00928. Per layer ``l`` the heads are fused (mean, max or min) into
    ``A_l``; with ``residual`` the skip connection is accounted for by ``A_l <- 0.5 A_l + 0.5 I``;
    the rows are re-normalised to sum to one; then ``rollout = A_L @ ... @ A_2 @ A_1``.
    ``discard_ratio`` (from the common vit-explain recipe, not the paper) first zeroes that
    fraction of the smallest fused weights of each layer and sample. Computed in float64,
    returned in the dtype of the first map.

    Args:
        maps: Per-layer ``(B, nh, N, N)`` weights, first layer first; or the dict of
            :func:`attnzoo.viz.record_attention` (its values, in insertion = forward order).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over the heads.
        residual: Add the identity for the residual connection (the paper's rollout).
        discard_ratio: Fraction in ``[0, 1)`` of the smallest weights dropped per layer.

    Returns:
        ``(B, N, N)`` rollout (rows sum to one).

    Shape:
        - maps: ``L x (B, nh, N, N)`` -> ``(B, N, N)``

    Example:
        >>> eye = torch.eye(3).expand(1, 2, 3, 3)
        >>> attention_rollout([eye, eye]).equal(torch.eye(3)[None])
        True
    """
    layers = _layer_maps(maps)
    check_choice("head_fusion", head_fusion, ("mean", "max", "min"))
    if not isinstance(residual, bool):
        raise TypeError(f"residual must be a bool, got {type_name(residual)}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, int | float):
        raise TypeError(f"discard_ratio must be a float in [0, 1), got {type_name(discard_ratio)}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    batch, _, tokens, _ = layers[0].shape
    eye = torch.eye(tokens, dtype=torch.float64, device=layers[0].device)
    rollout = eye.expand(batch, tokens, tokens)
    for attn in layers:
        attn = attn.to(torch.float64)
        fused = {"mean": attn.mean(1), "max": attn.amax(1), "min": attn.amin(1)}[head_fusion]
        drop = int(discard_ratio * tokens * tokens)
        if drop:
            flat = fused.flatten(1)  # (B, N * N)
            lowest = flat.topk(drop, dim=-1, largest=False).indices
            fused = flat.scatter(-1, lowest, 0.0).view(batch, tokens, tokens)  # (B, N, N)
        if residual:
            fused = 0.5 * fused + 0.5 * eye
        rollout = normalise_rows(fused) @ rollout
    return rollout.to(layers[0].dtype)


def plot_rollout(
    rollout: torch.Tensor,
    *,
    grid_size: int | Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
    query: int = 0,
    image: torch.Tensor | None = None,
    batch_index: int = 0,
    title: str | None = None,
    cmap: str = "inferno",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Draw a rollout: the whole ``N x N`` map, or one query's row as an image over the grid.

    With ``grid_size``, the row of token ``query`` (default 0, the class token) restricted to the
    patch keys (the ``num_prefix_tokens`` first keys are dropped) is drawn as a ``(H, W)``
    image, laid over ``image`` when given: which pixels the prediction flows from.

    Args:
        rollout: ``(N, N)`` or ``(B, N, N)`` from :func:`attention_rollout`.
        grid_size: Patch grid ``(H, W)`` (or an int); ``None`` draws the ``N x N`` matrix.
        num_prefix_tokens: Leading non-patch tokens (class token) among the ``N``.
        query: Row drawn over the grid.
        image: ``(C, H_img, W_img)`` input image shown under the row (min-max scaled).
        batch_index: Sample drawn from a 3-D ``rollout``.
        title: Axes title.
        cmap: matplotlib colour map.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - rollout: ``(N, N)`` or ``(B, N, N)`` with ``N = num_prefix_tokens + H * W``

    Example:
        >>> fig = plot_rollout(torch.eye(5), grid_size=2)
        >>> fig.axes[0].get_title()
        'rollout of token 0'
    """
    rollout = check_weights("rollout", rollout, (2, 3), "(N, N) or (B, N, N)")
    if rollout.dim() == 3:
        index = check_positive_int("batch_index", batch_index, minimum=0)
        if index >= rollout.shape[0]:
            raise ValueError(f"batch_index must be < B = {rollout.shape[0]}, got {index}")
        rollout = rollout[index]
    fig, (axis,) = axes_for(ax, 1, figsize=(4.6, 4.0))
    if grid_size is None:
        shown = axis.imshow(rollout.float().cpu().numpy(), cmap=cmap)
        axis.set_xlabel("input tokens")
        axis.set_ylabel("output tokens")
    else:
        height, width = grid_shape(grid_size)
        prefix = check_positive_int("num_prefix_tokens", num_prefix_tokens, minimum=0)
        tokens = rollout.shape[-1]
        if tokens != prefix + height * width:
            raise ValueError(
                f"rollout has N = {tokens} tokens, expected num_prefix_tokens + H * W = "
                f"{prefix} + {height} * {width} = {prefix + height * width}"
            )
        row = check_positive_int("query", query, minimum=0)
        if row >= tokens:
            raise ValueError(f"query must be < N = {tokens}, got {row}")
        values = rollout[row, prefix:].reshape(height, width)  # (H, W)
        extent = None
        if image is not None:
            picture = image_array(image)
            axis.imshow(picture, cmap="gray")
            extent = (-0.5, picture.shape[1] - 0.5, picture.shape[0] - 0.5, -0.5)
        shown = axis.imshow(
            values.float().cpu().numpy(),
            cmap=cmap,
            alpha=0.6 if image is not None else 1.0,
            extent=extent,
            interpolation="nearest",
        )
        axis.set_axis_off()
    fig.colorbar(shown, ax=axis, shrink=0.8)
    default = "attention rollout" if grid_size is None else f"rollout of token {query}"
    axis.set_title(title or default)
    return finish(fig, out)
