"""The Pathfinder generator of Linsley et al. (2018), re-implemented with numpy (no PIL or cv2).

:class:`SnakeRenderer` follows ``snakes2.from_wrapper`` and ``snakes.py`` of
https://github.com/drewlinsley/pathfinder step by step (``two_snakes``, ``seed_snake``,
``extend_snake``, ``make_many_snakes``, ``draw_circle``), with the raster work of
:mod:`attnzoo.arena.tasks._raster`. A dash's shape depends on its angle only through the integer
offset of its head on the fine canvas, so dashes, halos and seeding kernels are computed once per
offset and cached; candidate heads around a pivot are fixed offsets per margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnzoo.arena.tasks import _raster as raster

__all__ = ["Render", "SnakeParams", "SnakeRenderer"]


@dataclass(frozen=True)
class SnakeParams:
    """Generator settings, named after ``snakes2_wrapper.Args``.

    Args:
        size: Image height and width (``window_size``).
        padding: Border band marked occupied before seeding (at least 1).
        antialias: ``antialias_scale``: dashes and markers are drawn this much finer.
        paddle_length: Dash length in pixels.
        thickness: Dash width; ``thickness * antialias`` must be an integer.
        margins: ``paddle_margin_list``; one is drawn per image.
        contour_length: Dashes per target snake (at least 2).
        distractor_length: Dashes per distractor snake.
        num_distractors: Distractor snakes attempted per image.
        continuity: Smoothness of the snakes (higher is straighter).
        seed_distance: Distance between the starting tips of the two target snakes.
        marker_radius: Radius of the two endpoint disks.
        snake_contrasts: ``snake_contrast_list``: per-snake intensities.
        paddle_contrasts: ``paddle_contrast_list``: per-dash factors of the target snakes.
        max_paddle_retrial: Extra tries per dash (``max_paddle_retrial``).
        max_distractor_retrial: Extra tries per distractor (``max_distractor_contour_retrial``).
    """

    size: int
    padding: int
    antialias: int
    paddle_length: int
    thickness: float
    margins: tuple[int, ...]
    contour_length: int
    distractor_length: int
    num_distractors: int
    continuity: float
    seed_distance: int
    marker_radius: float
    snake_contrasts: tuple[float, ...]
    paddle_contrasts: tuple[float, ...]
    max_paddle_retrial: int = 2
    max_distractor_retrial: int = 4


@dataclass
class Render:
    """One generated image and what made it.

    Args:
        image: ``(H, W)`` uint8, byte-scaled (min -> 0, max -> 255) as the original saved it.
        label: 1 if both markers sit on the same target snake.
        markers: ``(y, x)`` of the origin marker, then of the terminal marker.
        snakes: ``(2, H, W)`` float32 intensities of the two target snakes (before scaling).
        distractors: ``(H, W)`` float32 intensities of the distractor snakes.
        marker_layer: ``(H, W)`` float32 intensities of the two marker disks.
        origins: Starting tips of the two target snakes, ``seed_distance`` apart.
        terminals: Far tips of the two target snakes.
    """

    image: np.ndarray
    label: int
    markers: tuple[tuple[int, int], tuple[int, int]]
    snakes: np.ndarray
    distractors: np.ndarray
    marker_layer: np.ndarray
    origins: tuple[tuple[int, int], tuple[int, int]]
    terminals: tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class _Dash:
    line: np.ndarray  # (2 reach + 1)^2 intensities in [0, 1]
    halo: np.ndarray  # its occupancy (the fine line dilated by the margin, reduced)
    kernel: tuple[np.ndarray, np.ndarray]  # seeding kernel offsets (dy, dx)


@dataclass(frozen=True)
class _Steps:
    heads: tuple[np.ndarray, np.ndarray]  # (K,) candidate head offsets around a pivot
    angles: np.ndarray  # (K,) their directions from the pivot
    gather: np.ndarray  # (K, E) flat offsets of each candidate's margin disk in the mask
    dashes: tuple[_Dash, ...]  # the dash drawn from each candidate back to the pivot
    weights: dict  # continuity weights per previous angle


class SnakeRenderer:
    """Draws Pathfinder images for one :class:`SnakeParams` (caching its dash shapes).

    Args:
        params: The generator settings.
    """

    def __init__(self, params: SnakeParams) -> None:
        fine_width = params.thickness * params.antialias
        if round(fine_width) != fine_width:
            raise ValueError(
                f"thickness * antialias must be an integer (the original's 'thickness does not "
                f"break even'), got {params.thickness} * {params.antialias}"
            )
        if params.padding < 1 or params.contour_length < 2:
            raise ValueError(f"padding and contour_length must be >= 1 and >= 2, got {params}")
        self.p = params
        self.width = round(fine_width)
        self._dashes: dict[tuple[int, int, int], _Dash] = {}
        self._steps: dict[int, _Steps] = {}
        self._marker_weights = raster.lanczos_weights(params.size * params.antialias, params.size)
        # The mask lives inside a border of ones wide enough for every read around a pivot:
        # candidates outside the image then weigh 0, and inside it the padding band (ones)
        # already dominates any read past the edge, so results equal cv2's ignored border.
        reach = params.paddle_length + max(params.margins)
        self.border = 3 * reach + 2 * max(params.margins) + 2
        self.stride = params.size + 2 * self.border

    # ------------------------------------------------------------------ shapes (cached)
    def dash(self, margin: int, angle: float) -> _Dash:
        """The dash drawn from a point along ``angle`` (``draw_line_n_mask``), cached."""
        aa, length = self.p.antialias, self.p.paddle_length
        reach = length + math.ceil(self.p.thickness) + margin
        centre = reach * aa
        head = raster.translate((centre, centre), angle, length * aa)
        key = (margin, head[0] - centre, head[1] - centre)
        cached = self._dashes.get(key)
        if cached is not None:
            return cached
        fine = raster.fine_line(2 * centre + 1, centre, head, self.width)
        weights = raster.lanczos_weights(2 * centre + 1, 2 * reach + 1)
        line = raster.resample(fine, weights, weights).astype(np.float32) / 255.0
        halo = raster.resample(
            raster.dilate(fine, *raster.disk_offsets(margin * aa)), weights, weights
        )
        halo = halo.astype(np.float32) / 255.0
        # seeding kernel: the halo centred at (L + m + 1, L + m + 1) of a (2 (L + m) + 1)^2
        # struct, kept where it is exactly 1 (the original's astype(uint8)), for cv2's centre
        # anchor
        half = length + margin
        struct = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
        raster.paste_max(struct, halo, (half + 1, half + 1))
        ky, kx = np.nonzero(struct >= 1.0)
        dash = _Dash(line, halo, (ky - half, kx - half))
        self._dashes[key] = dash
        return dash

    def steps(self, margin: int) -> _Steps:
        """Candidate heads around a pivot (``get_coords_cmf``) for ``margin``, cached."""
        cached = self._steps.get(margin)
        if cached is not None:
            return cached
        radius = self.p.paddle_length + margin
        rad = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
        offsets = np.stack([np.floor(radius * np.sin(rad)), np.floor(radius * np.cos(rad))], 1)
        offsets = np.unique(offsets.astype(np.int64), axis=0)  # (K, 2), sorted as the original
        oy, ox = offsets[:, 0], offsets[:, 1]
        angles = np.arctan2(oy, ox).astype(np.float64)
        dys, dxs = raster.disk_offsets(margin)
        gather = (oy[:, None] + dys[None, :]) * self.stride + ox[:, None] + dxs[None, :]  # (K, E)
        dashes = tuple(self.dash(margin, raster.flip(float(a))) for a in angles)
        cached = _Steps((oy, ox), angles, gather, dashes, {})
        self._steps[margin] = cached
        return cached

    def _continuity(self, steps: _Steps, last_angle: float) -> np.ndarray:
        """``max(cos(min(delta * continuity, pi / 2)), 0)^2`` per candidate, cached."""
        weights = steps.weights.get(last_angle)
        if weights is None:
            delta = np.abs(steps.angles - last_angle)
            delta = np.minimum(np.minimum(delta, 2 * np.pi - delta) * self.p.continuity, np.pi / 2)
            weights = np.maximum(np.cos(delta), 0.0) ** 2
            steps.weights[last_angle] = weights
        return weights

    def marker(self, point: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
        """``draw_circle``: the marker disk at ``point`` and the window of the image it covers."""
        size, aa, radius = self.p.size, self.p.antialias, self.p.marker_radius
        cy, cx, r = point[0] * aa, point[1] * aa, int(radius * aa)
        fy = np.arange(max(cy - r, 0), min(cy + r + 1, size * aa))
        fx = np.arange(max(cx - r, 0), min(cx + r + 1, size * aa))
        disk = ((fy[:, None] - cy) ** 2 + (fx[None, :] - cx) ** 2 <= (radius * aa) ** 2) * 255
        reach = math.ceil(radius) + 4  # coarse pixels the Lanczos support can touch
        oy = slice(max(point[0] - reach, 0), min(point[0] + reach + 1, size))
        ox = slice(max(point[1] - reach, 0), min(point[1] + reach + 1, size))
        if disk.size == 0:
            return np.zeros((oy.stop - oy.start, ox.stop - ox.start), np.float32), (oy, ox)
        rows, cols = self._marker_weights[oy][:, fy], self._marker_weights[ox][:, fx]
        return raster.resample(disk, rows, cols).astype(np.float32) / 255.0, (oy, ox)

    # ------------------------------------------------------------------ one image
    def render(self, rng: np.random.Generator, label: int) -> Render:
        """One image with the given label (one iteration of ``snakes2.from_wrapper``)."""
        p = self.p
        margin = self._pick(rng, p.margins)
        for _ in range(100_000):  # the original retries the pair of target snakes until it fits
            pair = self._two_snakes(rng, margin)
            if pair is not None:
                break
        else:
            raise RuntimeError(f"no pair of target snakes fits these settings: {p}")
        snakes, mask, origins, terminals = pair
        distractors = np.zeros((p.size, p.size), dtype=np.float32)
        for _ in range(p.num_distractors):
            for _ in range(p.max_distractor_retrial + 1):
                made = self._distractor(rng, mask, margin, distractors)
                if made is not None:
                    mask, distractors = made
                    break
        first = int(rng.integers(2))
        points = (origins[first], terminals[first if label == 1 else 1 - first])
        marker_layer = np.zeros((p.size, p.size), dtype=np.float32)
        for point in points:
            disk, (oy, ox) = self.marker(point)
            np.maximum(marker_layer[oy, ox], disk, out=marker_layer[oy, ox])
        final = np.maximum(np.maximum(snakes[0], snakes[1]), np.maximum(distractors, marker_layer))
        return Render(
            image=raster.bytescale(final),
            label=int(label),
            markers=points,
            snakes=snakes,
            distractors=distractors,
            marker_layer=marker_layer,
            origins=origins,
            terminals=terminals,
        )

    def _blank_mask(self) -> np.ndarray:
        """The bordered mask: ones outside the image and on its ``padding`` band, else zeros."""
        p, b = self.p, self.border
        padded = np.ones((self.stride, self.stride), dtype=np.float32)
        padded[b + p.padding : b + p.size - p.padding, b + p.padding : b + p.size - p.padding] = 0
        return padded

    def _inner(self, padded: np.ndarray) -> np.ndarray:
        b = self.border
        return padded[b : b + self.p.size, b : b + self.p.size]

    def _in_frame(self, point: tuple[int, int]) -> bool:
        return 0 <= point[0] < self.p.size and 0 <= point[1] < self.p.size

    def _seed(
        self, rng: np.random.Generator, mask: np.ndarray, margin: int, band: int, stop: float | None
    ) -> Any:
        """``seed_snake``: a first dash on free space, as ``(tail, pivot, angle, dash)`` or None."""
        length = self.p.paddle_length
        for _ in range(self.p.max_paddle_retrial + 1):
            angle = int(rng.integers(-180, 180)) * math.pi / 180
            reverse = angle + math.pi if angle + math.pi < math.pi else angle - math.pi
            dash = self.dash(margin, angle)
            occupied = mask > 0.3  # ceil(mask - 0.3) != 0
            occupied[:band] = occupied[-band:] = True
            occupied[:, :band] = occupied[:, -band:] = True
            if stop is not None and np.count_nonzero(mask <= 0.3) < stop * mask.size:
                return None
            free = np.flatnonzero(~raster.dilate_bool(occupied, *dash.kernel))
            if free.size == 0:
                return None
            tail = divmod(int(free[int(rng.integers(free.size))]), self.p.size)
            head = raster.translate(tail, angle, length)
            pivot = raster.translate(head, reverse, length + margin)
            if self._in_frame(head) and self._in_frame(pivot):
                return tail, pivot, angle, dash
        return None

    def _extend(
        self,
        rng: np.random.Generator,
        padded: np.ndarray,
        state: Any,
        margin: int,
        contrast: float,
        image: np.ndarray,
    ) -> Any:
        """``extend_snake``: ``(new state, new head)``, or None at a dead end or a crossing."""
        p, b = self.p, self.border
        last_pivot, last_angle, last_halo = state
        pivot = raster.translate(last_pivot, last_angle, p.paddle_length + 2 * margin)
        steps = self.steps(margin)
        base = (b + pivot[0]) * self.stride + b + pivot[1]
        dilated = padded.ravel()[base + steps.gather].max(1)  # (K,) the mask dilated by disk(m)
        weights = (1.0 - dilated) * self._continuity(steps, last_angle)
        total = float(weights.sum())
        if total < 1e-4:
            return None
        cmf = np.cumsum(weights / total)
        mask = self._inner(padded)
        for _ in range(p.max_paddle_retrial + 1):
            k = int(np.searchsorted(cmf, rng.random(), side="right"))
            if k == cmf.size:  # np.argmax of an all-False row (rounding): the first candidate
                k = self._first_inside(steps, pivot)
            head = (pivot[0] + int(steps.heads[0][k]), pivot[1] + int(steps.heads[1][k]))
            dash = steps.dashes[k]
            (ty, tx), (py, px) = raster.window(mask.shape, dash.halo.shape[0] // 2, head)
            if float((mask[ty, tx] + dash.halo[py, px]).max()) < 1.8:
                raster.paste_max(image, dash.line * contrast, head)
                raster.paste_max(mask, *last_halo)
                return (pivot, float(steps.angles[k]), (dash.halo, head)), head
        return None

    def _first_inside(self, steps: _Steps, pivot: tuple[int, int]) -> int:
        """Index of the first candidate head inside the image."""
        hy, hx = steps.heads[0] + pivot[0], steps.heads[1] + pivot[1]
        inside = (hy >= 0) & (hy < self.p.size) & (hx >= 0) & (hx < self.p.size)
        return int(np.flatnonzero(inside)[0])

    def _two_snakes(self, rng: np.random.Generator, margin: int) -> Any:
        """``two_snakes``: both target snakes, or None (the caller starts again)."""
        p = self.p
        doubled = list(p.snake_contrasts) * 2
        mu = (
            [doubled[i] for i in rng.permutation(len(doubled))[:2]] if len(doubled) > 2 else doubled
        )
        padded = self._blank_mask()
        mask = self._inner(padded)
        snakes = np.zeros((2, p.size, p.size), dtype=np.float32)
        seed = self._seed(rng, mask, margin, 2 * p.seed_distance, None)
        if seed is None:
            return None
        tail1, pivot1, angle1, dash1 = seed
        raster.paste_max(
            snakes[0], dash1.line * (self._pick(rng, p.paddle_contrasts) * mu[0]), tail1
        )
        contrast2 = self._pick(rng, p.paddle_contrasts) * mu[1]
        for _ in range(p.max_paddle_retrial + 1):  # the second seed: no occupancy check
            angle2 = int(rng.integers(-180, 180)) * math.pi / 180
            reverse = angle2 + math.pi if angle2 + math.pi < math.pi else angle2 - math.pi
            phi = int(rng.integers(0, 360)) * math.pi / 180
            tail2 = (
                round(tail1[0] + p.seed_distance * math.sin(phi)),
                round(tail1[1] + p.seed_distance * math.cos(phi)),
            )
            head2 = raster.translate(tail2, angle2, p.paddle_length)
            pivot2 = raster.translate(head2, reverse, p.paddle_length + margin)
            if self._in_frame(head2) and self._in_frame(pivot2):
                break
        else:
            return None
        dash2 = self.dash(margin, angle2)
        raster.paste_max(snakes[1], dash2.line * contrast2, tail2)
        states = [(pivot1, angle1, (dash1.halo, tail1)), (pivot2, angle2, (dash2.halo, tail2))]
        terminals: list[Any] = [tail1, tail2]
        for _ in range(p.contour_length - 1):
            contrast = self._pick(rng, p.paddle_contrasts)
            for s in range(2):
                grown = self._extend(rng, padded, states[s], margin, contrast * mu[s], snakes[s])
                if grown is None:
                    return None
                states[s], terminals[s] = grown
        raster.paste_max(mask, *states[1][2])  # as the original: only the second snake's last halo
        return snakes, padded, (tail1, tail2), tuple(terminals)

    @staticmethod
    def _pick(rng: np.random.Generator, values: tuple[Any, ...]) -> Any:
        """A uniform element of ``values`` (no draw when there is only one)."""
        return values[int(rng.integers(len(values)))] if len(values) > 1 else values[0]

    def _distractor(
        self, rng: np.random.Generator, padded: np.ndarray, margin: int, image: np.ndarray
    ) -> Any:
        """``make_snake`` of one distractor on copies: ``(mask, image)`` on success, else None."""
        padded, image = padded.copy(), image.copy()
        mask = self._inner(padded)
        contrast = self._pick(rng, self.p.snake_contrasts)
        seed = self._seed(rng, mask, margin, 1, 0.01)
        if seed is None:
            return None
        tail, pivot, angle, dash = seed
        raster.paste_max(image, dash.line * contrast, tail)
        state = (pivot, angle, (dash.halo, tail))
        for _ in range(self.p.distractor_length - 1):
            grown = self._extend(
                rng, padded, state, margin, self._pick(rng, self.p.snake_contrasts), image
            )
            if grown is None:
                return None
            state = grown[0]
        raster.paste_max(mask, *state[2])
        return padded, image
