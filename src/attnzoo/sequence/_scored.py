"""``ScoredAttention``: multi-head attention whose scores and normaliser a subclass chooses.

The shared shell of ``sigmoid_attention``, ``topk_attention`` and ``l2_attention``: the four
projections, mask validation, bottom-right causality, the probe, ``need_weights`` and the
empty-input rule come from here; a subclass defines :meth:`ScoredAttention.scores` (``(B, nh,
L, S)`` from ``q`` and ``k``) and :meth:`ScoredAttention.normalize` (weights from scores and the
merged mask). Weights are always explicit (``O(L S)`` memory), like ``attention_reference``.
"""

from __future__ import annotations

import torch

from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.attention_base import AttentionBase

__all__ = ["ScoredAttention"]


class ScoredAttention(AttentionBase):
    """Dense multi-head attention with a subclass's scores and normaliser (see module doc)."""

    def scores(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, nh, L, S)`` scores of ``q (B, nh, L, hd)`` against ``k (B, nh, S, hd)``.

        ``mask`` is the validated user mask (for scores that depend on the real keys).
        """
        return (q * self.head_dim**-0.5) @ k.transpose(-2, -1)

    def normalize(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Weights from scores; exact zeros where ``mask`` forbids and on dead rows."""
        return safe_softmax(scores, mask)

    def project_values(self, x: torch.Tensor, context: torch.Tensor | None):
        """``q, k, v`` heads (a subclass may tie or reshape them)."""
        return self.project(x, context)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        q, k, v = self.project_values(x, context)  # (B, nh, L, hd), (B, nh, S, hd), (B, nh, S, dv)
        batch, _, q_len, _ = q.shape
        mask = self.check_mask(mask, batch, q_len, k.shape[2], q.dtype)
        compute = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        scores = self.scores(q.to(compute), k.to(compute), mask)  # (B, nh, L, S)
        out, attn = self.attend_scores(scores, v.to(compute), mask, is_causal, self.normalize)
        y = self.finish(out.to(q.dtype), unbatched)
        if not need_weights:
            return y
        attn = attn.to(q.dtype)
        return y, attn.squeeze(0) if unbatched else attn
