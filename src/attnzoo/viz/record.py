"""Capture attention weights from any model without changing its signatures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from attnzoo.layers.probe import AttentionProbe

__all__ = ["record_attention"]


@contextlib.contextmanager
def record_attention(model: nn.Module, *, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the post-softmax weights of every attention module inside ``model``.

    Every attnzoo attention module routes its weights through an :class:`AttentionProbe`
    submodule. Inside this context each probe is hooked and set to ``recording``, which makes
    its module take the reference path (weights are built even where the fast path would skip
    them). The dict maps the probe's module name (``"blocks.0.attn"``) to its last
    ``(B, nh, L, S)`` weights, in the order the modules ran.

    Works on every model, for every mechanism that has explicit weights. Token mixers without
    them (class attribute ``has_attention_weights = False``: ``fnet``, ``mixer``) cannot be
    recorded; a model containing one is refused at entry.

    Args:
        model: Any module containing attnzoo attention modules.
        detach: Store detached tensors (default) so the graph is not kept alive.

    Yields:
        ``{module_name: weights}``, filled as the model runs.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` contains modules without attention weights (each is named, with
            its class and how it mixes tokens).

    Example:
        >>> import attnzoo
        >>> mha = attnzoo.create("mha", 16, num_heads=2)
        >>> with record_attention(mha) as maps:
        ...     _ = mha(torch.randn(1, 5, 16))
        >>> maps[""].shape
        torch.Size([1, 2, 5, 5])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    weightless = [
        (name, module)
        for name, module in model.named_modules()
        if getattr(type(module), "has_attention_weights", True) is False
    ]
    if weightless:
        by_class: dict[type, list[str]] = {}
        for name, module in weightless:
            by_class.setdefault(type(module), []).append(repr(name or "<model>"))
        details = "; ".join(
            f"{', '.join(paths)} ({cls.__name__}) "
            f"{'has' if len(paths) == 1 else 'have'} no attention weights: "
            f"{getattr(cls, 'token_mixing', 'it mixes tokens without them')}"
            for cls, paths in by_class.items()
        )
        raise ValueError(
            f"record_attention cannot record this model: {details}. Record a mechanism with an "
            "explicit weight matrix (mha, local, performer ...) instead."
        )
    maps: dict[str, torch.Tensor] = {}
    handles = []
    probes = []
    for name, module in model.named_modules():
        if not isinstance(module, AttentionProbe):
            continue
        owner = name.rsplit(".", 1)[0] if "." in name else ""

        def hook(_module, _inputs, output, key=owner):
            maps[key] = output.detach() if detach else output

        probes.append(module)
        handles.append(module.register_forward_hook(hook))
        module.recording = True
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
        for probe in probes:
            probe.recording = False
