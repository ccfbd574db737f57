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
    ``(B, nh, L, S)`` weights.

    Args:
        model: Any module containing attnzoo attention modules.
        detach: Store detached tensors (default) so the graph is not kept alive.

    Yields:
        ``{module_name: weights}``, filled as the model runs.

    Example:
        >>> import attnzoo
        >>> mha = attnzoo.create("mha", 16, num_heads=2)
        >>> with record_attention(mha) as maps:
        ...     _ = mha(torch.randn(1, 5, 16))
        >>> maps[""].shape
        torch.Size([1, 2, 5, 5])
    """
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
