"""MLP-Mixer token mixing (Tolstikhin et al. 2021): one MLP across the token axis."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int
from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.efficient._fixed_length import check_length, check_seq_len
from attnzoo.layers.dropout import Dropout
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["MixerTokenMixing"]

TOLSTIKHIN_2021 = Paper(
    title="MLP-Mixer: An all-MLP Architecture for Vision",
    authors="Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, "
    "Keysers, Uszkoreit, Lucic, Dosovitskiy",
    year=2021,
    url="https://arxiv.org/abs/2105.01601",
)


@EFFICIENT.register(
    "mixer",
    paper=TOLSTIKHIN_2021,
    tags=("attention_free", "mlp", "fixed_length"),
    complexity="O(L D_S C)",
)
class MixerTokenMixing(AttentionFreeBase):
    r"""MLP-Mixer token-mixing MLP: ``Y[:, c] = W2 GELU(W1 X[:, c] + b1) + b2`` for every channel.

    Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", 2021,
    https://arxiv.org/abs/2105.01601. The token-mixing sublayer of a Mixer block applies one MLP
    ``seq_len -> D_S -> seq_len`` to each channel column of ``X`` (``L x C``), shared across
    channels: ``U = X + (W2 GELU(W1 LayerNorm(X)))`` in the paper's notation, with
    ``W1 (D_S x L)`` and ``W2 (L x D_S)``. This module is the MLP only (no norm, no residual),
    computed as ``W2 @ GELU(W1 @ X + b1) + b2`` without transposing ``X``.

    Defaults reproduce the paper: hidden width ``D_S = token_hidden = dim // 2`` (the Mixer-S,
    B, L and H configurations all use ``D_S = C / 2``, timm's ``mlp_ratio=(0.5, 4.0)``), GELU,
    biases in both layers, ``nn.Linear`` initialisation (``fc1``: ``seq_len -> D_S``, ``fc2``:
    ``D_S -> seq_len``, the layout of timm's ``MixerBlock.mlp_tokens``). Cost ``O(L D_S C)``
    time, linear in ``L`` for a fixed width, and ``2 seq_len D_S`` parameters.

    What it can and cannot do:

    - **Fixed length**: built for ``seq_len`` tokens. A shorter input ``L`` uses ``W1[:, :L]``,
      ``W2[:L]`` and ``b2[:L]``, which is exactly the same as zero-padding the input to
      ``seq_len`` on the right and keeping the first ``L`` outputs. Longer inputs raise
      ``ValueError`` naming ``seq_len``.
    - **Padding by zeroing** (an addition; the paper has no masks): with a ``(B, L)`` boolean
      padding mask, masked tokens are set to zero before the MLP. Valid outputs then do not
      depend on padded *content*, and — because slicing equals zero-padding — a right-padded
      sequence (mask ``True`` on a prefix of ``n`` tokens) gives on its ``n`` valid tokens
      exactly the output of the unpadded length-``n`` sequence, whatever the amount of padding.
      A mask with holes zeroes those tokens in place (positions do not shift). Outputs at padded
      positions are not zero. Per-query or float masks raise ``NotImplementedError``.
    - **No causality**: each hidden unit mixes every token; ``is_causal=True`` raises
      ``NotImplementedError``. No cross-attention.
    - **No attention weights**: ``attnzoo.viz.record_attention`` raises ``ValueError`` naming
      the module (``has_attention_weights = False``).

    Contract arguments: ``num_heads``, ``head_dim`` and ``qkv_bias`` have no effect (the MLP is
    shared by all channels). ``attn_drop`` is the dropout on the hidden activations and
    ``proj_drop`` the dropout on the output (timm's ``Mlp`` drop, split in two; both 0 by
    default).

    Formula:
        $$
        Y_{:, c} = W_2\, \mathrm{GELU}(W_1 X_{:, c} + b_1) + b_2, \qquad
        W_1 \in \mathbb{R}^{D_S \times L}, \; W_2 \in \mathbb{R}^{L \times D_S}
        $$

        for every channel $c$, with $D_S$ = `token_hidden`.

    Args:
        dim: Model width ``C``.
        seq_len: Number of tokens ``S`` the MLP is built for (required).
        token_hidden: Hidden width ``D_S``; default ``max(1, dim // 2)``.
        num_heads: No effect (contract argument).
        head_dim: No effect (contract argument).
        qkv_bias: No effect (contract argument).
        attn_drop: Dropout on the hidden activations (training only).
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)`` with ``L <= seq_len``
        - mask: ``(B, L)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> mixer = MixerTokenMixing(16, seq_len=10)
        >>> mixer(torch.randn(2, 10, 16)).shape
        torch.Size([2, 10, 16])
        >>> mixer.fc1
        Linear(in_features=10, out_features=8, bias=True)
    """

    backend = "token-mixing MLP over the sequence dim"

    supports_mask = True
    fixed_length = True
    token_mixing = "MLP-Mixer mixes tokens with an MLP over the token axis (no weight matrix)"

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
        token_hidden: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.seq_len = check_seq_len(seq_len, "mixer")
        hidden = max(1, self.dim // 2) if token_hidden is None else token_hidden
        self.token_hidden = check_positive_int("token_hidden", hidden)
        self.fc1 = nn.Linear(self.seq_len, self.token_hidden)
        self.fc2 = nn.Linear(self.token_hidden, self.seq_len)
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
        if need_weights:  # the reference path, weights from the probe (or a clear refusal)
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, length, _ = x.shape
        check_length("mixer", length, self.seq_len)
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        if keep is not None:
            x = x.masked_fill(~keep[..., None], 0.0)
        w1, w2 = self.fc1.weight[:, :length], self.fc2.weight[:length]  # (D_S, L), (L, D_S)
        hidden = F.gelu(torch.matmul(w1, x) + self.fc1.bias[:, None])  # (B, D_S, C)
        y = torch.matmul(w2, self.hidden_drop(hidden)) + self.fc2.bias[:length, None]  # (B, L, C)
        y = self.proj_drop(y)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, seq_len={self.seq_len}, token_hidden={self.token_hidden}"
