"""Position pictures: the sinusoid table, the binary counter, ViT's position similarity.

The patch-embedding components (ViT Figure 7, left) are in :mod:`attnzoo.viz.vit`.

The numbers behind each picture need only torch; the ``plot_*`` functions import matplotlib
when they run. Numbers are computed in float64 and returned in the input's floating dtype.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from attnzoo._checks import check_finite, check_ndim, check_positive_int, type_name
from attnzoo.positional.sinusoidal import sinusoid_table
from attnzoo.viz._mpl import axes_for, finish, mosaic
from attnzoo.viz.maps import grid_shape

__all__ = [
    "binary_counter",
    "plot_binary_counter",
    "plot_position_similarity",
    "plot_sinusoidal",
    "position_embedding_similarity",
    "sinusoid_heatmap",
]

PathLike = str | os.PathLike | None


def sinusoid_heatmap(length: int = 60, dim: int = 32, *, base: float = 10000.0) -> torch.Tensor:
    """The sinusoidal encoding table of positions ``0 .. length - 1`` (the heat map's numbers).

    Exactly :func:`attnzoo.positional.sinusoidal.sinusoid_table` (Vaswani et al. 2017):
    ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Args:
        length: Number of positions (rows).
        dim: Encoding width ``d`` (columns).
        base: Wavelength base.

    Returns:
        ``(length, dim)`` float64 table.

    Shape:
        - output: ``(length, dim)``

    Example:
        >>> sinusoid_heatmap(2, 4).round(decimals=2)
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8400, 0.5400, 0.0100, 1.0000]], dtype=torch.float64)
    """
    length = check_positive_int("length", length)
    dim = check_positive_int("dim", dim)
    base = check_finite("base", base, positive=True)
    return sinusoid_table(torch.arange(length), dim, base)


def binary_counter(n: int = 8, bits: int | None = None, *, msb_first: bool = True) -> torch.Tensor:
    """The binary representations of ``0 .. n - 1``, one row per number.

    The article's intuition for the sinusoidal encoding: the lowest bit alternates every number,
    each higher bit half as often, just as later sinusoid columns oscillate more slowly.

    Args:
        n: How many numbers (``0 .. n - 1``).
        bits: Columns; default the fewest that hold ``n - 1`` (at least 1).
        msb_first: Most significant bit in column 0 (as numbers are written); False puts the
            least significant bit first, fastest to slowest like the sinusoid columns.

    Returns:
        ``(n, bits)`` int64 tensor of zeros and ones.

    Shape:
        - output: ``(n, bits)``

    Example:
        >>> binary_counter(4)
        tensor([[0, 0],
                [0, 1],
                [1, 0],
                [1, 1]])
    """
    n = check_positive_int("n", n)
    needed = max(1, (n - 1).bit_length())
    bits = needed if bits is None else check_positive_int("bits", bits)
    if bits < needed:
        raise ValueError(f"bits must be >= {needed} to write {n - 1} in binary, got {bits}")
    powers = torch.arange(bits - 1, -1, -1) if msb_first else torch.arange(bits)
    return (torch.arange(n).unsqueeze(-1) >> powers) & 1


def _columns(columns: Sequence[int], dim: int) -> list[int]:
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise TypeError(f"columns must be a sequence of ints, got {type_name(columns)}")
    for column in columns:
        check_positive_int("columns entries", column, minimum=0)
        if column >= dim:
            raise ValueError(f"columns entries must be < dim = {dim}, got {column}")
    return list(columns)


def _draw_table(axis: Any, table: torch.Tensor) -> Any:
    image = axis.imshow(table.float().numpy(), cmap="Blues", aspect="auto", vmin=-1, vmax=1)
    axis.set_xlabel("column (encoding dimension)")
    axis.set_ylabel("row (position)")
    return image


def plot_sinusoidal(
    length: int = 60,
    dim: int = 32,
    *,
    base: float = 10000.0,
    columns: Sequence[int] = (6, 7, 8, 9),
    title: str | None = None,
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Heat map of the sinusoidal table (position x dimension), and curves of a few columns.

    The d2l picture: columns further right oscillate more slowly, like the higher bits of
    :func:`binary_counter`.

    Args:
        length: Positions drawn.
        dim: Encoding width.
        base: Wavelength base.
        columns: Columns drawn as curves against the position; ``()`` draws the heat map only.
        title: Figure title.
        ax: With ``columns``, two Axes (curves, heat map); without, one Axes. Default new.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - drawn table: ``(length, dim)``

    Example:
        >>> fig = plot_sinusoidal(10, 8, columns=(2, 3))
        >>> len(fig.axes[0].lines)
        2
    """
    table = sinusoid_heatmap(length, dim, base=base)
    columns = _columns(columns, dim)
    count = 2 if columns else 1
    fig, axes = axes_for(ax, count, figsize=(4.6 * count, 3.6))
    if columns:
        positions = torch.arange(length).numpy()
        for column in columns:
            axes[0].plot(positions, table[:, column].numpy(), label=f"col {column}")
        axes[0].set_xlabel("row (position)")
        axes[0].legend(fontsize="small", loc="lower left")
    image = _draw_table(axes[-1], table)
    fig.colorbar(image, ax=axes[-1], shrink=0.8)
    if title:
        fig.suptitle(title)
    return finish(fig, out)


def plot_binary_counter(
    n: int = 8,
    *,
    bits: int | None = None,
    sinusoid: bool = True,
    length: int = 60,
    dim: int = 32,
    title: str | None = None,
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """The bits of ``0 .. n - 1`` as a heat map, beside the sinusoid heat map (the article's pair).

    Bit columns are drawn least significant first, so the alternation slows from left to right
    as the sinusoid columns do; each cell shows its digit.

    Args:
        n: Numbers ``0 .. n - 1``.
        bits: Bit columns (default: the fewest that hold ``n - 1``).
        sinusoid: Also draw :func:`plot_sinusoidal`'s heat map of ``(length, dim)`` beside it.
        length: Positions of the sinusoid heat map.
        dim: Width of the sinusoid heat map.
        title: Figure title.
        ax: Two Axes with ``sinusoid`` (bits, sinusoid), else one. Default new.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - drawn bits: ``(n, bits)``

    Example:
        >>> fig = plot_binary_counter(4, sinusoid=False)
        >>> fig.axes[0].get_ylabel()
        'number'
    """
    counter = binary_counter(n, bits, msb_first=False)
    if sinusoid:
        table = sinusoid_heatmap(length, dim)
    fig, axes = axes_for(ax, 2 if sinusoid else 1, figsize=(8.4 if sinusoid else 3.4, 3.8))
    axis = axes[0]
    axis.imshow(counter.numpy(), cmap="Blues", aspect="auto", vmin=-0.2, vmax=1.2)
    rows, cols = counter.shape
    if rows * cols <= 400:
        for r in range(rows):
            for c in range(cols):
                bit = int(counter[r, c])
                colour = "white" if bit else "black"
                axis.text(c, r, str(bit), ha="center", va="center", color=colour)
    axis.set_xticks(range(cols), [f"$2^{c}$" for c in range(cols)])
    axis.set_yticks(range(rows) if rows <= 32 else [])
    axis.set_xlabel("bit (least significant first)")
    axis.set_ylabel("number")
    if sinusoid:
        image = _draw_table(axes[1], table)
        fig.colorbar(image, ax=axes[1], shrink=0.8)
    if title:
        fig.suptitle(title)
    return finish(fig, out)


def position_embedding_similarity(
    pos_embed: torch.Tensor, *, grid_size: int | Sequence[int], num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding to every other's (ViT Figure 7).

    Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, https://arxiv.org/abs/2010.11929,
    Figure 7 (centre): a learned 1-D table that has learned the 2-D layout is most similar to
    itself, then to its row and column. Prefix rows (class token) are dropped; a zero embedding
    has similarity 0 to everything.

    Args:
        pos_embed: ``(N, D)`` or ``(1, N, D)`` position embeddings, ``N = prefix + H * W``
            (e.g. ``model.pos_embed``).
        grid_size: Patch grid ``(H, W)``, or ``g`` for ``(g, g)``.
        num_prefix_tokens: Leading non-patch rows.

    Returns:
        ``(H, W, H, W)``: ``sim[i, j]`` is the ``(H, W)`` map of patch ``(i, j)``.

    Shape:
        - pos_embed: ``(N, D)`` or ``(1, N, D)`` -> ``(H, W, H, W)``

    Example:
        >>> sim = position_embedding_similarity(torch.eye(4), grid_size=2)
        >>> sim.shape, float(sim[0, 1, 0, 1])
        (torch.Size([2, 2, 2, 2]), 1.0)
    """
    table = check_ndim("pos_embed", pos_embed, (2, 3), "(N, D) or (1, N, D)").detach()
    if table.dim() == 3:
        if table.shape[0] != 1:
            raise ValueError(f"pos_embed must be (1, N, D) when 3-D, got {tuple(table.shape)}")
        table = table[0]
    if not table.is_floating_point():
        raise TypeError(f"pos_embed must be a floating tensor, got dtype {table.dtype}")
    height, width = grid_shape(grid_size)
    prefix = check_positive_int("num_prefix_tokens", num_prefix_tokens, minimum=0)
    if table.shape[0] != prefix + height * width:
        raise ValueError(
            f"pos_embed must have N = num_prefix_tokens + H * W = {prefix} + {height} * {width}"
            f" = {prefix + height * width} rows, got {table.shape[0]}"
        )
    unit = torch.nn.functional.normalize(table[prefix:].to(torch.float64), dim=-1)  # (P, D)
    sim = unit @ unit.T  # (P, P)
    return sim.reshape(height, width, height, width).to(table.dtype)  # (H, W, H, W)


def plot_position_similarity(
    similarity: torch.Tensor,
    *,
    title: str | None = "Position embedding similarity",
    cmap: str = "viridis",
    vmin: float | None = None,
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """The ``H x W`` grid of small ``H x W`` similarity maps (ViT Figure 7, centre).

    Tile ``(i, j)`` shows the cosine similarity of patch ``(i, j)``'s embedding to every patch;
    tiles are separated by white lines. The colours span ``[vmin, 1]``: by default from the
    smallest similarity present (fixed sine-cosine tables stay well above -1), -1 if given.

    Args:
        similarity: ``(H, W, H, W)`` from :func:`position_embedding_similarity`.
        title: Axes title.
        cmap: matplotlib colour map.
        vmin: Similarity at the bottom of the colour map (default: the smallest present).
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - similarity: ``(H, W, H, W)``

    Example:
        >>> fig = plot_position_similarity(torch.ones(2, 2, 2, 2))
        >>> fig.axes[0].get_xlabel()
        'input patch column'
    """
    sim = check_ndim("similarity", similarity, (4,), "(H, W, H, W)").detach().float().cpu()
    height, width = sim.shape[:2]
    if tuple(sim.shape[2:]) != (height, width):
        raise ValueError(f"similarity must be (H, W, H, W), got {tuple(sim.shape)}")
    tiles = sim.reshape(height * width, height, width)  # (H * W, H, W)
    image_tiles = mosaic(tiles, width, float("nan"))
    fig, (axis,) = axes_for(ax, 1, figsize=(4.8, 4.2))
    low = float(sim.min()) if vmin is None else check_finite("vmin", vmin)
    import matplotlib

    colours = matplotlib.colormaps.get_cmap(cmap).with_extremes(bad="white")
    image = axis.imshow(
        image_tiles.numpy(), cmap=colours, vmin=min(low, 0.999), vmax=1.0, interpolation="nearest"
    )
    axis.set_xticks([c * (width + 1) + (width - 1) / 2 for c in range(width)], range(1, width + 1))
    axis.set_yticks(
        [r * (height + 1) + (height - 1) / 2 for r in range(height)], range(1, height + 1)
    )
    axis.set_xlabel("input patch column")
    axis.set_ylabel("input patch row")
    fig.colorbar(image, ax=axis, shrink=0.8, label="cosine similarity")
    if title:
        axis.set_title(title)
    return finish(fig, out)
