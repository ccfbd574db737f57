"""LRA Figure 3: score against speed, bubble area proportional to peak memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from attnzoo.viz._mpl import new_figure

__all__ = ["draw_bubble"]

Point = tuple[str, float, float, float]  # (label, examples/s, average score, peak MB)


def _panel(ax: Any, points: Sequence[Point], title: str, xlabel: str, filled: bool) -> None:
    if not points:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return
    largest = max(p[3] for p in points) or 1.0
    for index, (label, speed, score, memory) in enumerate(points):
        area = 60 + 1400 * (memory / largest)
        colour = f"C{index % 10}"
        ax.scatter(
            [speed],
            [score],
            s=area,
            alpha=0.45 if filled else 1.0,
            facecolors=colour if filled else "none",
            edgecolors=colour,
            linewidths=1.5,
        )
        ax.annotate(label, (speed, score), fontsize=8, ha="center", va="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("average score (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    speeds = [p[1] for p in points]
    if max(speeds) / max(min(speeds), 1e-12) > 30:
        ax.set_xscale("log")
    ax.margins(0.15)


def draw_bubble(
    ours: Sequence[Point],
    published: Sequence[Point],
    out: str | os.PathLike,
    *,
    length: str = "4K",
) -> Any:
    """Two panels, ours (filled) and LRA's published Figure 3 points (hollow); saved to ``out``.

    Args:
        ours: ``(mechanism, examples/s, average score, peak MB)`` of this run, at its longest
            efficiency length.
        published: The same for LRA's nine models (4K, batch 32, TPU v3: Table 2 x Table 1).
        out: PNG path.
        length: The length of our speed and memory measurements, for the axis label.

    Returns:
        The matplotlib Figure.
    """
    fig = new_figure((11.0, 4.6))
    left, right = fig.subplots(1, 2)
    _panel(left, list(ours), f"attnzoo arena (speed and memory at {length})", "examples / s", True)
    _panel(
        right,
        list(published),
        "LRA, published (Tay et al. 2021: 4K, TPU v3)",
        "examples / s (steps/s x 32)",
        False,
    )
    fig.suptitle("Score, speed and memory (bubble area: peak memory), as LRA Figure 3")
    fig.savefig(os.fspath(out), dpi=100)
    return fig
