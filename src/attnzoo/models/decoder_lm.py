"""A causal (decoder-only) Transformer language model with any causal mechanism."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_finite, check_positive_int, check_probability
from attnzoo.models._blocks import EncoderLayer, build_positions, check_padding_mask, check_tokens
from attnzoo.models._session import LayerCaches, resolve_use_cache
from attnzoo.models._state import CheckedLoadMixin
from attnzoo.models.decoding import search
from attnzoo.registry import MODELS, Paper

__all__ = ["LIU_2018", "DecoderLM"]

LIU_2018 = Paper(
    title="Generating Wikipedia by Summarizing Long Sequences",
    authors="Liu, Saleh, Pot, Goodrich, Sepassi, Kaiser, Shazeer",
    year=2018,
    url="https://arxiv.org/abs/1801.10198",
)


@MODELS.register(
    "decoder_lm",
    paper=LIU_2018,
    tags=("decoder_only", "language_model", "causal"),
    complexity="O(T^2 d) per layer with mha; attention per its mechanism",
)
class DecoderLM(CheckedLoadMixin, nn.Module):
    r"""Decoder-only Transformer language model: next-token logits and ``generate``.

    The Transformer decoder without encoder-decoder attention (Liu et al., "Generating Wikipedia
    by Summarizing Long Sequences", 2018, https://arxiv.org/abs/1801.10198; the GPT layout of
    Radford et al. 2018/2019): token embedding + positions, ``num_layers`` causal self-attention
    + feed-forward layers (pre-LN with a final LayerNorm by default, as GPT-2), and an output
    projection tied to the embedding. ``attention`` is any registered mechanism with
    ``supports_causal`` (checked at construction). ``generate`` continues a prompt greedily or
    with beam search, with a :class:`~attnzoo.KVCache` per layer for ``mha`` and a recurrent
    state for ``linear``/``performer`` (other mechanisms recompute the prefix: same tokens).

    Formula:
        $$
        h_0 = E x + E_{\mathrm{pos}}, \quad
        h'_l = h_{l-1} + \mathrm{Attn}_{\mathrm{causal}}(\mathrm{LN}(h_{l-1})), \quad
        h_l = h'_l + \mathrm{FFN}(\mathrm{LN}(h'_l)), \quad
        p(x_{t+1} \mid x_{\le t}) = \mathrm{softmax}(\mathrm{LN}(h_L)_t E^\top)
        $$

    Args:
        vocab_size: Vocabulary size.
        dim: Model width.
        num_heads: Attention heads.
        num_layers: Decoder layers.
        ffn_dim: Feed-forward width (default ``4 * dim``).
        dropout: Dropout on embeddings and sub-layer outputs.
        attn_dropout: Dropout on attention weights.
        max_len: Longest sequence (positions).
        pos_encoding: ``"learned"`` (GPT), ``"sinusoidal"`` or ``"none"``.
        norm_first: Pre-LN (default) or the original post-LN.
        activation: Feed-forward activation (``"gelu"``).
        tie_embeddings: Output projection reuses the token embedding.
        pad_id: Padding id (forward's mask defaults to ``tokens != pad_id``), or None.
        eos_id: End token of ``generate``, or None.
        attention: Mechanism of every layer (registry name, ``"mha"``).
        attention_kwargs: Its constructor options.

    Shape:
        - tokens: ``(B, T)`` ids -> logits ``(B, T, vocab_size)``; ``generate``: ``(B, T_new)``

    Example:
        >>> lm = DecoderLM(vocab_size=50, dim=32, num_heads=4, num_layers=2, max_len=64)
        >>> lm(torch.randint(0, 50, (2, 9))).shape
        torch.Size([2, 9, 50])
        >>> lm.generate(torch.randint(0, 50, (2, 3)), max_len=5).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        dim: int = 512,
        num_heads: int = 8,
        num_layers: int = 6,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        max_len: int = 1024,
        pos_encoding: str = "learned",
        norm_first: bool = True,
        activation: str = "gelu",
        tie_embeddings: bool = True,
        pad_id: int | None = None,
        eos_id: int | None = None,
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.dim = check_positive_int("dim", dim)
        self.max_len = check_positive_int("max_len", max_len)
        check_positive_int("num_layers", num_layers)
        check_probability("dropout", dropout)
        for name, value in (("pad_id", pad_id), ("eos_id", eos_id)):
            if value is not None and check_positive_int(name, value, minimum=0) >= vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary {vocab_size}")
        self.pad_id, self.eos_id = pad_id, eos_id
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = build_positions(pos_encoding, dim, max_len=max_len, dropout=dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                dim,
                num_heads=num_heads,
                ffn_dim=ffn_dim or 4 * dim,
                dropout=dropout,
                attn_dropout=attn_dropout,
                activation=activation,
                norm_first=norm_first,
                causal=True,
                attention=attention,
                attention_kwargs=attention_kwargs,
                seq_len=max_len,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def _logits(self, tokens: torch.Tensor, mask, caches: list | None, offset: int) -> torch.Tensor:
        x = self.pos(self.embed(tokens), offset=offset)  # (B, T, dim)
        for index, layer in enumerate(self.layers):
            x = layer(x, mask=mask, is_causal=True, cache=None if caches is None else caches[index])
        return self.head(self.norm(x))

    def forward(self, tokens: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_tokens("tokens", tokens, self.vocab_size)
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"tokens has {tokens.shape[1]} positions, more than max_len={self.max_len}"
            )
        if mask is None and self.pad_id is not None:
            real = tokens != self.pad_id
            mask = None if bool(real.all()) else real
        elif mask is not None:
            check_padding_mask("mask", mask, tokens, "tokens")
        return self._logits(tokens, mask, None, 0)

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        *,
        max_len: int,
        beam_size: int = 1,
        eos_id: int | None = None,
        alpha: float = 0.6,
        use_cache: bool | None = None,
    ) -> torch.Tensor:
        """Continue ``prompt`` by up to ``max_len`` tokens (greedy or beam search), in eval mode.

        Args:
            prompt: ``(B, P)`` ids, every row a real prefix of the same length.
            max_len: Most new tokens (``>= 1``); ``P + max_len`` must fit the model's max_len.
            beam_size: Beam width (1: greedy).
            eos_id: End token (default: the model's ``eos_id``; None never stops early).
            alpha: Length-penalty exponent of beam search.
            use_cache: None caches when the mechanism can; True requires it; False recomputes.

        Returns:
            ``(B, T)`` new ids, ``T <= max_len``; rows that ended are filled with ``pad_id``
            (0 when the model has none).
        """
        check_tokens("prompt", prompt, self.vocab_size)
        check_positive_int("max_len", max_len)
        beams = check_positive_int("beam_size", beam_size)
        check_finite("alpha", alpha)
        if prompt.shape[1] + max_len > self.max_len:
            raise ValueError(
                f"prompt length {prompt.shape[1]} + max_len {max_len} exceeds the model's "
                f"max_len={self.max_len}"
            )
        eos_id = self.eos_id if eos_id is None else check_positive_int("eos_id", eos_id, minimum=0)
        was_training = self.training
        self.eval()
        try:
            attns = [layer.attn for layer in self.layers]
            session = LayerCaches(
                attns,
                resolve_use_cache(attns, use_cache),
                lambda tokens, caches, offset: self._logits(tokens, None, caches, offset),
            )
            pad = 0 if self.pad_id is None else self.pad_id
            return search(
                session,
                prompt,
                beam_size=beams,
                max_len=max_len,
                eos_id=eos_id,
                pad_id=pad,
                alpha=alpha,
            )
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, dim={self.dim}, max_len={self.max_len}"
