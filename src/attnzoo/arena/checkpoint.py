"""Training checkpoints as safetensors files, written atomically, with one clear error if damaged.

A checkpoint holds tensors (model weights, optimiser moments, RNG states) and a JSON document
(counters, history, the run's configuration) stored in the safetensors header. Files are written
to a temporary file in the same folder, flushed to disk, then renamed over the old one, so a
crash leaves either the previous checkpoint or the new one — never a partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

_META_KEY = "attnzoo"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, damaged or not a checkpoint)."""


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: Any) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically.

    Raises:
        ValueError: a tensor is not finite (a non-finite checkpoint is never written).
    """
    from safetensors.torch import save_file

    path = Path(path)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"refusing to write a non-finite checkpoint: {name} has NaN or inf")
    # safetensors refuses tensors sharing memory (tied embeddings): store contiguous copies
    flat = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        tmp = Path(handle.name)
    try:
        save_file(flat, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Any]:
    """``(tensors, meta)`` of a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated or damaged, naming it.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        meta = json.loads(header[_META_KEY])
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}: {error}); it is "
            "truncated or damaged — delete it to restart this run from scratch"
        ) from None
    return tensors, meta
