"""gMLP (Liu et al. 2021): channel MLP with a spatial gating unit across tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.efficient._fixed_length import check_length, check_seq_len
from attnzoo.layers.dropout import Dropout
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["GatedMLPMixing", "SpatialGatingUnit"]

LIU_2021 = Paper(
    title="Pay Attention to MLPs",
    authors="Liu, Dai, So, Le",
    year=2021,
    url="https://arxiv.org/abs/2105.08050",
)


class SpatialGatingUnit(nn.Module):
    """``s(Z) = Z_1 * (W LayerNorm(Z_2) + b)``: half the channels gate the other half.

    ``W`` (``seq_len x seq_len``, across tokens) starts near zero and ``b`` at one, so the unit
    starts as the identity on ``Z_1`` (timm's initialisation: ``W ~ N(0, 1e-6^2)``). Names and
    layout as timm's ``SpatialGatingUnit`` (``norm``, ``proj``), whose state dicts load.
    """

    def __init__(self, channels: int, seq_len: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels // 2)
        self.proj = nn.Linear(seq_len, seq_len)
        nn.init.normal_(self.proj.weight, std=1e-6)
        nn.init.ones_(self.proj.bias)

    def forward(
        self, z: torch.Tensor, keep: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        length = z.shape[1]
        u, v = z.chunk(2, dim=-1)  # (B, L, D/2) x 2
        v = self.norm(v)
        if keep is not None:  # padded tokens take no part in the token mixing
            v = v.masked_fill(~keep[..., None], 0.0)
        weight = self.proj.weight[:length, :length]  # (L, L)
        if is_causal:
            weight = weight.tril()
        mixed = torch.matmul(weight, v) + self.proj.bias[:length, None]  # (B, L, D/2)
        return u * mixed


@EFFICIENT.register(
    "gmlp",
    paper=LIU_2021,
    tags=("attention_free", "mlp", "gating", "fixed_length", "causal"),
    complexity="O(L^2 D + L C D), D = ffn_dim",
)
class GatedMLPMixing(AttentionFreeBase):
    r"""gMLP's token mixing: ``Y = s(GELU(X U)) V`` with the spatial gating unit ``s``.

    Liu, Dai, So and Le, "Pay Attention to MLPs", NeurIPS 2021, https://arxiv.org/abs/2105.08050.
    A gMLP block is ``X + Y`` with ``Y = (s(GELU(LayerNorm(X) U))) V``: a channel expansion
    ``U`` (``C -> ffn_dim``), a spatial gating unit (:class:`SpatialGatingUnit`) in which one
    half of the channels is multiplied by a linear map across the tokens of the other half, and
    a projection ``V`` (``ffn_dim / 2 -> C``). This module is that path without the outer norm
    and residual, laid out as timm's ``GatedMlp`` (``fc1``, ``gate``, ``fc2``); defaults are the
    paper's ``ffn_dim = 6 C``, GELU, biases everywhere.

    Can: ``(B, L)`` padding masks (padded tokens are zeroed in the gated half before the token
    map, so real outputs depend on real tokens only, and on a right-padded sequence equal the
    unpadded one); ``is_causal=True`` makes the token map lower-triangular (the paper's
    autoregressive variant). Fixed length: built for ``seq_len`` tokens, shorter inputs use the
    first ``L`` rows and columns of ``W``, longer ones raise. No attention weights. ``num_heads``,
    ``head_dim``, ``qkv_bias`` have no effect; ``attn_drop`` drops the hidden activations.

    Formula:
        $$
        Y = s\big(\mathrm{GELU}(X U)\big) V, \qquad s(Z) = Z_1 \odot \big(W\, \mathrm{LN}(Z_2) +
        b\big)
        $$

        with $Z = [Z_1, Z_2]$ split along the channels and $W$ a `seq_len` $\times$ `seq_len` map
        across tokens.

    Args:
        dim: Model width ``C``.
        seq_len: Longest input (required: ``W`` is ``seq_len x seq_len``).
        ffn_dim: Hidden width ``D`` (even); default ``6 * dim`` (the paper's).
        num_heads: No effect (contract argument).
        head_dim: No effect (contract argument).
        qkv_bias: No effect (contract argument).
        attn_drop: Dropout on the hidden activations (training only).
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``, ``L <= seq_len``; mask ``(B, L)`` bool
        - output: ``(B, L, C)``

    Example:
        >>> gmlp = GatedMLPMixing(16, seq_len=10)
        >>> gmlp(torch.randn(2, 10, 16), is_causal=True).shape
        torch.Size([2, 10, 16])
        >>> gmlp.fc1.out_features, gmlp.fc2.in_features  # ffn_dim = 6 C, halved by the gate
        (96, 48)
    """

    backend = "spatial gating unit: one (L, L) token projection"

    supports_mask = True
    supports_causal = True
    fixed_length = True
    token_mixing = "gMLP mixes tokens with a learned seq_len x seq_len map (no attention weights)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        seq_len: int | None = None,
        ffn_dim: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.seq_len = check_seq_len(seq_len, "gmlp")
        self.ffn_dim = check_positive_int("ffn_dim", 6 * self.dim if ffn_dim is None else ffn_dim)
        if self.ffn_dim % 2:
            raise ValueError(f"ffn_dim must be even (it is split in two halves), got {ffn_dim}")
        self.fc1 = nn.Linear(self.dim, self.ffn_dim)
        self.gate = SpatialGatingUnit(self.ffn_dim, self.seq_len)
        self.fc2 = nn.Linear(self.ffn_dim // 2, self.dim)
        self.hidden_drop = Dropout(self.attn_drop)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # refused: there are none
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, length, _ = x.shape
        check_length("gmlp", length, self.seq_len)
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        hidden = self.hidden_drop(F.gelu(self.fc1(x)))  # (B, L, D)
        y = self.proj_drop(self.fc2(self.gate(hidden, keep, is_causal)))  # (B, L, C)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, seq_len={self.seq_len}, ffn_dim={self.ffn_dim}"
