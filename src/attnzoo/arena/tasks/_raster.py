"""Raster primitives of the Pathfinder generator in numpy: what the original did with PIL and cv2.

- :func:`fine_line`: Pillow's ``ImageDraw.line`` (a Bresenham line with both end pixels for a
  width of 1; for wider pens, the pixels within ``width / 2`` of the segment, an approximation of
  Pillow's wide-line polygon with the same ink on average).
- :func:`lanczos_weights` and :func:`resample`: Pillow's Lanczos-3 resampling of 8-bit images
  (``scipy.misc.imresize(..., interp="lanczos")`` went through it): two separable passes,
  horizontal first, each rounded to an integer and clipped to 0-255, with Pillow's 22-bit fixed
  point weights. It reproduces Pillow's output bit for bit.
- :func:`dilate` and :func:`dilate_bool`: ``cv2.dilate`` (a maximum over a structuring element,
  pixels outside the image ignored).
- :func:`bytescale`: ``scipy.misc.bytescale`` (min -> 0, max -> 255), as ``imsave`` applied it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "bytescale",
    "dilate",
    "dilate_bool",
    "disk_offsets",
    "fine_line",
    "flip",
    "lanczos_weights",
    "paste_max",
    "resample",
    "translate",
    "window",
]

_PRECISION = 22  # Pillow's fixed-point bits for 8-bit resampling (32 - 8 - 2)
_HALF = 1 << (_PRECISION - 1)


def lanczos_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` int64 fixed-point Lanczos-3 weights of Pillow's 8-bit resampling.

    Example:
        >>> w = lanczos_weights(64, 32)
        >>> w.shape, abs(int(w[10].sum()) - (1 << 22)) <= 4
        ((32, 64), True)
    """
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 3.0 * stretch
    weights = np.zeros((n_out, n_in))
    for out in range(n_out):
        centre = (out + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        t = (np.arange(lo, hi) - centre + 0.5) / stretch
        w = np.sinc(t) * np.sinc(t / 3) * ((t >= -3.0) & (t < 3.0))
        if w.sum() != 0:
            weights[out, lo:hi] = w / w.sum()
    fixed = weights * (1 << _PRECISION)
    return np.where(fixed >= 0, np.floor(fixed + 0.5), np.ceil(fixed - 0.5)).astype(np.int64)


def resample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pillow's two-pass 8-bit resampling of ``image`` (0-255): ``rows @ image @ cols.T``.

    Args:
        image: ``(h, w)`` integer values 0-255.
        rows: ``(h_out, h)`` weights of :func:`lanczos_weights` (or rows of them).
        cols: ``(w_out, w)`` weights.

    Returns:
        ``(h_out, w_out)`` int64 values 0-255.
    """
    temp = np.clip((image.astype(np.int64) @ cols.T + _HALF) >> _PRECISION, 0, 255)
    return np.clip((rows @ temp + _HALF) >> _PRECISION, 0, 255)


def fine_line(size: int, centre: int, head: tuple[int, int], width: int) -> np.ndarray:
    """``(size, size)`` int64 canvas, 255 on a line from ``(centre, centre)`` to ``head`` (y, x).

    Example:
        >>> fine_line(5, 2, (4, 3), 1)[2:, 2:]
        array([[255,   0,   0],
               [  0, 255,   0],
               [  0, 255,   0]])
    """
    canvas = np.zeros((size, size), dtype=np.int64)
    y, x = centre, centre
    dy, dx = abs(head[0] - y), abs(head[1] - x)
    sy, sx = (1 if head[0] >= y else -1), (1 if head[1] >= x else -1)
    if width <= 1:  # Pillow's Bresenham with both end pixels; it steps along y from 45 degrees
        steep = dy >= dx
        major, minor = (dy, dx) if steep else (dx, dy)
        error = 2 * minor - major
        for _ in range(major + 1):
            canvas[y, x] = 255
            if error >= 0:
                if steep:
                    x += sx
                else:
                    y += sy
                error -= 2 * major
            error += 2 * minor
            if steep:
                y += sy
            else:
                x += sx
        return canvas
    length = math.hypot(dy, dx) or 1.0
    uy, ux = (head[0] - centre) / length, (head[1] - centre) / length
    gy, gx = np.mgrid[0:size, 0:size] - centre
    along = gy * uy + gx * ux
    across = gx * uy - gy * ux - 0.5 * (width % 2 == 0)  # an even pen sits half a pixel aside
    canvas[(along >= 0) & (along <= length) & (np.abs(across) <= width / 2)] = 255
    return canvas


def disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(dy, dx)`` with ``dy^2 + dx^2 <= radius^2`` (``generate_dilation_struct``)."""
    r = int(radius)
    gy, gx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = gy**2 + gx**2 <= radius**2
    return gy[keep], gx[keep]


def dilate(image: np.ndarray, dys: np.ndarray, dxs: np.ndarray) -> np.ndarray:
    """``cv2.dilate`` of a non-negative image: ``out[p] = max_d image[p + d]`` (outside: 0)."""
    r = int(max(np.abs(dys).max(), np.abs(dxs).max()))
    h, w = image.shape
    padded = np.pad(image, r)
    out = np.zeros_like(image)
    for dy, dx in zip(dys.tolist(), dxs.tolist(), strict=True):
        np.maximum(out, padded[r + dy : r + dy + h, r + dx : r + dx + w], out=out)
    return out


def dilate_bool(occupied: np.ndarray, dys: np.ndarray, dxs: np.ndarray) -> np.ndarray:
    """Boolean ``cv2.dilate``: ``out[p] = any_d occupied[p + d]`` (outside the image: False)."""
    if dys.size == 0:
        return np.zeros_like(occupied)
    r = int(max(np.abs(dys).max(), np.abs(dxs).max()))
    h, w = occupied.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    padded[r : r + h, r : r + w] = occupied
    out = np.zeros_like(occupied)
    for dy, dx in zip(dys.tolist(), dxs.tolist(), strict=True):
        out |= padded[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def bytescale(image: np.ndarray) -> np.ndarray:
    """``scipy.misc.bytescale``: min -> 0, max -> 255, rounded half up, as ``uint8``.

    Example:
        >>> bytescale(np.array([[0.0, 0.5], [1.0, 2.0]])).tolist()
        [[0, 64], [128, 255]]
    """
    low, high = float(image.min()), float(image.max())
    scale = 255.0 / ((high - low) or 1.0)
    return (np.clip((image - low) * scale, 0, 255) + 0.5).astype(np.uint8)


def translate(point: tuple[int, int], angle: float, distance: float) -> tuple[int, int]:
    """``translate_coord``: ``(ceil(y + d sin a), ceil(x + d cos a))``, angles in radians."""
    return (
        math.ceil(point[0] + float(distance) * math.sin(angle)),
        math.ceil(point[1] + float(distance) * math.cos(angle)),
    )


def flip(angle: float) -> float:
    """``flip_by_pi``: the opposite direction, kept in ``[-pi, pi)``."""
    return angle + math.pi if angle < 0 else angle - math.pi


def window(shape: tuple[int, ...], reach: int, centre: tuple[int, int]) -> Any:
    """Matching slices ``((rows, cols) of the frame, (rows, cols) of the patch)``, or None.

    The patch is ``(2 reach + 1)`` square, centred on ``centre`` and clipped at the frame's edges.
    """
    y0, x0 = centre[0] - reach, centre[1] - reach
    y1, x1 = centre[0] + reach + 1, centre[1] + reach + 1
    ty0, tx0, ty1, tx1 = max(y0, 0), max(x0, 0), min(y1, shape[0]), min(x1, shape[1])
    if ty0 >= ty1 or tx0 >= tx1:
        return None
    return (
        (slice(ty0, ty1), slice(tx0, tx1)),
        (slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0)),
    )


def paste_max(target: np.ndarray, patch: np.ndarray, centre: tuple[int, int]) -> None:
    """``target = max(target, patch)`` in place, ``patch`` centred on ``centre`` and clipped."""
    slices = window(target.shape, patch.shape[0] // 2, centre)
    if slices is not None:
        (ty, tx), (py, px) = slices
        np.maximum(target[ty, tx], patch[py, px], out=target[ty, tx])
