"""``AttentionFreeBase``: the module contract for token mixers without q/k/v projections.

MLP-Mixer's token MLP and FNet's Fourier transform mix tokens without queries, keys, values or
attention weights. They still follow the sequence contract of docs/design.md section 5 —
``Cls(dim, *, num_heads=8, head_dim=None, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, ...)``
and ``forward(x, context=None, *, mask=None, is_causal=False)`` — so that any model can swap
them in. This base validates those arguments and reuses :class:`AttentionBase`'s input and mask
checks (the same functions, not copies) without creating projections that the mechanism would
not use (an unused parameter would get no gradient).
"""

from __future__ import annotations

from torch import nn

from attnzoo._checks import check_positive_int, check_probability, type_name
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.layers.dropout import Dropout

__all__ = ["AttentionFreeBase"]


class AttentionFreeBase(nn.Module):
    """Contract arguments, input checks and output dropout for attention-free token mixers.

    ``num_heads``, ``head_dim`` and ``qkv_bias`` are validated and stored; each subclass
    documents whether they do anything. ``attn_drop`` is stored as a
    probability for the subclass to use or ignore; ``proj_drop`` is an ``nn.Dropout`` on the
    output. No ``probe``: these mixers have no attention weights
    (``has_attention_weights = False``), so ``attnzoo.viz.record_attention`` refuses a model
    containing one, with a ``ValueError`` that names it and quotes its ``token_mixing``.

    Args:
        dim: Model width ``C``.
        num_heads: Accepted for the contract (``>= 1``).
        head_dim: Accepted for the contract (``None`` or ``>= 1``).
        qkv_bias: Accepted for the contract (a bool).
        attn_drop: Probability in ``[0, 1)``, stored as ``self.attn_drop``.
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``; output the same
    """

    supports_mask = False
    supports_causal = False
    supports_cross = False
    backend: str | None = None  # how the mixer computes (``attnzoo info`` prints it)
    fixed_length = False
    has_attention_weights = False
    token_mixing = "it mixes tokens without attention weights"

    # The checks of AttentionBase only read dim, num_heads, context_dim and the class flags.
    check_inputs = AttentionBase.check_inputs
    check_mask = AttentionBase.check_mask
    padding_mask = AttentionBase.padding_mask

    @property
    def no_weights_reason(self) -> str:
        return self.token_mixing

    forward_with_weights = AttentionBase.forward_with_weights  # raises: there are none

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.context_dim = self.dim
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.head_dim = None if head_dim is None else check_positive_int("head_dim", head_dim)
        if not isinstance(qkv_bias, bool):
            raise TypeError(f"qkv_bias must be a bool, got {type_name(qkv_bias)}")
        self.qkv_bias = qkv_bias
        self.attn_drop = check_probability("attn_drop", attn_drop)
        self.proj_drop = Dropout(check_probability("proj_drop", proj_drop))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
