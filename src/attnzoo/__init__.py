"""attnzoo: the whole family of attention mechanisms behind one API.

Example:
    >>> import torch, attnzoo
    >>> mha = attnzoo.create("mha", 64, num_heads=4)
    >>> mha(torch.randn(2, 10, 64)).shape
    torch.Size([2, 10, 64])
    >>> attnzoo.info("mha").paper.url
    'https://arxiv.org/abs/1706.03762'
"""

from __future__ import annotations

from typing import Any

from attnzoo import efficient, functional, layers, masks, models, positional, sequence, vision
from attnzoo.registry import Entry, Paper, get_entry, list_names
from attnzoo.sequence.cache import KVCache, PackedKVCache

__version__ = "0.1.0"

__all__ = [
    "Entry",
    "KVCache",
    "PackedKVCache",
    "Paper",
    "__version__",
    "create",
    "create_model",
    "efficient",
    "functional",
    "info",
    "layers",
    "list_names",
    "masks",
    "models",
    "positional",
    "sequence",
    "vision",
]


def __getattr__(name: str) -> Any:
    # viz, arena and cli sit above the library (docs/design.md section 2): loaded on first use only.
    if name in ("viz", "arena", "cli"):
        import importlib

        return importlib.import_module(f"attnzoo.{name}")
    raise AttributeError(f"module 'attnzoo' has no attribute {name!r}")


def info(name: str) -> Entry:
    """The registry :class:`Entry` of ``name`` (family, class, paper, tags, complexity).

    Raises:
        ValueError: unknown name (the message suggests close matches).
    """
    return get_entry(name)


def create(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build any registered mechanism, encoding, module or model by name.

    Args:
        name: A name from :func:`list_names`.
        *args: Positional arguments of the constructor (e.g. ``dim`` or ``channels``).
        **kwargs: Keyword options of the constructor.

    Example:
        >>> attnzoo.create("sinusoidal", 16, max_len=32).pe.shape
        torch.Size([32, 16])
    """
    return get_entry(name).obj(*args, **kwargs)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build a whole network registered in the ``models`` family (timm's entry-point style).

    Raises:
        ValueError: ``name`` is unknown or not a model.
    """
    entry = get_entry(name)
    if entry.family != "models":
        raise ValueError(
            f"{name!r} is a {entry.family} entry, not a model; use attnzoo.create({name!r}, ...) "
            f"or pick one of list_names(family='models'): {list_names(family='models')}"
        )
    return entry.obj(**kwargs)
