"""ResMLP's cross-patch sublayer (Touvron et al. 2021): an affine map, a linear map of tokens."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.efficient._fixed_length import check_length, check_seq_len
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["Affine", "ResMLPMixing"]

TOUVRON_2021 = Paper(
    title="ResMLP: Feedforward networks for image classification with data-efficient training",
    authors="Touvron, Bojanowski, Caron, Cord, El-Nouby, Grave, Izacard, Joulin, Synnaeve, "
    "Verbeek, Jegou",
    year=2021,
    url="https://arxiv.org/abs/2105.03404",
)


class Affine(nn.Module):
    """``Aff(x) = alpha * x + beta`` per channel (ResMLP's normalisation); timm's layout."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.alpha, x)


@EFFICIENT.register(
    "resmlp",
    paper=TOUVRON_2021,
    tags=("attention_free", "mlp", "fixed_length"),
    complexity="O(L^2 C)",
)
class ResMLPMixing(AttentionFreeBase):
    r"""ResMLP token mixing: ``Y = A Aff(X) + b``, one linear map across the tokens.

    Touvron et al., "ResMLP: Feedforward networks for image classification with data-efficient
    training", 2021, https://arxiv.org/abs/2105.03404, eq. 1: the cross-patch sublayer
    ``Z = X + LayerScale(A Aff(X))`` with ``Aff`` a per-channel affine map (instead of a
    norm) and ``A`` one ``seq_len x seq_len`` linear layer shared by all channels. This module is
    ``A Aff(X) + b`` (no residual, no layer scale), laid out as timm's ``ResBlock``
    (``norm1``: :class:`Affine`, ``linear_tokens``).

    Can: ``(B, L)`` padding masks (padded tokens are zeroed after the affine map, so real
    outputs depend on real tokens only); fixed length (shorter inputs use the first ``L`` rows
    and columns of ``A``, longer ones raise). Cannot: causal calls (the paper's map is dense;
    ``NotImplementedError``), cross-attention, attention weights. ``num_heads``, ``head_dim``,
    ``qkv_bias`` and ``attn_drop`` have no effect.

    Formula:
        $$
        Y = A\, \mathrm{Aff}(X) + b, \qquad \mathrm{Aff}(X) = \alpha \odot X + \beta
        $$

        with $A$ one `seq_len` $\times$ `seq_len` linear map across the tokens, shared by the
        channels.

    Args:
        dim: Model width ``C``.
        seq_len: Longest input (required: ``A`` is ``seq_len x seq_len``).
        num_heads: No effect (contract argument).
        head_dim: No effect (contract argument).
        qkv_bias: No effect (contract argument).
        attn_drop: No effect (contract argument).
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``, ``L <= seq_len``; mask ``(B, L)`` bool
        - output: ``(B, L, C)``

    Example:
        >>> mix = ResMLPMixing(16, seq_len=10)
        >>> mix(torch.randn(2, 7, 16)).shape
        torch.Size([2, 7, 16])
    """

    backend = "affine maps and one linear layer across tokens"

    supports_mask = True
    fixed_length = True
    token_mixing = "ResMLP mixes tokens with one learned seq_len x seq_len linear layer"

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
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.seq_len = check_seq_len(seq_len, "resmlp")
        self.norm1 = Affine(self.dim)
        self.linear_tokens = nn.Linear(self.seq_len, self.seq_len)

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
        check_length("resmlp", length, self.seq_len)
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        z = self.norm1(x)  # (B, L, C)
        if keep is not None:
            z = z.masked_fill(~keep[..., None], 0.0)
        weight = self.linear_tokens.weight[:length, :length]  # (L, L)
        y = torch.matmul(weight, z) + self.linear_tokens.bias[:length, None]  # (B, L, C)
        y = self.proj_drop(y)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, seq_len={self.seq_len}"
