"""``AttentionProbe``: the identity submodule every attention module routes its weights through."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionProbe", "probes_recording"]


class AttentionProbe(nn.Identity):
    """Identity module that makes post-softmax attention weights observable.

    Attention modules call ``self.probe(attn)`` on their ``(B, nh, L, S)`` weights. The call
    returns its input unchanged, so forward hooks (``attnzoo.viz.record_attention``) can read the
    weights without changing any signature. Because fast paths (SDPA) never build the weights, a
    module checks :attr:`recording` and takes its reference path while someone is listening.

    Shape:
        - Input: ``(B, nh, L, S)`` attention weights (rows sum to one, masked entries zero).
        - Output: the same tensor.

    Example:
        >>> probe = AttentionProbe()
        >>> probe.recording
        False
    """

    def __init__(self) -> None:
        super().__init__()
        self.recording = False

    def forward(self, attn: torch.Tensor) -> torch.Tensor:
        return attn


def probes_recording(module: nn.Module) -> bool:
    """True when ``module`` has an :class:`AttentionProbe` attribute ``probe`` that is recording."""
    probe = getattr(module, "probe", None)
    return isinstance(probe, AttentionProbe) and probe.recording
