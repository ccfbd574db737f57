"""The gallery: every picture of attnzoo by name (``KIND``), behind ``attnzoo plot KIND``.

Each kind draws from a small built-in example or a registry name, without a trained model:
sequence kinds run a registry mechanism (``mechanism="mha"``) on random tokens or on the words
of ``text``; ViT kinds build ``attnzoo.create_model(model, img_size=..., patch_size=...,
pos_embed=..., num_classes=10)`` (untrained) and feed it a synthetic image. The per-kind options
are defined once here and serve both :func:`plot` and the command line (hyphens for
underscores: ``img_size`` is ``--img-size``).
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attnzoo._argtypes import finite_float as _number
from attnzoo._argtypes import name_list as _names
from attnzoo._argtypes import nonneg_int as _nonneg
from attnzoo._argtypes import nonneg_int_list as _ints
from attnzoo._argtypes import positive_int as _positive
from attnzoo.viz import _demos as demos
from attnzoo.viz import masks as viz_masks
from attnzoo.viz._mpl import finish
from attnzoo.viz.vision_maps import VISION_MAPS

__all__ = ["KINDS", "Kind", "Option", "check_kind", "describe", "kind_parser", "plot", "run_cli"]


@dataclass(frozen=True)
class Option:
    """One option of a kind: ``name`` (Python) / ``--name`` with hyphens (command line)."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Kind:
    """A picture: its name, a one-line summary, its options and the function drawing it."""

    name: str
    summary: str
    draw: Callable[..., Any]
    options: tuple[Option, ...]
    free_options: bool = False  # extra keywords go to the drawing (mask: the mask's options)


SEQUENCE = (
    Option("mechanism", "mha", "a sequence/efficient registry name", str),
    Option("length", None, "tokens L (default 8; not with --text)", _positive),
    Option("text", None, "a sentence: its words are the tokens and the labels", str),
    Option("dim", 32, "model width", _positive),
    Option("heads", 4, "attention heads", _positive),
    Option("seed", 0, "seed of the weights and tokens", _nonneg),
)


ATTENTION = Option(
    "attention", "mha", "token mixer of every block (pattern mechanisms: demo options)", str
)


def _vit_options(pos_embed: str = "learned") -> tuple[Option, ...]:
    return (
        Option("model", "vit_tiny_patch16_224", "a ViT of the models registry", str),
        Option("img_size", 64, "image height and width", _positive),
        Option("patch_size", 8, "patch height and width", _positive),
        Option("pos_embed", pos_embed, "position embedding", str, ("learned", "sincos_2d")),
        Option("seed", 0, "seed of the (untrained) weights and the image", _nonneg),
    )


NW = (
    Option("n_train", 50, "training points", _positive),
    Option("seed", 0, "seed of the data", _nonneg),
    Option("bandwidth", 1.0, "Gaussian kernel bandwidth h", _number),
    Option("epochs", 5, "SGD steps of the learned bandwidth", _nonneg),
)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "attention",
            "one attention heat map with token labels (keys on x, queries on y)",
            demos.draw_attention,
            (*SEQUENCE, Option("head", 0, "head drawn", _nonneg)),
        ),
        Kind("heads", "a grid of per-head attention heat maps", demos.draw_heads, SEQUENCE),
        Kind(
            "rollout",
            "attention rollout of a ViT's class token over the image (Abnar & Zuidema 2020)",
            demos.draw_rollout,
            (
                *_vit_options(),
                ATTENTION,
                Option("head_fusion", "mean", "fuse heads by", str, ("mean", "max", "min")),
                Option("discard_ratio", 0.0, "fraction of the lowest weights dropped", _number),
            ),
        ),
        Kind(
            "attention-distance",
            "mean attention distance per head against depth (ViT Figure 7, right)",
            demos.draw_distance,
            (*_vit_options(), ATTENTION, Option("batch", 2, "images averaged over", _positive)),
        ),
        Kind(
            "pos-similarity",
            "cosine similarity of ViT position embeddings (ViT Figure 7, centre)",
            demos.draw_similarity,
            _vit_options("sincos_2d"),
        ),
        Kind(
            "patch-filters",
            "principal components of the patch-embedding filters (ViT Figure 7, left)",
            demos.draw_filters,
            (*_vit_options(), Option("n", 28, "components drawn", _positive)),
        ),
        Kind(
            "sinusoidal",
            "sinusoidal encoding: column curves, the binary counter 0-7 and the heat map",
            demos.draw_sinusoidal,
            (
                Option("length", 60, "positions", _positive),
                Option("dim", 32, "encoding width", _positive),
                Option("n", 8, "numbers of the binary counter", _positive),
                Option("columns", (6, 7, 8, 9), "columns drawn as curves", _ints),
            ),
        ),
        Kind(
            "nadaraya-watson",
            "kernel regression fits: average vs Gaussian vs learned bandwidth",
            demos.draw_nw,
            NW,
        ),
        Kind(
            "nadaraya-watson-weights",
            "Nadaraya-Watson attention weights (test inputs x training inputs)",
            demos.draw_nw_weights,
            (*NW, Option("which", "gaussian", "weights drawn", str, ("gaussian", "learned"))),
        ),
        Kind(
            "mask",
            "one mask: a pattern mechanism or mask function, its options as flags (--window)",
            demos.draw_mask,
            (
                Option("name", "bigbird", "pattern mechanism or mask function", str),
                Option("length", 32, "query length L", _positive),
                Option("kv_length", None, "key length S (default L)", _positive),
            ),
            free_options=True,
        ),
        Kind(
            "mechanisms",
            "several mechanisms' weights on the same tokens and projections (one head each)",
            demos.draw_mechanisms,
            (
                Option(
                    "names",
                    ("mha", "local", "reformer", "sinkhorn", "nystrom", "performer"),
                    "comma list of sequence/efficient names",
                    _names,
                ),
                Option("length", 32, "tokens L", _positive),
                Option("dim", 32, "model width", _positive),
                Option("heads", 4, "attention heads", _positive),
                Option("head", 0, "head drawn", _nonneg),
                Option("seed", 0, "seed of the tokens and the weights", _nonneg),
                Option("ncols", 3, "panels per row", _positive),
            ),
        ),
        Kind(
            "vision-maps",
            "where the self-attention vision modules look: one query pixel's weights",
            demos.draw_vision_maps,
            (
                Option("names", tuple(VISION_MAPS), "comma list of vision modules", _names),
                Option("size", 16, "feature-map height and width", _positive),
                Option("channels", 16, "feature channels", _positive),
                Option("row", None, "query row (default: the centre)", _nonneg),
                Option("col", None, "query column (default: the centre)", _nonneg),
                Option("seed", 0, "seed of the features and the (untrained) modules", _nonneg),
            ),
        ),
        Kind(
            "patterns",
            "the survey's row of patterns side by side (local, strided, global, bigbird)",
            demos.draw_patterns,
            (
                Option("names", ("local", "strided", "global", "bigbird"), "comma list", _names),
                Option("length", 32, "sequence length L", _positive),
            ),
        ),
    )
}
"""Every picture by name: ``attnzoo plot KIND`` and :func:`plot` draw one of them."""


def _kind(kind: Any) -> Kind:
    if isinstance(kind, str) and kind in KINDS:
        return KINDS[kind]
    close = difflib.get_close_matches(str(kind), list(KINDS), n=3) if isinstance(kind, str) else []
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown kind {kind!r}{hint}; choose from {', '.join(KINDS)}")


def plot(kind: str, *, out: str | os.PathLike | None = None, **options: Any) -> Any:
    """Draw the picture ``kind`` of the gallery (what ``attnzoo plot KIND`` draws).

    Args:
        kind: One of :data:`KINDS` (``"attention"``, ``"rollout"``, ``"mask"`` ...).
        out: Save the figure there as PNG (dpi 100).
        **options: The kind's options (``attnzoo plot KIND --help`` lists them; hyphens become
            underscores). ``mask`` also takes the mask's own options (``window=4``).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - as the kind's drawing function

    Example:
        >>> fig = plot("patterns", names=["local", "global"], length=8)
        >>> len(fig.axes)
        2
    """
    spec = _kind(kind)
    values = {option.name: option.default for option in spec.options}
    unknown = sorted(set(options) - set(values))
    if unknown and not spec.free_options:
        raise TypeError(
            f"unknown option(s) {unknown} for kind {kind!r}; its options are {sorted(values)}"
        )
    for option in spec.options:
        value = options.get(option.name, option.default)
        if option.choices and value not in option.choices:
            raise ValueError(f"{option.name} must be one of {option.choices}, got {value!r}")
    return finish(spec.draw(**{**values, **options}), out)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)


def kind_parser(kind: str) -> argparse.ArgumentParser:
    """The command-line parser of ``attnzoo plot KIND``: one flag per option, plus ``--out``.

    Args:
        kind: A gallery kind.

    Returns:
        An ``argparse.ArgumentParser`` whose errors raise ``ValueError`` (one line).

    Example:
        >>> kind_parser("mask").parse_args([]).length
        32
    """
    spec = _kind(kind)
    epilog = (
        "The mask's own options are flags too: attnzoo plot mask --name local --window 4."
        if spec.free_options
        else None
    )
    parser = _Parser(prog=f"attnzoo plot {kind}", description=spec.summary, epilog=epilog)
    for option in spec.options:
        default = option.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            type=option.type,
            choices=option.choices,
            default=default,
            help=option.help + ("" if default is None else f" (default: {shown})"),
        )
    parser.add_argument("--out", default=f"{kind}.png", help=f"PNG written (default: {kind}.png)")
    return parser


def _option_type(param: inspect.Parameter) -> Any:
    annotation = str(param.annotation)
    if isinstance(param.default, bool):
        return "flag"
    if "Sequence" in annotation:
        return _ints
    if "int" in annotation:
        return int
    if "Tensor" in annotation:
        return lambda text: torch.tensor(_ints(text))
    return _number if "float" in annotation else str


def _free_options(name: str, argv: Sequence[str]) -> dict[str, Any]:
    try:
        _, _, params = viz_masks.target_parameters(name)
    except ValueError as error:
        raise ValueError(f"argument --name: {error}") from None
    parser = _Parser(prog=f"attnzoo plot mask --name {name}", add_help=False)
    for param in params:
        flag = "--" + param.name.replace("_", "-")
        cast = _option_type(param)
        if cast == "flag":
            parser.add_argument(flag, dest=param.name, action="store_true", default=None)
        else:
            parser.add_argument(flag, dest=param.name, type=cast, default=None)
    given = vars(parser.parse_args(list(argv)))
    return {key: value for key, value in given.items() if value is not None}


def run_cli(kind: str, argv: Sequence[str]) -> str:
    """Parse ``argv`` for ``kind``, draw, write the PNG (``--out``, default ``KIND.png``).

    Args:
        kind: A gallery kind.
        argv: Its flags, e.g. ``["--length", "16", "--out", "x.png"]``.

    Returns:
        The path written.

    Raises:
        ValueError: a bad flag (one line naming it) or a bad value.
        TypeError: a value of the wrong type.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = os.path.join(folder, "p.png")
        ...     os.path.getsize(run_cli("patterns", ["--length", "8", "--out", out])) > 1000
        True
    """
    spec = _kind(kind)
    parser = kind_parser(kind)
    if spec.free_options:
        namespace, rest = parser.parse_known_args(list(argv))
        extra = _free_options(namespace.name, rest)
    else:
        namespace, extra = parser.parse_args(list(argv)), {}
    options = vars(namespace)
    out = options.pop("out")
    plot(kind, out=out, **options, **extra)
    return out


def describe() -> str:
    """One line per kind with its summary: the list in ``attnzoo plot --help``.

    Returns:
        The lines, joined with newlines.

    Example:
        >>> describe().splitlines()[0].split()[0]
        'attention'
    """
    width = max(len(name) for name in KINDS)
    return "\n".join(f"  {name:<{width}}  {spec.summary}" for name, spec in KINDS.items())


def check_kind(text: str) -> str:
    """``text`` if it names a kind: the argparse ``type`` of ``KIND``.

    Args:
        text: The word given on the command line.

    Returns:
        The kind.

    Raises:
        argparse.ArgumentTypeError: unknown kind, with close matches and the choices.

    Example:
        >>> check_kind("heads")
        'heads'
    """
    try:
        return _kind(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
