"""The drawings behind the gallery kinds: built-in inputs, untrained models, the figures.

Private to :mod:`attnzoo.viz.gallery`; each ``draw_*`` takes a kind's options as keywords and
returns the figure (not yet saved). :func:`demo_images` is public (``attnzoo.viz``).
"""

from __future__ import annotations

from typing import Any

import torch

import attnzoo
from attnzoo._checks import check_positive_int
from attnzoo.viz import charts, compare, maps, positional, vision_maps
from attnzoo.viz import masks as viz_masks
from attnzoo.viz import vit as vit_figures
from attnzoo.viz._mpl import axes_for
from attnzoo.viz.record import record_attention

__all__ = ["demo_images"]


def _tokens(mechanism, length, text, dim, heads, seed) -> tuple[torch.Tensor, list[str]]:
    """``(nh, L, L)`` weights of an untrained ``mechanism`` on random tokens or ``text``."""
    try:
        entry = attnzoo.info(mechanism)
    except ValueError as error:
        raise ValueError(f"mechanism: {error}") from None
    if entry.family not in ("sequence", "efficient"):
        raise ValueError(
            f"mechanism must be a sequence or efficient registry name, got {mechanism!r} "
            f"({entry.family})"
        )
    if text is not None and length is not None:
        raise ValueError("give length or text, not both: text sets the length to its word count")
    words = text.split() if text is not None else None
    if words is not None and not words:
        raise ValueError("text must contain at least one word")
    length = len(words) if words else check_positive_int("length", 8 if length is None else length)
    kwargs = {"seq_len": length} if getattr(entry.obj, "fixed_length", False) else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = attnzoo.create(mechanism, dim, num_heads=heads, **kwargs).eval()
        if words:
            vocab = {word: i for i, word in enumerate(dict.fromkeys(words))}
            table = torch.randn(len(vocab), dim)
            ids = torch.tensor([vocab[word] for word in words])
            x = table[ids] + positional.sinusoid_heatmap(length, dim).float()
        else:
            x = torch.randn(length, dim)
        with record_attention(module) as recorded, torch.no_grad():
            module(2.0 * x[None])  # doubled: untrained scores are otherwise nearly flat
    weights = list(recorded.values())[-1][0]  # (nh, L, L)
    return weights, words or [f"t{i}" for i in range(length)]


def draw_attention(*, head: int, **options) -> Any:
    weights, labels = _tokens(**options)
    if not 0 <= head < weights.shape[0]:
        raise ValueError(f"head must be in 0 .. {weights.shape[0] - 1}, got {head}")
    title = f"{options['mechanism']}, head {head} (untrained)"
    return maps.plot_attention(weights[head], x_labels=labels, y_labels=labels, title=title)


def draw_heads(**options) -> Any:
    weights, labels = _tokens(**options)
    return maps.plot_heads(
        weights, x_labels=labels, y_labels=labels, title=f"{options['mechanism']} (untrained)"
    )


def demo_images(batch: int = 1, size: int = 64, *, seed: int = 0) -> torch.Tensor:
    """Synthetic pictures for the ViT kinds: a bright disc on a colour gradient, plus noise.

    Args:
        batch: Images.
        size: Height and width.
        seed: Seed of the disc positions and the noise.

    Returns:
        ``(batch, 3, size, size)`` float32, about zero mean and unit spread.

    Shape:
        - output: ``(batch, 3, size, size)``

    Example:
        >>> demo_images(2, 8).shape
        torch.Size([2, 3, 8, 8])
    """
    batch, size = check_positive_int("batch", batch), check_positive_int("size", size)
    gen = torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))
    axis = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")  # (size, size) each
    centres = torch.rand(batch, 2, generator=gen) - 0.5
    disc = ((x - centres[:, :1, None]) ** 2 + (y - centres[:, 1:, None]) ** 2 < 0.12).float()
    images = torch.stack([disc, (x + 1).expand_as(disc) / 2, (y + 1).expand_as(disc) / 2], 1)
    images = images + 0.05 * torch.randn(images.shape, generator=gen)
    return (images - 0.5) / 0.3


def _vit(model, img_size, patch_size, pos_embed, seed, attention="mha") -> tuple[Any, torch.Tensor]:
    """An untrained ViT (timm layout) and one demo image; ``attention`` swaps every block's."""
    extra: dict[str, Any] = {}
    if attention != "mha":  # pattern mechanisms get options scaled to the token count
        tokens = 1 + (img_size // patch_size) ** 2
        extra = {
            "attention": attention,
            "attention_kwargs": viz_masks.demo_options(attention, tokens),
        }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = attnzoo.create_model(
            model,
            img_size=img_size,
            patch_size=patch_size,
            pos_embed=pos_embed,
            num_classes=10,
            **extra,
        )
    for attribute in ("patch_embed", "num_prefix_tokens", "pos_embed", "blocks"):
        if not hasattr(vit, attribute):
            raise TypeError(
                f"model {model!r} has no {attribute!r}: the ViT kinds need a timm-layout ViT "
                "(patch_embed.proj, patch_embed.grid_size, num_prefix_tokens, pos_embed, blocks)"
            )
    return vit.eval(), demo_images(1, img_size, seed=seed)


def _label(options: dict[str, Any]) -> str:
    attention = options.get("attention", "mha")
    mixer = "" if attention == "mha" else f", {attention} attention"
    return f"{options['model']}{mixer} (untrained)"


def _vit_maps(vit, images: torch.Tensor) -> dict[str, torch.Tensor]:
    with record_attention(vit) as recorded, torch.no_grad():
        vit(images)
    if not recorded:
        raise ValueError("the model recorded no attention weights (no attnzoo attention inside)")
    return recorded


def draw_rollout(*, head_fusion, discard_ratio, **options) -> Any:
    vit, images = _vit(**options)
    rollout = maps.attention_rollout(
        _vit_maps(vit, images), head_fusion=head_fusion, discard_ratio=discard_ratio
    )
    return maps.plot_rollout(
        rollout,
        grid_size=tuple(vit.patch_embed.grid_size),
        num_prefix_tokens=vit.num_prefix_tokens,
        query=0,
        image=images[0],
        title=f"class-token rollout\n{_label(options)}",
    )


def draw_distance(*, batch, **options) -> Any:
    vit, _ = _vit(**options)
    images = demo_images(batch, options["img_size"], seed=options["seed"])
    grid, patch = tuple(vit.patch_embed.grid_size), tuple(vit.patch_embed.patch_size)
    prefix = vit.num_prefix_tokens
    per_layer = [
        vit_figures.mean_attention_distance(
            a, grid_size=grid, patch_size=patch, num_prefix_tokens=prefix
        )
        for a in _vit_maps(vit, images).values()
    ]
    tokens = grid[0] * grid[1]
    uniform = torch.full((1, 1, tokens, tokens), 1.0 / tokens)
    reference = float(
        vit_figures.mean_attention_distance(uniform, grid_size=grid, patch_size=patch)[0]
    )
    return vit_figures.plot_attention_distance(
        per_layer, reference=reference, title=_label(options)
    )


def draw_similarity(**options) -> Any:
    vit, _ = _vit(**options)
    grid = tuple(vit.patch_embed.grid_size)
    table = vit.pos_embed.detach()
    table = table[0] if table.dim() == 3 else table  # (N, D)
    similarity = positional.position_embedding_similarity(
        table, grid_size=grid, num_prefix_tokens=table.shape[0] - grid[0] * grid[1]
    )
    title = f"position embedding similarity ({options['pos_embed']})"
    return positional.plot_position_similarity(similarity, title=title)


def draw_filters(*, n, **options) -> Any:
    vit, _ = _vit(**options)
    comps = vit_figures.patch_embedding_components(vit.patch_embed.proj.weight, n=n)
    return vit_figures.plot_patch_components(comps, title="patch-embedding components (untrained)")


def draw_sinusoidal(*, length, dim, n, columns) -> Any:
    fig, axes = axes_for(None, 3, figsize=(13.0, 3.8))
    positional.plot_sinusoidal(length, dim, columns=columns, ax=[axes[0], axes[2]])
    positional.plot_binary_counter(n, sinusoid=False, ax=axes[1])
    axes[1].set_title(f"0 .. {n - 1} in binary")
    axes[2].set_title(f"sinusoidal encoding, {length} x {dim}")
    return fig


def draw_nw(**options) -> Any:
    ex = charts.nadaraya_watson_example(**options)
    return charts.plot_nadaraya_watson(
        ex.x_train, ex.y_train, ex.x_test, ex.y_truth, ex.predictions
    )


def draw_nw_weights(*, which, **options) -> Any:
    ex = charts.nadaraya_watson_example(**options)
    label = next(k for k in ex.weights if k.startswith(which))
    return charts.plot_nadaraya_watson_weights(
        ex.weights[label], x_test=ex.x_test, x_train=ex.x_train, title=f"weights: {label}"
    )


def draw_mask(*, name, length, kv_length, **mask_options) -> Any:
    kind, _, _ = viz_masks.target_parameters(name)
    if kind == "mechanism":
        mask_options = viz_masks.with_demo_options(name, length, mask_options)
    return viz_masks.plot_mask(name, length, kv_length=kv_length, **mask_options)


def draw_patterns(*, names, length) -> Any:
    return viz_masks.plot_patterns(tuple(names), length)


def draw_mechanisms(*, names, length, dim, heads, head, seed, ncols) -> Any:
    weights = compare.mechanism_weights(
        tuple(names), length=length, dim=dim, heads=heads, seed=seed
    )
    title = f"head {head}, same tokens and projections (untrained)"
    return compare.plot_mechanisms(weights, head=head, title=title, ncols=ncols)


def draw_vision_maps(*, names, size, channels, row, col, seed) -> Any:
    query = (size // 2 if row is None else row, size // 2 if col is None else col)
    result = vision_maps.vision_attention_maps(
        tuple(names), channels=channels, size=size, query=query, seed=seed
    )
    title = f"weights of pixel {query} (untrained modules, a disc on a gradient)"
    return vision_maps.plot_vision_maps(result, query=query, title=title)
