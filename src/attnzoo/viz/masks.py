"""Attention patterns: the ``(L, S)`` grid of a mask function or a pattern mechanism, drawn.

A *pattern mechanism* (``local``, ``strided``, ``sparse_transformer``, ``global``,
``longformer``, ``bigbird``) exposes ``.pattern(q_len, kv_len) -> mask_mod``; a *mask function*
is a factory of :data:`attnzoo.masks.MASK_FUNCTIONS`. Where a name is both (``local``,
``bigbird`` ...), the mechanism is meant: its constructor keywords are the options.
"""

from __future__ import annotations

import difflib
import inspect
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

import attnzoo
from attnzoo import masks
from attnzoo._checks import check_positive_int, type_name
from attnzoo.efficient._pattern import PatternAttention
from attnzoo.viz._mpl import axes_for, finish

__all__ = ["demo_options", "mask_grid", "pattern_names", "plot_mask", "plot_patterns"]

PathLike = str | os.PathLike | None
CONTRACT = {"self", "dim", "num_heads", "head_dim", "qkv_bias", "attn_drop", "proj_drop"}
LENGTHS = {"q_len", "kv_len"}


def pattern_names() -> list[str]:
    """Registered mechanisms with a fixed pattern (a ``.pattern(q_len, kv_len)`` method).

    Returns:
        Sorted registry names.

    Example:
        >>> "bigbird" in pattern_names() and "mha" not in pattern_names()
        True
    """
    names = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
    return sorted(n for n in names if _is_pattern(attnzoo.info(n).obj))


def _is_pattern(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, PatternAttention)


def target_parameters(name: str) -> tuple[str, Callable[..., Any], list[inspect.Parameter]]:
    """``(kind, factory, options)`` for a pattern mechanism or mask-function ``name``.

    Args:
        name: A pattern mechanism (preferred where a name is both) or a mask function.

    Returns:
        ``kind`` (``"mechanism"`` or ``"mask"``), the class or factory, and the keyword
        parameters a user may set (not the module contract, nor the lengths that
        :func:`mask_grid` fills in).

    Raises:
        ValueError: another registry name (it has no fixed mask) or an unknown name.

    Example:
        >>> kind, _, params = target_parameters("local")
        >>> kind, [p.name for p in params]
        ('mechanism', ['window'])
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type_name(name)}")
    known = set(attnzoo.list_names())
    if name in known and _is_pattern(attnzoo.info(name).obj):
        cls = attnzoo.info(name).obj
        params = inspect.signature(cls.__init__).parameters.values()
        return "mechanism", cls, [p for p in params if p.name not in CONTRACT]
    if name in masks.MASK_FUNCTIONS:
        factory = masks.MASK_FUNCTIONS[name]
        params = inspect.signature(factory).parameters.values()
        return "mask", factory, [p for p in params if p.name not in LENGTHS]
    choices = f"pattern mechanisms: {', '.join(pattern_names())}; mask functions: " + ", ".join(
        sorted(masks.MASK_FUNCTIONS)
    )
    if name in known:
        raise ValueError(
            f"{name!r} is not a pattern mechanism or a mask function: its attention has no fixed "
            f"mask to draw. Choose one of the {choices}"
        )
    close = difflib.get_close_matches(name, [*pattern_names(), *masks.MASK_FUNCTIONS], n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown mask {name!r}{hint}; choose one of the {choices}")


def demo_options(name: str, length: int) -> dict[str, Any]:
    """Options of pattern mechanism ``name`` scaled to ``length``, for a readable picture.

    The mechanisms' defaults (``window=256``, ``block_size=64`` ...) see everything at the short
    lengths of a drawing; these keep about an eighth of the sequence in each window or stride
    (bigbird: 16 blocks, 3 in the window, 1 global, 1 random).

    Args:
        name: A pattern mechanism (see :func:`pattern_names`).
        length: Sequence length drawn.

    Returns:
        Constructor keywords (empty for other names).

    Example:
        >>> demo_options("local", 32)
        {'window': 4}
    """
    length = check_positive_int("length", length)
    eighth = max(1, length // 8)
    return {
        "local": {"window": eighth},
        "strided": {"stride": max(2, eighth)},
        "sparse_transformer": {"block": max(2, eighth), "num_summary": 1},
        "global": {"num_global": max(1, length // 16)},
        "longformer": {"window": max(1, length // 16), "num_global": max(1, length // 16)},
        "bigbird": {
            "block_size": max(1, length // 16),
            "num_window_blocks": 3,
            "num_global_blocks": 1,
            "num_random_blocks": 1,
        },
    }.get(name, {})


def with_demo_options(name: str, length: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` completed by :func:`demo_options` (``global_tokens`` replaces ``num_global``).

    Args:
        name: A pattern mechanism (other names get no demo options).
        length: Sequence length drawn.
        options: The options the user gave; they win.

    Returns:
        The merged options.

    Example:
        >>> with_demo_options("longformer", 32, {"global_tokens": [0]})
        {'window': 2, 'global_tokens': [0]}
    """
    demo = demo_options(name, length)
    if "global_tokens" in options:
        demo.pop("num_global", None)
    return {**demo, **options}


def mask_grid(
    target: str | Callable[..., torch.Tensor],
    length: int,
    *,
    kv_length: int | None = None,
    **options: Any,
) -> torch.Tensor:
    """The ``(L, S)`` boolean grid (True = may attend) of a mask function or pattern mechanism.

    Args:
        target: A ``mask_mod(b, h, q_idx, kv_idx)`` callable; a pattern mechanism name
            (``local``, ``strided``, ``sparse_transformer``, ``global``, ``longformer``,
            ``bigbird``: built with ``attnzoo.create(name, dim, num_heads=1, **options)``, then
            ``.pattern(L, S)``); or another mask function name of
            ``attnzoo.masks.MASK_FUNCTIONS`` (``q_len``/``kv_len`` are filled in).
        length: Query length ``L``.
        kv_length: Key length ``S`` (default ``L``; pattern mechanisms need ``S = L``).
        **options: The mechanism's constructor keywords or the mask function's parameters.

    Returns:
        ``(L, S)`` bool tensor.

    Shape:
        - output: ``(L, S)``

    Example:
        >>> mask_grid("local", 4, window=1).int()
        tensor([[1, 1, 0, 0],
                [1, 1, 1, 0],
                [0, 1, 1, 1],
                [0, 0, 1, 1]], dtype=torch.int32)
    """
    length = check_positive_int("length", length)
    kv_len = length if kv_length is None else check_positive_int("kv_length", kv_length)
    if callable(target) and not isinstance(target, str):
        if options:
            raise TypeError(
                f"options {sorted(options)} apply to a named target; a mask_mod takes none"
            )
        return masks.materialize(target, length, kv_len)[0, 0]
    kind, factory, params = target_parameters(target)
    allowed = {p.name for p in params}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for {kind} {target!r}; its options are "
            f"{sorted(allowed) or 'none'}"
        )
    missing = [p.name for p in params if p.default is p.empty and p.name not in options]
    if missing:
        raise TypeError(f"{kind} {target!r} needs the option(s) {missing}")
    if kind == "mechanism":
        if kv_len != length:
            raise ValueError(
                f"pattern mechanism {target!r} is self-attention only: kv_length must equal "
                f"length = {length}, got {kv_len}"
            )
        mask_mod = factory(8, num_heads=1, **options).pattern(length, kv_len)
    else:
        accepted = inspect.signature(factory).parameters
        lengths = {k: v for k, v in (("q_len", length), ("kv_len", kv_len)) if k in accepted}
        mask_mod = factory(**options, **lengths)
    return masks.materialize(mask_mod, length, kv_len)[0, 0]


def _describe(target: Any, options: Mapping[str, Any]) -> str:
    """The name, then its options wrapped over lines of about 36 characters."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "mask")
    text = ", ".join(f"{k}={v}" for k, v in options.items())
    return "\n".join([str(name), *textwrap.wrap(text, 36)]) if text else str(name)


def _draw(axis: Any, grid: torch.Tensor, title: str) -> None:
    from matplotlib.colors import ListedColormap

    cells = grid.to(torch.uint8).cpu().numpy()
    axis.imshow(cells, cmap=ListedColormap(["#ffffff", "#1f4e79"]), vmin=0, vmax=1)
    rows, cols = cells.shape
    if max(rows, cols) <= 64:
        axis.set_xticks([c - 0.5 for c in range(1, cols)], minor=True)
        axis.set_yticks([r - 0.5 for r in range(1, rows)], minor=True)
        axis.grid(which="minor", color="#cccccc", linewidth=0.4)
        axis.tick_params(which="minor", length=0)
    axis.set_xlabel("key j")
    axis.set_ylabel("query i")
    axis.set_title(f"{title}\n{grid.float().mean().item():.0%} of pairs attend", fontsize=9)


def plot_mask(
    target: str | Callable[..., torch.Tensor] | torch.Tensor,
    length: int | None = None,
    *,
    kv_length: int | None = None,
    title: str | None = None,
    ax: Any = None,
    out: PathLike = None,
    **options: Any,
) -> Any:
    """Draw a mask: filled cells may attend (query ``i`` on y, key ``j`` on x).

    Args:
        target: An ``(L, S)`` bool tensor, or anything :func:`mask_grid` accepts.
        length: Query length (for a mask function or a name; not with a tensor).
        kv_length: Key length, default ``length``.
        title: Axes title (default: the name and options).
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).
        **options: Options for :func:`mask_grid`.

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - drawn grid: ``(L, S)``

    Example:
        >>> fig = plot_mask("local", 8, window=2)
        >>> fig.axes[0].get_title().splitlines()[1]
        'window=2'
    """
    if isinstance(target, torch.Tensor):
        if target.dim() != 2 or target.dtype != torch.bool or length is not None or options:
            raise ValueError(
                "a tensor target must be an (L, S) bool mask, given without length or options; "
                f"got {type_name(target)}, length={length!r}, options={sorted(options)}"
            )
        grid = target
    else:
        if length is None:
            raise ValueError(f"length is required to draw {_describe(target, {})}")
        grid = mask_grid(target, length, kv_length=kv_length, **options)
    fig, (axis,) = axes_for(ax, 1, figsize=(4.2, 4.4))
    label = "mask" if isinstance(target, torch.Tensor) else target
    _draw(axis, grid, title or _describe(label, options))
    return finish(fig, out)


def plot_patterns(
    names: Sequence[str] = ("local", "strided", "global", "bigbird"),
    length: int = 32,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """The survey's row of attention patterns, side by side.

    Each pattern mechanism gets :func:`demo_options` for ``length`` unless ``options[name]``
    overrides them; mask-function names need their options in ``options``.

    Args:
        names: Pattern mechanisms or mask functions, drawn left to right.
        length: Sequence length ``L`` of every panel.
        options: Per-name options, e.g. ``{"local": {"window": 2}}``.
        ax: One Axes per name; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - each panel: ``(L, L)``

    Example:
        >>> fig = plot_patterns(("local", "global"), 8)
        >>> len(fig.axes)
        2
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise TypeError(f"names must be a non-empty sequence of names, got {type_name(names)}")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping name -> options, got {type_name(options)}")
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"options given for {stray}, which are not in names {list(names)}")
    length = check_positive_int("length", length)
    fig, axes = axes_for(ax, len(names), figsize=(3.0 * len(names), 3.5))
    for name, axis in zip(names, axes, strict=True):
        chosen = with_demo_options(name, length, options.get(name, {}))
        _draw(axis, mask_grid(name, length, **chosen), _describe(name, chosen))
    return finish(fig, out)
