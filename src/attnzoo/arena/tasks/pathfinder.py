"""Pathfinder: are the two markers joined by one dashed path? LRA's long-range image task.

A numpy re-implementation of the snake generator of Linsley et al. (2018) with the settings LRA
used (see :class:`Pathfinder`), and a reader for LRA's released PNG folders.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.arena.tasks._snakes import Render, SnakeParams, SnakeRenderer
from attnzoo.arena.tasks.base import Task
from attnzoo.registry import ARENA, Paper

__all__ = ["CONTOUR_FOLDERS", "RESOLUTIONS", "Pathfinder", "PathfinderExample"]

# LRA's settings per image size (lra_benchmarks/data/pathfinder.py docstrings over the wrapper's
# and the generator's defaults); "distractor_budget" / distractor_length distractor snakes.
RESOLUTIONS: dict[int, dict[str, Any]] = {
    32: {"padding": 1, "paddle_length": 2, "thickness": 0.5, "margins": (1,), "seed_distance": 7,
         "marker_radius": 1.5, "continuity": 1.0, "snake_contrasts": (2.0,),
         "paddle_contrasts": (0.75,), "distractor_budget": 20},
    64: {"padding": 1, "paddle_length": 5, "thickness": 1.0, "margins": (1,), "seed_distance": 12,
         "marker_radius": 2.5, "continuity": 1.8, "snake_contrasts": (0.8,),
         "paddle_contrasts": (1.0,), "distractor_budget": 22},
    128: {"padding": 1, "paddle_length": 5, "thickness": 1.5, "margins": (2, 3),
          "seed_distance": 20, "marker_radius": 3.0, "continuity": 1.8, "snake_contrasts": (0.9,),
          "paddle_contrasts": (1.0,), "distractor_budget": 35},
    256: {"padding": 22, "paddle_length": 5, "thickness": 2.0, "margins": (3,),
          "seed_distance": 27, "marker_radius": 5.0, "continuity": 1.8, "snake_contrasts": (1.0,),
          "paddle_contrasts": (1.0,), "distractor_budget": 30},
}  # fmt: skip
# The released folders of the three difficulties (LRA's easy / intermediate / hard splits).
CONTOUR_FOLDERS = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
MAX_DUPLICATES = 1000  # duplicates in a row before the stream is declared exhausted

LINSLEY_2018 = Paper(
    title="Learning long-range spatial dependencies with horizontal gated recurrent units",
    authors="Linsley, Kim, Veerabadran, Windolf, Serre",
    year=2018,
    url="https://arxiv.org/abs/1805.08315",
)


@dataclass(frozen=True, eq=False)
class PathfinderExample:
    """One image (read-only ``(H, W)`` uint8) and its label (1: the markers are connected).

    Args:
        image: ``(H, W)`` uint8 pixels.
        label: 1 if the two markers lie on the same path, else 0.
    """

    image: np.ndarray
    label: int

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PathfinderExample):
            return NotImplemented
        return self.label == other.label and np.array_equal(self.image, other.image)

    def __hash__(self) -> int:
        return hash((self.label, self.image.shape, self.image.tobytes()))


def snake_params(resolution: int, contour_length: int) -> SnakeParams:
    """The generator settings LRA used for ``resolution`` and ``contour_length``."""
    table = dict(RESOLUTIONS[resolution])
    budget = table.pop("distractor_budget")
    distractor_length = contour_length // 3
    return SnakeParams(
        size=resolution,
        antialias=2,
        contour_length=contour_length,
        distractor_length=distractor_length,
        num_distractors=budget // distractor_length,
        **table,
    )


def _pair_labels(rng: np.random.Generator) -> Iterator[int]:
    """Labels in shuffled pairs ``(0, 1)`` or ``(1, 0)``: every even prefix is balanced."""
    while True:
        first = int(rng.integers(2))
        yield first
        yield 1 - first


@ARENA.register(
    "pathfinder",
    paper=LINSLEY_2018,
    tags=("lra", "image", "synthetic", "spatial", "classification"),
    complexity="L = 1024 pixels at 32x32 (16384 for Path-X), 2 classes",
)
class Pathfinder(Task):
    """Pathfinder: do the two marker disks sit at the ends of one dashed path?

    The task of Linsley, Kim, Veerabadran, Windolf and Serre, "Learning long-range spatial
    dependencies with horizontal gated recurrent units", 2018, https://arxiv.org/abs/1805.08315
    (generator: https://github.com/drewlinsley/pathfinder, ``snakes2.py``), as used by Tay et
    al., "Long Range Arena", 2021, https://arxiv.org/abs/2011.04006: images flattened row-major
    into ``resolution ** 2`` pixel tokens; LRA's Pathfinder is ``resolution=32`` and Path-X
    ``resolution=128``, both with ``contour_length=14`` ("hard", ``curv_contour_length_14``).

    One image (``snakes2.from_wrapper``): two *target* snakes of ``contour_length`` dashes grow
    from seeds ``seed_distance`` apart near the centre, dash by dash along a smooth random walk
    (``continuity``) that never overlaps occupied space (each dash's halo, ``margin`` wide);
    failures restart the pair. ``num_distractor_snakes`` shorter snakes of ``contour_length // 3``
    dashes follow (skipped when they do not fit). One marker goes on a random target snake's
    starting tip; the other on the far tip of the same snake (label 1) or of the other (label 0).
    The float image is byte-scaled (min -> 0, max -> 255) as ``scipy.misc.imsave`` did, so target
    dashes (contrast 0.75 x 2 = 1.5) peak near 191 and distractors (contrast 2) reach 255 at 32 px.

    Settings (:data:`RESOLUTIONS`, from LRA's ``lra_benchmarks/data/pathfinder.py``): at 32 px
    padding 1, antialias 2, dash length 2, thickness 0.5, margin 1, seed distance 7, marker radius
    1.5, continuity 1.0, snake contrast 2, dash contrast 0.75, ``20 // (contour_length // 3)``
    distractors (5 for the hard split: LRA's docstring formula; the original wrapper computed the
    count once from the baseline length, an ambiguity); 64, 128 and 256 px use their docstrings'
    values (dash length 5, distractors 22, 35 and 30 over the distractor length, ...).
    ``contour_length`` 6, 9 and 14 are the easy, intermediate and hard splits.

    Tokens: pixel values row-major. ``zero_is_padding=True`` (LRA's quirk, the default): the id is
    the pixel value 0-255 and id 0 is padding, so black pixels (about 55-60% of an image) are
    masked out of attention as LRA's ``inputs > 0`` padding mask did; ``vocab_size`` 256.
    ``zero_is_padding=False``: id = pixel + 1, nothing is masked, ``vocab_size`` 257.

    Faithfulness and deviations: numpy only (no PIL, cv2 or scipy). At 32 px the dashes, their
    halos, seeding kernels and markers equal Pillow's drawing and 8-bit Lanczos resampling (the
    ``scipy.misc.imresize`` path of the original) pixel for pixel. The one simplification: dashes
    wider than one fine pixel (64 px and up) use a rectangle pen of the same width instead of
    Pillow's polygon (the same ink on average, placed within half a fine pixel). The original's
    quirks are kept: a snake's newest dash joins the occupancy mask only when the snake grows
    again, and the first target snake's last dash never does, so the other target snake or a
    distractor may touch it (in about 1% of label-0 images the two targets touch). Labels come in
    seeded shuffled pairs (exactly balanced: every even prefix of the stream has as many 0s as 1s)
    instead of the original's independent coin flips; duplicate images are dropped and redrawn;
    numpy's ``Generator`` replaces the global RNG; splits are cut from the stream (train, val,
    then test). Speed, one core: about 9 ms per 32 px hard image (the original: about 0.4 s),
    70 ms at 128 px; 64 px takes about 0.2 s, because its settings (dash length 5, continuity
    1.8) make the pair of target snakes fail about 1,000 times per image, as in the original.
    ``data_dir`` reads LRA's released PNGs instead (:meth:`load_files`).

    Args:
        seed: Seed of the images and labels (and of the shuffle of released files).
        n_train: Training images (LRA: 160,000 = 80% of 200k).
        n_val: Validation images (LRA: 20,000).
        n_test: Test images (LRA: 20,000).
        resolution: Image size: 32 (Pathfinder), 64, 128 (Path-X) or 256.
        contour_length: Dashes per target snake: 6 (easy), 9 (intermediate) or 14 (hard, LRA).
        zero_is_padding: LRA's pixel ids (0 = padding, black pixels masked) or shifted ids.
        pool: Max-pool the image by this factor before tokenising (1: LRA). The arena's quick
            preset uses 2 (16 x 16 = 256 tokens) — not LRA's task, a cheaper stand-in.
        cache_dir: Cache folder of the splits (see :class:`~attnzoo.arena.tasks.base.Task`).
        data_dir: A release folder holding ``curv_contour_length_14/`` (etc.) or such a folder.

    Shape:
        - image: ``(resolution, resolution)`` uint8; tokens ``((resolution / pool) ** 2,)``
        - splits: inputs ``(N, L)`` int64 with ``L <= resolution ** 2``; labels ``(N,)`` in {0, 1}

    Example:
        >>> task = attnzoo.create("pathfinder", seed=0, n_train=4, n_val=2, n_test=2,
        ...                       cache_dir=False)
        >>> example = task.generate(1)[0]
        >>> example.image.shape, example.image.dtype.name, task.max_len, task.vocab_size
        ((32, 32), 'uint8', 1024, 256)
        >>> task.splits()["train"].labels.sum().item()
        2
    """

    name: ClassVar[str] = "pathfinder"
    num_classes: ClassVar[int] = 2

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int = 160_000,
        n_val: int = 20_000,
        n_test: int = 20_000,
        resolution: int = 32,
        contour_length: int = 14,
        zero_is_padding: bool = True,
        pool: int = 1,
        cache_dir: Any = None,
        data_dir: Any = None,
    ) -> None:
        super().__init__(
            seed=seed,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            cache_dir=cache_dir,
            data_dir=data_dir,
        )
        self.resolution = check_choice("resolution", resolution, tuple(RESOLUTIONS))
        self.contour_length = check_choice("contour_length", contour_length, tuple(CONTOUR_FOLDERS))
        if not isinstance(zero_is_padding, bool):
            raise TypeError(f"zero_is_padding must be a bool, got {zero_is_padding!r}")
        self.zero_is_padding = zero_is_padding
        self.pool = check_positive_int("pool", pool)
        if self.resolution % self.pool:
            raise ValueError(f"pool must divide resolution {self.resolution}, got pool={pool}")
        self.params = snake_params(self.resolution, self.contour_length)
        self._renderer: SnakeRenderer | None = None

    @property
    def vocab_size(self) -> int:
        """256 pixel values (0 = padding), or 257 when ids are shifted by one."""
        return 256 if self.zero_is_padding else 257

    @property
    def max_len(self) -> int:
        """``(resolution / pool) ** 2`` pixels."""
        return (self.resolution // self.pool) ** 2

    def options(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "contour_length": self.contour_length,
            "zero_is_padding": self.zero_is_padding,
            "pool": self.pool,
        }

    def _stream(self) -> Iterator[Render]:
        """Distinct renders of this seed, in order (labels in shuffled pairs)."""
        if self._renderer is None:
            self._renderer = SnakeRenderer(self.params)
        images = np.random.default_rng([self.seed, 0])
        labels = _pair_labels(np.random.default_rng([self.seed, 1]))
        seen: set[bytes] = set()
        for label in labels:
            for _ in range(MAX_DUPLICATES):
                render = self._renderer.render(images, label)
                key = hashlib.blake2b(render.image.tobytes(), digest_size=16).digest()
                if key not in seen:
                    break
            else:
                return
            seen.add(key)
            render.image.setflags(write=False)
            yield render

    def renders(self, n: int) -> list[Render]:
        """The first ``n`` images with the generator's internals (snakes, markers, tips)."""
        return list(itertools.islice(self._stream(), check_positive_int("n", n, minimum=0)))

    def generate(self, n: int) -> list[PathfinderExample]:
        """The first ``n`` images of this seed's stream (distinct, deterministic)."""
        n = check_positive_int("n", n, minimum=0)
        return [PathfinderExample(r.image, r.label) for r in itertools.islice(self._stream(), n)]

    def encode(self, example: PathfinderExample) -> list[int]:
        """Pixel ids row-major: the value (``zero_is_padding``) or the value + 1."""
        image = np.asarray(example.image)
        if image.shape != (self.resolution, self.resolution) or image.dtype != np.uint8:
            raise ValueError(
                f"example.image must be a ({self.resolution}, {self.resolution}) uint8 array, got "
                f"{image.shape} {image.dtype}"
            )
        if self.pool > 1:  # max-pool: thin dashes survive the smaller grid
            side = self.resolution // self.pool
            blocks = image.reshape(side, self.pool, side, self.pool)  # (h, p, w, p)
            image = blocks.max(axis=(1, 3))
        ids = image.reshape(-1).astype(np.int64)  # (H * W,)
        return (ids if self.zero_is_padding else ids + 1).tolist()

    def load_files(self, data_dir: Path) -> dict[str, list[PathfinderExample]]:
        """LRA's released images: ``<data_dir>/<curv folder>/{imgs,metadata}``.

        The folder for ``contour_length`` (:data:`CONTOUR_FOLDERS`, e.g.
        ``curv_contour_length_14``) holds ``imgs/<batch>/sample_<i>.png`` and
        ``metadata/<batch>.npy``, text files whose lines read ``imgs/<batch> sample_<i>.png <i>
        <label> ...`` (LRA reads fields 0, 1 and 3). ``data_dir`` may also be that folder. The
        entries (metadata files by batch number, lines in order) are shuffled with ``seed`` and cut
        80/10/10 into train/val/test, as LRA's TFDS builder cut them; empty PNG files are then
        skipped, as LRA's input pipeline skips them, and each split reads only the images it keeps.

        Raises:
            ImportError: without Pillow (``pip install pillow``), which decodes the PNGs.
            FileNotFoundError: if the folder, its metadata or an image is missing.
            ValueError: naming the metadata file and line of a malformed entry, a label that is
                not 0 or 1, or an image of the wrong size.
        """
        folder = CONTOUR_FOLDERS[self.contour_length]
        return read_release(
            Path(data_dir), folder, self.resolution, seed=self.seed, sizes=self.sizes
        )


def read_release(
    data_dir: Path, folder: str, resolution: int, *, seed: int, sizes: dict[str, int]
) -> dict[str, list[PathfinderExample]]:
    """The splits of one released Pathfinder folder (see :meth:`Pathfinder.load_files`)."""
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow ships with matplotlib
        raise ImportError(
            "reading LRA's Pathfinder PNGs needs Pillow: pip install pillow"
        ) from error
    root = data_dir if (data_dir / "metadata").is_dir() else data_dir / folder
    if not (root / "metadata").is_dir():
        raise FileNotFoundError(
            f"no Pathfinder release in {str(data_dir)!r}: expected {folder}/metadata/*.npy in it "
            "(or a folder with metadata/ and imgs/)"
        )

    def batch_number(path: Path) -> tuple[int, str]:
        return (int(path.stem), path.name) if path.stem.isdigit() else (1 << 62, path.name)

    entries = []  # (image path, label, where)
    for meta in sorted((root / "metadata").glob("*.npy"), key=batch_number):
        lines = meta.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{meta}:{number}"
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise ValueError(
                    f"{where}: expected 'imgs/<batch> sample_<i>.png <i> <label 0 or 1> ...', got "
                    f"{line[:80]!r}"
                )
            entries.append((root / fields[0] / fields[1], int(fields[3]), where))
    order = np.random.default_rng(seed).permutation(len(entries))
    cuts = [0, round(0.8 * len(entries)), round(0.9 * len(entries)), len(entries)]
    splits: dict[str, list[PathfinderExample]] = {}
    for index, name in enumerate(("train", "val", "test")):
        kept: list[PathfinderExample] = []
        for i in order[cuts[index] : cuts[index + 1]]:
            if len(kept) == sizes[name]:
                break
            path, label, where = entries[i]
            if not path.is_file():
                raise FileNotFoundError(f"{where}: image {str(path)!r} not found")
            if path.stat().st_size == 0:  # LRA's pipeline drops empty image files
                continue
            with Image.open(path) as handle:
                image = np.asarray(handle.convert("L") if handle.mode != "L" else handle)
            if image.shape != (resolution, resolution):
                raise ValueError(
                    f"{where}: {path.name} is {image.shape[1]}x{image.shape[0]}, expected "
                    f"{resolution}x{resolution}; pass resolution={image.shape[0]}?"
                )
            image = image.astype(np.uint8, copy=True)
            image.setflags(write=False)
            kept.append(PathfinderExample(image, label))
        splits[name] = kept
    return splits
