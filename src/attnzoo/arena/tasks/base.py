"""What every arena task provides: examples, a tokeniser, and cached train/val/test splits.

A task is registered in the ``arena`` family and built with ``attnzoo.create(name, seed=...,
...)``. Subclasses define how examples are made (:meth:`Task.generate`, seeded: the same seed
gives the same examples) and tokenised (:meth:`Task.encode`); the base class turns them into
padded id tensors (:class:`Split`), caches them on disk by ``(task, options, seed)`` — written
atomically, so an interrupted run never leaves a half-written file — and reads the original
LRA release files instead when ``data_dir`` is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from attnzoo._checks import check_positive_int, type_name

__all__ = ["DATA_VERSION", "Split", "Task", "default_cache_dir", "pad_sequences", "write_atomic"]

# Bump when a generator changes, so that caches of the old data are not reused.
DATA_VERSION = 1
SPLITS = ("train", "val", "test")


def default_cache_dir() -> Path:
    """``$ATTNZOO_CACHE`` or ``~/.cache/attnzoo``; arena data goes to its ``arena/`` folder."""
    root = os.environ.get("ATTNZOO_CACHE") or Path.home() / ".cache" / "attnzoo"
    return Path(root) / "arena"


def pad_sequences(rows: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """``(N, L_max)`` int64 tensor of the rows, right-padded with ``pad_id``.

    Example:
        >>> pad_sequences([[3, 4], [5]])
        tensor([[3, 4],
                [5, 0]])
    """
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out


@dataclass
class Split:
    """One split of a task as padded token ids (0 = padding) and labels.

    Args:
        inputs: ``(N, L)`` int64 ids, right-padded with the task's ``pad_id``.
        labels: ``(N,)`` int64 class labels.
        inputs2: ``(N, L2)`` ids of the second document of dual (two-tower) tasks, else None.

    Shape:
        - inputs ``(N, L)``, labels ``(N,)``, inputs2 ``(N, L2)``
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    inputs2: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs.dim() != 2 or self.labels.shape != (self.inputs.shape[0],):
            raise ValueError(
                f"a split needs inputs (N, L) and labels (N,), got {tuple(self.inputs.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if self.inputs2 is not None and self.inputs2.shape[0] != self.inputs.shape[0]:
            raise ValueError("inputs2 must have one row per example")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(
        self, index: torch.Tensor, pad_id: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Rows ``index``, trimmed to their longest real length: ``(inputs, labels, inputs2)``."""

        def trim(ids: torch.Tensor) -> torch.Tensor:
            rows = ids[index]
            real = (rows != pad_id).any(0).nonzero()
            width = int(real[-1]) + 1 if len(real) else 1
            return rows[:, :width]

        second = None if self.inputs2 is None else trim(self.inputs2)
        return trim(self.inputs), self.labels[index], second

    def to_state(self) -> dict[str, torch.Tensor]:
        """Compact tensors for the cache (int16 ids when they fit)."""

        def pack(t: torch.Tensor) -> torch.Tensor:
            fits = t.numel() == 0 or int(t.max()) < 2**15
            return t.to(torch.int16 if fits else torch.int32)

        state = {"inputs": pack(self.inputs), "labels": self.labels.to(torch.int16)}
        if self.inputs2 is not None:
            state["inputs2"] = pack(self.inputs2)
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Split:
        """Inverse of :meth:`to_state`."""
        second = state.get("inputs2")
        return cls(
            state["inputs"].long(),
            state["labels"].long(),
            None if second is None else second.long(),
        )


class Task:
    """Base of the arena tasks (see the module docstring).

    Subclasses set the class attributes and implement :meth:`generate`, :meth:`encode` (and, for
    tasks with real LRA files, :meth:`load_files`), and :attr:`vocab_size`, :attr:`max_len`.

    Args:
        seed: Seed of the generator and of the split order.
        n_train: Training examples.
        n_val: Validation examples.
        n_test: Test examples.
        cache_dir: Where generated splits are cached (default :func:`default_cache_dir`);
            ``False`` disables the cache.
        data_dir: Folder with the original LRA files of the task; splits are read from it.
    """

    name: ClassVar[str] = ""
    num_classes: ClassVar[int] = 2
    dual: ClassVar[bool] = False  # two documents per example (the retrieval task)
    pad_id: ClassVar[int] = 0

    def __init__(
        self,
        *,
        seed: int = 0,
        n_train: int,
        n_val: int,
        n_test: int,
        cache_dir: str | os.PathLike | bool | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.sizes = {
            "train": check_positive_int("n_train", n_train),
            "val": check_positive_int("n_val", n_val),
            "test": check_positive_int("n_test", n_test),
        }
        if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike | bool):
            raise TypeError(f"cache_dir must be a path, False or None, got {type_name(cache_dir)}")
        self.cache_dir = cache_dir
        self.data_dir = None if data_dir is None else Path(data_dir)
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise ValueError(f"data_dir {str(self.data_dir)!r} is not a folder")
        self._splits: dict[str, Split] | None = None

    # ---------------------------------------------------------------- subclass interface
    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        """Number of token ids, padding (0) included."""
        raise NotImplementedError

    @property
    def max_len(self) -> int:  # pragma: no cover - abstract
        """Longest tokenised sequence the task produces (per document)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The options that change the data (JSON-serialisable): part of the cache key."""
        return {}

    def generate(self, n: int) -> list[Any]:  # pragma: no cover - abstract
        """The first ``n`` examples of this seed's stream (distinct, deterministic)."""
        raise NotImplementedError

    def encode(self, example: Any) -> list[int] | tuple[list[int], list[int]]:  # pragma: no cover
        """Token ids of one example (a pair of id lists for dual tasks)."""
        raise NotImplementedError

    def label(self, example: Any) -> int:
        """The class of one example (default: its ``.label``)."""
        return int(example.label)

    def load_files(self, data_dir: Path) -> dict[str, list[Any]]:
        """Examples of the original LRA release files in ``data_dir``, per split name."""
        raise NotImplementedError(f"{self.name} has no loader for original LRA files")

    # ---------------------------------------------------------------- provided
    def describe(self) -> dict[str, Any]:
        """Everything that identifies this task's data (for results and cache keys)."""
        return {
            "task": self.name,
            "seed": self.seed,
            "sizes": self.sizes,
            "options": self.options(),
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "version": DATA_VERSION,
        }

    def cache_path(self) -> Path | None:
        """The cache file of these splits, or None when caching is off."""
        if self.cache_dir is False or self.data_dir is not None:
            return None
        root = default_cache_dir() if self.cache_dir in (None, True) else Path(self.cache_dir)
        digest = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()
        return root / f"{self.name}-{digest[:16]}.pt"

    def examples(self) -> dict[str, list[Any]]:
        """Examples per split: generated (train first, then val, test) or read from files."""
        if self.data_dir is not None:
            loaded = self.load_files(self.data_dir)
            return {name: loaded[name][: self.sizes[name]] for name in SPLITS}
        total = sum(self.sizes.values())
        stream = self.generate(total)
        if len(stream) < total:
            raise ValueError(
                f"{self.name} produced {len(stream)} distinct examples, fewer than the "
                f"{total} requested; ask for fewer or relax the options"
            )
        cut = [0, self.sizes["train"], self.sizes["train"] + self.sizes["val"], total]
        return {name: stream[cut[i] : cut[i + 1]] for i, name in enumerate(SPLITS)}

    def _tensorise(self, examples: list[Any]) -> Split:
        encoded = [self.encode(e) for e in examples]
        labels = torch.tensor([self.label(e) for e in examples], dtype=torch.long)
        if self.dual:
            return Split(
                pad_sequences([a for a, _ in encoded], self.pad_id),
                labels,
                pad_sequences([b for _, b in encoded], self.pad_id),
            )
        return Split(pad_sequences(encoded, self.pad_id), labels)

    def splits(self) -> dict[str, Split]:
        """``{"train", "val", "test"}`` splits, from the cache when present."""
        if self._splits is not None:
            return self._splits
        path = self.cache_path()
        if path is not None and path.is_file():
            try:
                state = torch.load(path, weights_only=True)
                self._splits = {name: Split.from_state(state[name]) for name in SPLITS}
                return self._splits
            except Exception:  # a damaged or foreign cache file is rebuilt, never trusted
                path.unlink(missing_ok=True)
        self._splits = {name: self._tensorise(ex) for name, ex in self.examples().items()}
        if path is not None:
            write_atomic(path, {name: split.to_state() for name, split in self._splits.items()})
        return self._splits

    def majority(self, split: str = "test") -> float:
        """Accuracy of always predicting the most frequent class of ``split``."""
        labels = self.splits()[split].labels
        return labels.bincount(minlength=self.num_classes).max().item() / max(len(labels), 1)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"{type(self).__name__}(seed={self.seed}, {sizes}, options={self.options()})"


def write_atomic(path: Path, payload: Any) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        tmp = Path(handle.name)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
