"""Mechanisms side by side: the weights of several token mixers on the same tokens.

Every mechanism is built untrained with the same seed and then given the query, key, value and
output projections of one ``mha`` (where it has them under the same names and shapes), so the
panels differ only by what each mechanism computes from the same ``q``, ``k`` and ``v``:
exact softmax, a window, LSH buckets, sorted blocks, landmarks, random features ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

import attnzoo
from attnzoo._checks import check_positive_int, type_name
from attnzoo.viz import masks as viz_masks
from attnzoo.viz._mpl import axes_for, finish
from attnzoo.viz.maps import check_weights
from attnzoo.viz.record import record_attention

__all__ = ["PROJECTIONS", "demo_mechanism_options", "mechanism_weights", "plot_mechanisms"]

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def demo_mechanism_options(name: str, length: int) -> dict[str, Any]:
    """Options of ``name`` scaled to a drawing of ``length`` tokens.

    The defaults (``bucket_size=64``, ``num_landmarks=64``, ``k=256`` ...) cover a whole short
    sequence, where every approximation is exact; these keep about an eighth of it per bucket,
    cluster or landmark (a quarter for Linformer's projected length). Pattern mechanisms get
    :func:`attnzoo.viz.demo_options`; fixed-length mechanisms get ``seq_len=length``.

    Args:
        name: A sequence or efficient registry name.
        length: Tokens drawn.

    Returns:
        Constructor keywords.

    Example:
        >>> demo_mechanism_options("reformer", 32)
        {'bucket_size': 4}
    """
    length = check_positive_int("length", length)
    eighth = max(2, length // 8)
    options = {
        "reformer": {"bucket_size": eighth},
        "routing": {"num_clusters": max(1, length // eighth)},
        "sinkhorn": {"bucket_size": eighth},
        "linformer": {"k": max(1, length // 4)},
        "nystrom": {"num_landmarks": eighth, "conv_kernel_size": None},
    }.get(name, viz_masks.demo_options(name, length))
    if getattr(attnzoo.info(name).obj, "fixed_length", False):
        options = {"seq_len": length, **options}
    return options


def _share_projections(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s projections into ``target`` wherever names and shapes agree."""
    for name in PROJECTIONS:
        mine, theirs = getattr(source, name, None), getattr(target, name, None)
        if not isinstance(mine, nn.Linear) or not isinstance(theirs, nn.Linear):
            continue
        if theirs.weight.shape == mine.weight.shape:
            theirs.load_state_dict(mine.state_dict())


def mechanism_weights(
    names: Sequence[str],
    *,
    length: int = 32,
    dim: int = 32,
    heads: int = 4,
    seed: int = 0,
    scale: float = 2.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """The attention weights of each mechanism on the same random tokens and projections.

    Args:
        names: Sequence or efficient registry names with attention weights.
        length: Tokens ``L``.
        dim: Model width.
        heads: Attention heads.
        seed: Seed of the tokens and of every module's initial weights.
        scale: Tokens are ``scale * randn``; untrained scores are nearly flat at 1.
        options: ``{name: constructor keywords}`` replacing :func:`demo_mechanism_options`.

    Returns:
        ``{name: (nh, L, S)}`` weights as each mechanism reports them (``S = L``, except
        Linformer's projected length ``k``).

    Shape:
        - each value: ``(heads, length, S)``

    Example:
        >>> w = mechanism_weights(["mha", "local"], length=8, options={"local": {"window": 8}})
        >>> torch.allclose(w["mha"], w["local"], atol=1e-6)
        True
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise TypeError(f"names must be a non-empty list of registry names, got {names!r}")
    length = check_positive_int("length", length)
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping of name -> keywords, got {type_name(options)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokens = scale * torch.randn(1, length, dim)  # (1, L, C)
        reference = attnzoo.create("mha", dim, num_heads=heads)
    weights = {}
    for name in names:
        entry = attnzoo.info(name)
        if entry.family not in ("sequence", "efficient"):
            raise ValueError(f"names: {name!r} is a {entry.family} name, not a token mixer")
        if not getattr(entry.obj, "has_attention_weights", True):
            raise ValueError(f"names: {name!r} has no attention weights to draw")
        kwargs = dict(options.get(name, demo_mechanism_options(name, length)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = attnzoo.create(name, dim, num_heads=heads, **kwargs).eval()
        _share_projections(reference, module)
        with record_attention(module) as recorded, torch.no_grad():
            module(tokens)
        weights[name] = list(recorded.values())[-1][0]  # (nh, L, S)
    return weights


def plot_mechanisms(
    weights: Mapping[str, torch.Tensor],
    *,
    head: int = 0,
    title: str | None = None,
    ncols: int = 4,
    cmap: str = "viridis",
    ax: Any = None,
    out: Any = None,
) -> Any:
    """One heat map per mechanism (one head each), on one colour scale.

    Args:
        weights: ``{name: (nh, L, S)}``, e.g. from :func:`mechanism_weights`.
        head: Head drawn.
        title: Figure title.
        ncols: Panels per row of a new figure.
        cmap: matplotlib colour map.
        ax: One Axes per mechanism; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - each value: ``(nh, L, S)``

    Example:
        >>> fig = plot_mechanisms({"a": torch.eye(3)[None], "b": torch.ones(1, 3, 2) / 2})
        >>> fig.axes[1].get_title(), fig.axes[1].get_xlabel()
        ('b', 'projected keys')
    """
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError(f"weights must be a non-empty mapping name -> (nh, L, S), got {weights!r}")
    maps = {
        name: check_weights(f"weights[{name!r}]", w, (3,), "(nh, L, S)")
        for name, w in weights.items()
    }
    heads = min(w.shape[0] for w in maps.values())
    head = check_positive_int("head", head, minimum=0)
    if head >= heads:
        raise ValueError(f"head must be < {heads} (the fewest heads of any panel), got {head}")
    cols = min(len(maps), check_positive_int("ncols", ncols))
    rows = -(-len(maps) // cols)
    fig, axes = axes_for(ax, len(maps), figsize=(2.8 * cols + 0.8, 2.8 * rows + 0.4), ncols=cols)
    vmax = max(float(w[head].max()) for w in maps.values())
    image = None
    for axis, (name, w) in zip(axes, maps.items(), strict=True):
        image = axis.imshow(w[head].float().cpu().numpy(), cmap=cmap, vmin=0.0, vmax=vmax)
        axis.set_title(name)
        axis.set_xlabel("keys" if w.shape[-1] == w.shape[-2] else "projected keys")
        axis.set_ylabel("queries")
    fig.colorbar(image, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title)
    return finish(fig, out)
