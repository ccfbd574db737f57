"""Registries: every mechanism, encoding, module and model in attnzoo, by name.

One :class:`Registry` per family (``positional``, ``sequence``, ``efficient``, ``vision``,
``models``, ``arena``). Names are unique across all families, so ``attnzoo.create(name)`` needs
no family. Registration is explicit: each family's ``__init__`` imports its modules, and each
module decorates its class with ``@REGISTRY.register(...)``.

The ``arena`` family (the benchmark's tasks) sits above the library, which never imports it: it
is loaded on first need — a name that is not found, or a listing of all names or of the arena —
from :data:`LAZY_FAMILIES`, so ``attnzoo.create("listops", seed=0)`` works without importing
``attnzoo.arena`` first.

Example:
    >>> import attnzoo
    >>> entry = attnzoo.info("mha")
    >>> entry.family, entry.paper.year
    ('sequence', 2017)
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "FAMILIES",
    "LAZY_FAMILIES",
    "Entry",
    "Paper",
    "Registry",
    "all_entries",
    "get_entry",
    "list_names",
]

T = TypeVar("T")

FAMILIES = ("positional", "sequence", "efficient", "vision", "models", "arena")
"""The registry's families (``Entry.family``)."""
LAZY_FAMILIES = {"arena": "attnzoo.arena.tasks"}
"""Families registered by a module above the library, imported on first need."""
_loaded_lazy: set[str] = set()


def _load_lazy(family: str | None = None) -> None:
    """Import the modules of the lazily registered families (``family``, or all of them)."""
    import importlib

    for name, module in LAZY_FAMILIES.items():
        if (family is None or family == name) and name not in _loaded_lazy:
            _loaded_lazy.add(name)
            importlib.import_module(module)


# Every name of every family, for cross-family uniqueness and family-free lookup.
_ALL: dict[str, Entry] = {}


@dataclass(frozen=True)
class Paper:
    """The paper a mechanism comes from.

    Args:
        title: Title as published.
        authors: Author list as a string, e.g. ``"Vaswani et al."``.
        year: Publication year.
        url: A stable link, preferably arXiv (``https://arxiv.org/abs/...``).
    """

    title: str
    authors: str
    year: int
    url: str


@dataclass(frozen=True)
class Entry:
    """One registered object.

    Args:
        name: Registry name, unique across families.
        family: One of :data:`FAMILIES`.
        obj: The class or factory that ``create`` calls.
        paper: The :class:`Paper` it implements.
        tags: Free-form labels used by ``list_names(tags=...)`` (e.g. ``"channel"``).
        complexity: Time complexity as a short string, e.g. ``"O(L^2 d)"``.
    """

    name: str
    family: str
    obj: Callable[..., Any]
    paper: Paper
    tags: tuple[str, ...] = field(default_factory=tuple)
    complexity: str = ""

    @property
    def summary(self) -> str:
        """First line of the object's docstring."""
        doc = (self.obj.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def _unknown_name_error(name: str, candidates: Iterable[str], what: str) -> ValueError:
    candidates = sorted(candidates)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"unknown {what} {name!r}.{hint} Known names: {', '.join(candidates) or '(none)'}; "
        "see attnzoo.list_names()."
    )


class Registry:
    """Names to classes or factories for one family.

    Args:
        family: The family this registry holds, one of :data:`FAMILIES`.
    """

    def __init__(self, family: str) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.family = family
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        paper: Paper,
        tags: Iterable[str] = (),
        complexity: str = "",
    ) -> Callable[[T], T]:
        """Decorator that registers a class or factory under ``name``.

        Raises:
            ValueError: if ``name`` is taken in any family, or ``paper`` is not a ``Paper``.
        """
        if not isinstance(paper, Paper):
            raise TypeError(f"paper must be an attnzoo.registry.Paper, got {type(paper).__name__}")
        if not name or not name.replace("_", "").isalnum() or name != name.lower():
            raise ValueError(f"name must be lower_snake_case, got {name!r}")

        def decorator(obj: T) -> T:
            if name in _ALL:
                other = _ALL[name]
                raise ValueError(
                    f"duplicate registry name {name!r}: already registered in family "
                    f"{other.family!r} by {other.obj.__module__}.{other.obj.__qualname__}"
                )
            entry = Entry(name, self.family, obj, paper, tuple(tags), complexity)  # type: ignore[arg-type]
            self._entries[name] = entry
            _ALL[name] = entry
            return obj

        return decorator

    def get(self, name: str) -> Entry:
        """The :class:`Entry` called ``name``; ``ValueError`` with suggestions if unknown."""
        if name not in self._entries:
            raise _unknown_name_error(name, self._entries, f"{self.family} name")
        return self._entries[name]

    def names(self) -> list[str]:
        """Sorted names in this registry."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self.names())


POSITIONAL = Registry("positional")
SEQUENCE = Registry("sequence")
EFFICIENT = Registry("efficient")
VISION = Registry("vision")
MODELS = Registry("models")
ARENA = Registry("arena")
REGISTRIES = {r.family: r for r in (POSITIONAL, SEQUENCE, EFFICIENT, VISION, MODELS, ARENA)}


def get_entry(name: str) -> Entry:
    """The :class:`Entry` called ``name`` in any family."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in _ALL:
        _load_lazy()
    if name not in _ALL:
        raise _unknown_name_error(name, _ALL, "name")
    return _ALL[name]


def all_entries() -> list[Entry]:
    """Every entry, sorted by family then name."""
    _load_lazy()
    return sorted(_ALL.values(), key=lambda e: (FAMILIES.index(e.family), e.name))


def list_names(
    pattern: str = "*", *, family: str | None = None, tags: Iterable[str] = ()
) -> list[str]:
    """Registered names matching a glob ``pattern``, a ``family`` and all of ``tags``.

    Args:
        pattern: ``fnmatch`` glob on the name, e.g. ``"vit_*"``.
        family: Restrict to one of :data:`FAMILIES`.
        tags: Keep entries that carry every one of these tags.

    Returns:
        Sorted list of names.
    """
    if family is not None and family not in REGISTRIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
    if family is None or family in LAZY_FAMILIES:
        _load_lazy(family)
    if isinstance(tags, str):
        tags = (tags,)
    wanted = set(tags)
    entries = REGISTRIES[family]._entries.values() if family else _ALL.values()
    return sorted(
        e.name for e in entries if fnmatch.fnmatchcase(e.name, pattern) and wanted <= set(e.tags)
    )
