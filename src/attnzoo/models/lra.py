"""The Long Range Arena model: a Transformer encoder classifier (and its two-tower form)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_choice, check_positive_int, check_probability
from attnzoo.models._blocks import EncoderLayer, build_positions, check_padding_mask, check_tokens
from attnzoo.models._state import CheckedLoadMixin
from attnzoo.papers import LRA_2021
from attnzoo.registry import MODELS

__all__ = ["EncoderClassifier"]

POOLINGS = ("mean", "cls")


@MODELS.register(
    "encoder_classifier",
    paper=LRA_2021,
    tags=("encoder", "classification", "lra"),
    complexity="O(L^2 d) per layer with mha; attention per its mechanism",
)
class EncoderClassifier(CheckedLoadMixin, nn.Module):
    r"""Transformer encoder + pooling + MLP head: the model of every Long Range Arena task.

    Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers", 2021,
    https://arxiv.org/abs/2011.04006, and its released configurations: token embedding, absolute
    positions, ``num_layers`` pre-LN encoder layers (GELU feed-forward) with a final LayerNorm,
    pooling over the real tokens — a learned ``[CLS]`` vector prepended (``pooling="cls"``) or
    the mean of the real tokens (``"mean"``) — and the head ``Linear(head_dim) -> ReLU ->
    Linear(num_classes)``. ``dual=True`` is the two-tower model of the retrieval task: both
    documents go through the same encoder and the head sees ``[x1, x2, x1 * x2, x1 - x2]``.
    ``attention`` names the mechanism of every layer; fixed-length mechanisms get
    ``seq_len = max_len`` (+1 with the CLS token) unless ``attention_kwargs`` sets it.

    Defaults are the small configuration of the PyTorch re-implementations of LRA
    (Nyströmformer, Skyformer, xformers: 2 layers, width 64, 2 heads, FFN 128, learned positions,
    mean pooling), which trains on a CPU; the arena's presets set LRA's per-task configurations.
    Padding uses attnzoo's polarity (``True`` = real token) and defaults to ``tokens != pad_id``
    (LRA pads with 0); a row with no real token pools to zeros.

    Formula:
        $$
        z_0 = [x_{\mathrm{cls}};\, E x] + E_{\mathrm{pos}}, \quad
        z'_l = z_{l-1} + \mathrm{Attn}(\mathrm{LN}(z_{l-1})), \quad
        z_l = z'_l + \mathrm{FFN}(\mathrm{LN}(z'_l)), \quad
        y = W_2\, \mathrm{ReLU}(W_1\, \mathrm{pool}(\mathrm{LN}(z_L)))
        $$

        (`pooling="cls"` takes $z_L^0$, `"mean"` the mean of the real tokens and no class token).

    Args:
        vocab_size: Vocabulary size (LRA bytes: 257 with 0 = padding).
        num_classes: Output classes.
        dim: Model width.
        num_heads: Attention heads.
        num_layers: Encoder layers.
        ffn_dim: Feed-forward width.
        head_dim: Hidden width of the classifier head (default ``ffn_dim``, as LRA's ``mlp_dim``).
        dropout: Dropout on embeddings and sub-layer outputs.
        attn_dropout: Dropout on attention weights.
        max_len: Longest input (tokens, without the CLS token).
        pos_encoding: ``"learned"``, ``"sinusoidal"`` (LRA's default) or ``"none"``.
        pooling: ``"mean"`` over real tokens or ``"cls"``.
        norm_first: Pre-LN (LRA) or post-LN.
        activation: Feed-forward activation (``"gelu"``).
        dual: Two-tower retrieval model (``forward(tokens, tokens2)``).
        pad_id: Padding id (default masks), or None.
        attention: Mechanism of every layer (registry name, ``"mha"``).
        attention_kwargs: Its constructor options.

    Shape:
        - tokens: ``(B, L)`` ids (and ``tokens2`` ``(B, L2)`` when ``dual``) -> ``(B, num_classes)``

    Example:
        >>> model = EncoderClassifier(vocab_size=20, num_classes=10, max_len=64)
        >>> model(torch.randint(1, 20, (2, 50))).shape
        torch.Size([2, 10])
        >>> dual = EncoderClassifier(vocab_size=257, num_classes=2, max_len=64, dual=True)
        >>> dual(torch.randint(1, 257, (2, 40)), torch.randint(1, 257, (2, 30))).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        dim: int = 64,
        num_heads: int = 2,
        num_layers: int = 2,
        ffn_dim: int = 128,
        head_dim: int | None = None,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        max_len: int = 1024,
        pos_encoding: str = "learned",
        pooling: str = "mean",
        norm_first: bool = True,
        activation: str = "gelu",
        dual: bool = False,
        pad_id: int | None = 0,
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.dim = check_positive_int("dim", dim)
        self.max_len = check_positive_int("max_len", max_len)
        check_positive_int("num_layers", num_layers)
        check_probability("dropout", dropout)
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        if pad_id is not None and check_positive_int("pad_id", pad_id, minimum=0) >= vocab_size:
            raise ValueError(f"pad_id={pad_id} is outside the vocabulary {vocab_size}")
        self.pad_id, self.dual = pad_id, bool(dual)
        prefix = 1 if pooling == "cls" else 0
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if prefix else None
        self.pos = build_positions(pos_encoding, dim, max_len=max_len + prefix, dropout=dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                dim,
                num_heads=num_heads,
                ffn_dim=ffn_dim,
                dropout=dropout,
                attn_dropout=attn_dropout,
                activation=activation,
                norm_first=norm_first,
                attention=attention,
                attention_kwargs=attention_kwargs,
                seq_len=max_len + prefix,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        hidden = check_positive_int("head_dim", head_dim or ffn_dim)
        features = 4 * dim if dual else dim
        self.head = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def _mask(self, name: str, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        check_tokens(name, tokens, self.vocab_size)
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"{name} has {tokens.shape[1]} tokens, more than max_len={self.max_len}"
            )
        if mask is not None:
            return check_padding_mask(f"mask for {name}", mask, tokens, name)
        if self.pad_id is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        return tokens != self.pad_id

    def encode(self, tokens: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features ``(B, dim)`` of one tower."""
        real = self._mask("tokens", tokens, mask)  # (B, L)
        x = self.embed(tokens)  # (B, L, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            real = torch.cat([real.new_ones(real.shape[0], 1), real], dim=1)  # (B, 1 + L)
        x = self.pos(x)
        attn_mask = None if bool(real.all()) else real
        for layer in self.layers:
            x = layer(x, mask=attn_mask)
        x = self.norm(x)
        if self.cls_token is not None:
            return x[:, 0]
        weights = real.to(x.dtype)[..., None]  # (B, L, 1)
        count = weights.sum(1).clamp_min(1.0)  # (B, 1): a row without real tokens pools to 0
        return (x * weights).sum(1) / count

    def forward(
        self,
        tokens: torch.Tensor,
        tokens2: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        mask2: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not self.dual:
            if tokens2 is not None or mask2 is not None:
                raise ValueError(
                    "tokens2/mask2 are for the two-tower model: build it with dual=True"
                )
            return self.head(self.encode(tokens, mask=mask))
        if tokens2 is None:
            raise ValueError("the dual (two-tower) model needs tokens2, the second document")
        first = self.encode(tokens, mask=mask)
        second = self.encode(tokens2, mask=mask2)
        if second.shape[0] != first.shape[0]:
            raise ValueError(
                f"tokens and tokens2 must have the same batch, got {first.shape[0]} and "
                f"{second.shape[0]}"
            )
        return self.head(torch.cat([first, second, first * second, first - second], dim=-1))

    def extra_repr(self) -> str:
        return (
            f"vocab_size={self.vocab_size}, num_classes={self.num_classes}, dim={self.dim}, "
            f"pooling={self.pooling!r}, dual={self.dual}"
        )
