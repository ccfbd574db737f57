"""ViT Figure 7, left and right: patch-embedding components and mean attention distance.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", 2021, https://arxiv.org/abs/2010.11929. (Figure 7 centre, the position-embedding
similarity, is in :mod:`attnzoo.viz.positional`.) The numbers need only torch; the ``plot_*``
functions import matplotlib when they run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from attnzoo._checks import check_ndim, check_positive_int, type_name
from attnzoo.viz._mpl import axes_for, finish, mosaic
from attnzoo.viz.maps import check_weights, grid_shape, normalise_rows

__all__ = [
    "mean_attention_distance",
    "patch_embedding_components",
    "plot_attention_distance",
    "plot_patch_components",
]

PathLike = str | os.PathLike | None


def _patch_positions(height: int, width: int, patch: tuple[int, int], device) -> torch.Tensor:
    rows = torch.arange(height, dtype=torch.float64, device=device) * patch[0]
    cols = torch.arange(width, dtype=torch.float64, device=device) * patch[1]
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (H, W, 2)
    return grid.reshape(height * width, 2)  # (H * W, 2)


def mean_attention_distance(
    attn: torch.Tensor,
    *,
    grid_size: int | Sequence[int],
    patch_size: int | Sequence[int] = 1,
    num_prefix_tokens: int = 0,
) -> torch.Tensor:
    """Mean attention distance per head, the "receptive field" of ViT (Figure 7, right).

    Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
    Scale", 2021, https://arxiv.org/abs/2010.11929. For every query patch, the Euclidean distance
    in pixels to every key patch (grid offset times ``patch_size``) is weighted by the attention
    between them and summed; the result is averaged over the query patches and the batch.
    Prefix tokens (the class token) are dropped from queries and keys, and each query's weights
    over the patch keys are re-normalised to sum to one (rows with no weight on any patch count
    as distance 0). Computed in float64, returned in the dtype of ``attn``.

    Args:
        attn: ``(B, nh, N, N)`` self-attention weights with ``N = num_prefix_tokens + H * W``.
        grid_size: Patch grid ``(H, W)``, or ``g`` for ``(g, g)``.
        patch_size: Pixels per patch (an int or ``(ph, pw)``); 1 gives distances in patches.
        num_prefix_tokens: Leading non-patch tokens (1 with a class token).

    Returns:
        ``(nh,)`` distances in pixels.

    Shape:
        - attn: ``(B, nh, N, N)`` -> ``(nh,)``

    Example:
        >>> eye = torch.eye(4).expand(1, 2, 4, 4)
        >>> mean_attention_distance(eye, grid_size=2, patch_size=16)
        tensor([0., 0.])
    """
    attn = check_weights("attn", attn, (4,), "(B, nh, N, N)")
    height, width = grid_shape(grid_size)
    patch = grid_shape(patch_size, "patch_size")
    prefix = check_positive_int("num_prefix_tokens", num_prefix_tokens, minimum=0)
    tokens = prefix + height * width
    if attn.shape[-2:] != (tokens, tokens):
        raise ValueError(
            f"attn must be (B, nh, N, N) with N = num_prefix_tokens + H * W = {prefix} + "
            f"{height} * {width} = {tokens}, got {tuple(attn.shape)}"
        )
    weights = normalise_rows(attn[..., prefix:, prefix:].to(torch.float64))  # (B, nh, P, P)
    positions = _patch_positions(height, width, patch, attn.device)  # (P, 2)
    distance = torch.cdist(positions, positions)  # (P, P)
    per_query = (weights * distance).sum(-1)  # (B, nh, P)
    return per_query.mean(dim=(0, 2)).to(attn.dtype)


def plot_attention_distance(
    distances: Sequence[torch.Tensor] | torch.Tensor,
    *,
    reference: float | None = None,
    title: str | None = None,
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Mean attention distance against network depth, one dot per head (ViT Figure 7, right).

    Args:
        distances: Per layer a ``(nh,)`` tensor (a list, or a ``(layers, nh)`` tensor), e.g.
            :func:`mean_attention_distance` of each block.
        reference: Draw a dashed line at this distance (e.g. that of uniform attention).
        title: Axes title.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - distances: ``layers x (nh,)``

    Example:
        >>> fig = plot_attention_distance([torch.tensor([1.0, 3.0]), torch.tensor([5.0, 9.0])])
        >>> fig.axes[0].get_xlabel()
        'network depth (layer)'
    """
    if isinstance(distances, torch.Tensor):
        distances = list(check_ndim("distances", distances, (2,), "(layers, nh)"))
    if not isinstance(distances, Sequence) or not distances:
        raise TypeError(
            f"distances must be a non-empty list of (nh,) tensors, got {type_name(distances)}"
        )
    layers = [check_ndim(f"distances[{i}]", d, (1,), "(nh,)") for i, d in enumerate(distances)]
    if reference is not None and not (
        isinstance(reference, int | float) and math.isfinite(reference)
    ):
        raise TypeError(f"reference must be a finite number or None, got {type_name(reference)}")
    fig, (axis,) = axes_for(ax, 1, figsize=(4.8, 3.8))
    heads = max(len(d) for d in layers)
    colours = [f"C{h % 10}" for h in range(heads)]
    for depth, values in enumerate(layers, start=1):
        axis.scatter(
            [depth] * len(values), values.detach().cpu().tolist(), c=colours[: len(values)], s=18
        )
    if reference is not None:
        axis.axhline(reference, color="gray", linestyle="--", linewidth=1, label="uniform")
        axis.legend(loc="lower right", fontsize="small")
    axis.set_xlabel("network depth (layer)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_xticks(range(1, len(layers) + 1))
    axis.set_ylim(bottom=0)
    if title:
        axis.set_title(title)
    return finish(fig, out)


def patch_embedding_components(weight: torch.Tensor, *, n: int = 28) -> torch.Tensor:
    """Principal components of the patch-embedding filters (ViT Figure 7, left).

    The ``D`` filters of ``patch_embed.proj`` (each ``C x p x q``) are flattened, centred (their
    mean filter subtracted) and decomposed by SVD; the first ``n`` right singular vectors are the
    components, largest variance first, orthonormal. Each component's sign is chosen so that its
    entry of largest magnitude is positive (the SVD leaves it free).

    Args:
        weight: ``(D, C, p, q)`` convolution weight (e.g. ``model.patch_embed.proj.weight``).
        n: Components, at most ``min(D, C p q)`` (the paper shows 28).

    Returns:
        ``(n, C, p, q)`` components.

    Shape:
        - weight: ``(D, C, p, q)`` -> ``(n, C, p, q)``

    Example:
        >>> comps = patch_embedding_components(torch.randn(8, 3, 2, 2), n=4)
        >>> comps.shape
        torch.Size([4, 3, 2, 2])
    """
    weight = check_ndim("weight", weight, (4,), "(D, C, p, q)").detach()
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating tensor, got dtype {weight.dtype}")
    filters, *filter_shape = weight.shape
    flat = weight.reshape(filters, -1).to(torch.float64)  # (D, C p q)
    limit = min(flat.shape)
    n = check_positive_int("n", n)
    if n > limit:
        raise ValueError(f"n must be <= min(D, C * p * q) = {limit}, got {n}")
    _, _, vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
    comps = vh[:n]  # (n, C p q)
    peak = comps.gather(1, comps.abs().argmax(1, keepdim=True))  # (n, 1)
    comps = comps * torch.where(peak < 0, -1.0, 1.0).to(comps.dtype)
    return comps.reshape(n, *filter_shape).to(weight.dtype)  # (n, C, p, q)


def plot_patch_components(
    components: torch.Tensor,
    *,
    ncols: int = 7,
    title: str | None = "Principal components of the patch embedding",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """The components as small images in a grid (ViT Figure 7, left).

    Each component is min-max scaled on its own; three channels are drawn as RGB, one as grey,
    any other number as the grey mean over channels.

    Args:
        components: ``(n, C, p, q)`` from :func:`patch_embedding_components`.
        ncols: Images per row.
        title: Axes title.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - components: ``(n, C, p, q)``

    Example:
        >>> fig = plot_patch_components(torch.randn(4, 3, 2, 2), ncols=2)
        >>> fig.axes[0].get_title()
        'Principal components of the patch embedding'
    """
    comps = check_ndim("components", components, (4,), "(n, C, p, q)").detach().float().cpu()
    ncols = check_positive_int("ncols", ncols)
    count, channels = comps.shape[:2]
    if channels != 3:
        comps = comps.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # (n, 3, p, q) grey
    flat = comps.flatten(1)  # (n, 3 p q)
    low, high = flat.min(1).values, flat.max(1).values
    span = torch.where(high > low, high - low, 1.0)
    scaled = (comps - low.view(-1, 1, 1, 1)) / span.view(-1, 1, 1, 1)  # (n, 3, p, q)
    tiles = scaled.permute(0, 2, 3, 1)  # (n, p, q, 3)
    image = mosaic(tiles, min(ncols, count), 1.0)
    aspect = image.shape[0] / image.shape[1]
    fig, (axis,) = axes_for(ax, 1, figsize=(5.0, 0.4 + 5.0 * aspect))
    axis.imshow(image.clamp(0, 1).numpy(), interpolation="nearest")
    axis.set_axis_off()
    if title:
        axis.set_title(title)
    return finish(fig, out)
