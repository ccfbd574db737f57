"""Where the self-attention vision modules look: one query pixel's weights as an image.

Non-local, DNL, CCNet, GCNet and PSA compute attention over the pixels of a feature map. For
one query pixel their recorded weights (``attnzoo.viz.record_attention``) are a map over the
``H x W`` pixels: all of them (Non-local, DNL's whitened pairwise term), its row and column
(CCNet, one recurrence), or one map shared by every query (GCNet's context pooling, PSA's
channel-only branch pooling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

import attnzoo
from attnzoo._checks import check_positive_int, type_name
from attnzoo.viz._mpl import axes_for, finish
from attnzoo.viz.record import record_attention

__all__ = ["VISION_MAPS", "plot_vision_maps", "vision_attention_maps"]

# module -> the recorded key whose weights are drawn ("" = the module's own probe)
VISION_MAPS = {"non_local": "", "dnl": "", "ccnet": "", "gc": "context_pool", "psa": ""}
"""The modules :func:`vision_attention_maps` draws, and the recorded key of each."""


def _query_map(name: str, weights: torch.Tensor, height: int, width: int, query) -> torch.Tensor:
    """``(H, W)`` weights of pixel ``query = (row, col)`` from a module's recorded tensor."""
    row, col = query
    index = row * width + col
    if name == "ccnet":  # (B, 1, HW, H + W): first the column, then the row
        column, line = weights[0, 0, index].split([height, width])
        image = torch.zeros(height, width, dtype=weights.dtype)
        image[:, col] += column
        image[row, :] += line
        return image
    flat = weights[0, 0, index if weights.shape[2] > 1 else 0]  # (HW,)
    return flat.reshape(height, width)  # (H, W)


def vision_attention_maps(
    names: Sequence[str] = tuple(VISION_MAPS),
    *,
    image: torch.Tensor | None = None,
    channels: int = 16,
    size: int = 16,
    query: tuple[int, int] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """One query pixel's attention map for each module, on the same feature map.

    Args:
        names: Vision modules of :data:`VISION_MAPS`.
        image: ``(1, channels, H, W)`` features; default a fixed random ``1 x 1`` projection of
            :func:`attnzoo.viz.demo_images` (a disc on a gradient) to ``channels``.
        channels: Feature channels of the default input and of every module.
        size: Height and width of the default input.
        query: ``(row, col)`` of the query pixel; default the centre.
        seed: Seed of the default input and of the (untrained) modules.

    Returns:
        ``{name: (H, W)}`` weights of the query pixel.

    Shape:
        - image: ``(1, C, H, W)``; each value: ``(H, W)``

    Example:
        >>> maps = vision_attention_maps(["ccnet"], size=8, query=(2, 5))
        >>> int((maps["ccnet"] > 0).sum())  # its row and its column: 8 + 8 - 1 pixels
        15
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise TypeError(f"names must be a non-empty list of vision module names, got {names!r}")
    unknown = [n for n in names if n not in VISION_MAPS]
    if unknown:
        raise ValueError(
            f"names: {unknown} have no pixel attention map; choose from {list(VISION_MAPS)}"
        )
    if image is not None and not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a (1, C, H, W) tensor, got {type_name(image)}")
    if image is not None and (image.dim() != 4 or len(image) != 1):
        raise ValueError(f"image must be a (1, C, H, W) tensor, got shape {tuple(image.shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if image is None:
            from attnzoo.viz._demos import demo_images  # _demos imports this module

            pixels = demo_images(1, check_positive_int("size", size), seed=seed)  # (1, 3, H, W)
            image = torch.einsum("bchw,dc->bdhw", pixels, torch.randn(channels, 3))  # (1, C, H, W)
        modules = {name: attnzoo.create(name, image.shape[1]) for name in names}
    height, width = image.shape[2:]
    query = (height // 2, width // 2) if query is None else tuple(query)
    if len(query) != 2 or not (0 <= query[0] < height and 0 <= query[1] < width):
        raise ValueError(f"query must be (row, col) inside {height} x {width}, got {query}")
    maps = {}
    for name, module in modules.items():
        with record_attention(module.eval()) as recorded, torch.no_grad():
            module(image)
        maps[name] = _query_map(name, recorded[VISION_MAPS[name]], height, width, query)
    return maps


def plot_vision_maps(
    maps: Mapping[str, torch.Tensor],
    *,
    query: tuple[int, int] | None = None,
    title: str | None = None,
    cmap: str = "magma",
    ax: Any = None,
    out: Any = None,
) -> Any:
    """One panel per module: the query pixel's weights over the ``H x W`` pixels.

    Args:
        maps: ``{name: (H, W)}``, e.g. from :func:`vision_attention_maps`.
        query: ``(row, col)`` marked with a cross (default: none).
        title: Figure title.
        cmap: matplotlib colour map.
        ax: One Axes per module; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - each value: ``(H, W)``

    Example:
        >>> fig = plot_vision_maps({"gc": torch.rand(4, 4)})
        >>> fig.axes[0].get_title()
        'gc'
    """
    if not isinstance(maps, Mapping) or not maps:
        raise TypeError(f"maps must be a non-empty mapping name -> (H, W), got {maps!r}")
    fig, axes = axes_for(ax, len(maps), figsize=(2.6 * len(maps) + 0.4, 3.0), ncols=len(maps))
    for axis, (name, image) in zip(axes, maps.items(), strict=True):
        if not isinstance(image, torch.Tensor) or image.dim() != 2:
            raise ValueError(f"maps[{name!r}] must be an (H, W) tensor, got {type_name(image)}")
        axis.imshow(image.float().numpy(), cmap=cmap)
        if query is not None:
            axis.plot(query[1], query[0], marker="x", color="cyan", markersize=8)
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        fig.suptitle(title)
    return finish(fig, out)
