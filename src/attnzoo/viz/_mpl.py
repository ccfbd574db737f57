"""Lazy matplotlib for ``attnzoo.viz``: figures on an Agg canvas, axes arguments, saving.

matplotlib is an optional dependency (``pip install 'attnzoo[viz]'``) and is imported only when
a plotting function runs, never by ``import attnzoo.viz``. Figures are built directly on an Agg
canvas, without pyplot: nothing opens a window, nothing changes the user's backend, and no
figure is left registered in pyplot (so nothing has to be closed). To draw into a pyplot
figure, pass its axes as ``ax``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from attnzoo._checks import type_name

__all__ = [
    "DPI",
    "axes_for",
    "finish",
    "image_array",
    "mosaic",
    "new_figure",
    "require_matplotlib",
]

DPI = 100


def require_matplotlib() -> Any:
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "attnzoo.viz plotting needs matplotlib, which is not installed: "
            "pip install 'attnzoo[viz]'"
        ) from error
    return matplotlib


def new_figure(figsize: tuple[float, float]) -> Any:
    """A new matplotlib ``Figure`` on an Agg canvas (constrained layout), outside pyplot."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def axes_for(
    ax: Any, count: int, *, figsize: tuple[float, float], ncols: int | None = None
) -> tuple[Any, list[Any]]:
    """``(figure, axes)`` with ``count`` axes: new ones, or the caller's ``ax``.

    ``ax`` is ``None`` (a new figure with ``count`` panels in ``ncols`` columns), one ``Axes``
    (``count == 1``) or a sequence / array of exactly ``count`` ``Axes``.
    """
    require_matplotlib()
    from matplotlib.axes import Axes

    if ax is None:
        ncols = min(count, ncols or count)
        nrows = -(-count // ncols)
        fig = new_figure(figsize)
        grid = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        for extra in grid[count:]:
            extra.set_axis_off()
        return fig, grid[:count]
    if isinstance(ax, Axes):
        axes = [ax]
    elif isinstance(ax, Sequence) or hasattr(ax, "ravel"):
        axes = list(ax.ravel()) if hasattr(ax, "ravel") else list(ax)
    else:
        raise TypeError(f"ax must be a matplotlib Axes, a sequence of Axes or None, got {ax!r}")
    if len(axes) != count or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(
            f"ax must be {'one Axes' if count == 1 else f'{count} Axes (one per panel)'}, "
            f"got {len(axes)} item(s): {ax!r}"
        )
    return axes[0].figure, axes


def finish(fig: Any, out: str | os.PathLike | None) -> Any:
    """Save ``fig`` as a PNG at ``out`` (dpi 100) when given; return ``fig``."""
    if out is None:
        return fig
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"out must be a path (str or os.PathLike) or None, got {type_name(out)}")
    path = os.fspath(out)
    if not path.lower().endswith(".png"):
        raise ValueError(f"out must name a .png file, got {path!r}")
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        raise ValueError(f"out: the folder {directory!r} does not exist")
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return fig


def image_array(image: torch.Tensor, name: str = "image") -> Any:
    """A ``(C, H, W)`` or ``(H, W)`` tensor as an ``(H, W[, 3])`` array in ``[0, 1]`` for imshow.

    One or three channels; the values are min-max scaled (a constant image becomes zeros).
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type_name(image)}")
    if image.dim() == 3 and image.shape[0] in (1, 3):
        array = image.detach().float().cpu().permute(1, 2, 0)  # (H, W, C)
        array = array[..., 0] if array.shape[-1] == 1 else array
    elif image.dim() == 2:
        array = image.detach().float().cpu()
    else:
        raise ValueError(
            f"{name} must be (C, H, W) with C = 1 or 3, or (H, W); got shape {tuple(image.shape)}"
        )
    low, high = array.min(), array.max()
    scaled = (array - low) / (high - low) if high > low else torch.zeros_like(array)
    return scaled.numpy()


def mosaic(tiles: torch.Tensor, ncols: int, fill: float) -> torch.Tensor:
    """``(n, h, w[, c])`` tiles as one ``(rows (h + 1) - 1, ncols (w + 1) - 1[, c])`` image."""
    count, h, w = tiles.shape[:3]
    rows = -(-count // ncols)
    out = torch.full((rows * (h + 1) - 1, ncols * (w + 1) - 1, *tiles.shape[3:]), fill)
    for index in range(count):
        r, c = divmod(index, ncols)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tiles[index]
    return out
