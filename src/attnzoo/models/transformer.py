"""The Transformer encoder-decoder (Vaswani et al. 2017) with any registered self-attention."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_finite, check_positive_int, check_probability
from attnzoo.models._blocks import (
    DecoderLayer,
    EncoderLayer,
    build_positions,
    check_padding_mask,
    check_tokens,
)
from attnzoo.models._session import LayerCaches, resolve_use_cache
from attnzoo.models._state import CheckedLoadMixin
from attnzoo.models.decoding import search
from attnzoo.papers import VASWANI_2017
from attnzoo.registry import MODELS
from attnzoo.sequence.cache import KVCache
from attnzoo.sequence.multihead import MultiHeadAttention as MHA

__all__ = ["Transformer", "padding_mask", "transformer_base", "transformer_big"]


def padding_mask(tokens: torch.Tensor, pad_id: int | None) -> torch.Tensor | None:
    """``tokens != pad_id`` as a ``(B, L)`` mask (``True`` = real); None when nothing is padding."""
    if pad_id is None:
        return None
    real = tokens != pad_id
    return None if bool(real.all()) else real


@MODELS.register(
    "transformer",
    paper=VASWANI_2017,
    tags=("encoder_decoder", "seq2seq", "translation"),
    complexity="O((S^2 + T^2 + S T) d) per layer with mha; attention per its mechanism",
)
class Transformer(CheckedLoadMixin, nn.Module):
    r"""Encoder-decoder Transformer with a causal decoder, greedy and beam-search ``generate``.

    Vaswani et al., "Attention Is All You Need", 2017, https://arxiv.org/abs/1706.03762: token
    embeddings scaled by ``sqrt(dim)`` plus sinusoidal positions, ``num_encoder_layers`` layers
    of self-attention + feed-forward, ``num_decoder_layers`` layers of causal self-attention +
    encoder-decoder attention + feed-forward, each sub-layer in a residual connection with
    LayerNorm after it (post-LN, the paper's default; ``norm_first=True`` is pre-LN with a final
    LayerNorm on each stack), and a softmax over the target vocabulary whose weights are the
    target embedding (section 3.4; ``tie_output=False`` unties them).

    ``attention`` names the mechanism of every self-attention layer (encoder and decoder), so
    ``attention="local"`` gives a local-attention Transformer; the decoder needs
    ``supports_causal`` and ``cross_attention`` (``mha`` by default) ``supports_cross``,
    both checked at construction. Padding masks use attnzoo's polarity (``True`` = real
    token) and default to ``tokens != pad_id``. ``generate`` encodes the source once and decodes
    with a :class:`~attnzoo.KVCache` per decoder layer (``mha``) or a recurrent state
    (``linear``, ``performer``); other mechanisms recompute the prefix, with the same tokens.
    The cross-attention (``mha``) projects the encoder output to keys and values once, at the
    first step, and keeps them in a second cache.

    Deviations from the paper: none in the architecture; embeddings are initialised
    ``N(0, dim^-0.5)`` (so the scaled embedding has unit variance, as in tensor2tensor) and
    linear layers keep PyTorch's default initialisation.

    Formula:
        $$
        \begin{aligned}
        \text{encoder: } & H \leftarrow \mathrm{LN}(H + \mathrm{MHA}(H, H)), \quad
        H \leftarrow \mathrm{LN}(H + \mathrm{FFN}(H)) \\
        \text{decoder: } & S \leftarrow \mathrm{LN}(S + \mathrm{MHA}_{\mathrm{causal}}(S, S)), \quad
        S \leftarrow \mathrm{LN}(S + \mathrm{MHA}(S, H)), \quad S \leftarrow \mathrm{LN}(S +
        \mathrm{FFN}(S)) \\
        & p(y_t \mid y_{<t}, x) = \mathrm{softmax}(S_t E^\top), \qquad
        H_0 = \sqrt{d}\, E x + PE
        \end{aligned}
        $$

        (post-LN, the paper's; `norm_first=True` gives pre-LN), $E$ the tied embedding.

    Args:
        src_vocab: Source vocabulary size.
        tgt_vocab: Target vocabulary size.
        dim: Model width ``d_model`` (512).
        num_heads: Attention heads ``h`` (8).
        num_encoder_layers: Encoder layers ``N`` (6).
        num_decoder_layers: Decoder layers ``N`` (6).
        ffn_dim: Feed-forward width ``d_ff`` (2048).
        dropout: ``P_drop`` on embeddings + positions and on every sub-layer output (0.1).
        attn_dropout: Dropout on attention weights (0, as the paper).
        norm_first: Pre-LN instead of the paper's post-LN.
        share_embeddings: One embedding for source and target (needs equal vocabularies).
        tie_output: The output projection reuses the target embedding.
        pad_id: Padding id (masks default to ``tokens != pad_id``); None disables it.
        bos_id: Start token of ``generate``.
        eos_id: End token of ``generate``.
        max_len: Longest source or target sequence (positions).
        pos_encoding: ``"sinusoidal"`` (paper), ``"learned"`` or ``"none"``.
        activation: Feed-forward activation (``"relu"``).
        attention: Self-attention mechanism (registry name, default ``"mha"``).
        attention_kwargs: Its constructor options.
        cross_attention: Encoder-decoder attention mechanism (``"mha"``).
        cross_attention_kwargs: Its options.

    Shape:
        - src: ``(B, S)`` ids; tgt: ``(B, T)`` ids; masks ``(B, S)`` / ``(B, T)`` bool
        - output: ``(B, T, tgt_vocab)`` logits; ``generate``: ``(B, T_out)`` ids

    Example:
        >>> model = Transformer(src_vocab=20, tgt_vocab=30, dim=32, num_heads=4,
        ...                     num_encoder_layers=1, num_decoder_layers=1, ffn_dim=64)
        >>> src, tgt = torch.randint(3, 20, (2, 7)), torch.randint(3, 30, (2, 5))
        >>> model(src, tgt).shape
        torch.Size([2, 5, 30])
        >>> model.generate(src, max_len=4).shape[0]
        2
    """

    def __init__(
        self,
        *,
        src_vocab: int,
        tgt_vocab: int,
        dim: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        norm_first: bool = False,
        share_embeddings: bool = False,
        tie_output: bool = True,
        pad_id: int | None = 0,
        bos_id: int = 1,
        eos_id: int | None = 2,
        max_len: int = 1024,
        pos_encoding: str = "sinusoidal",
        activation: str = "relu",
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
        cross_attention: str = "mha",
        cross_attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.src_vocab = check_positive_int("src_vocab", src_vocab)
        self.tgt_vocab = check_positive_int("tgt_vocab", tgt_vocab)
        self.dim = check_positive_int("dim", dim)
        check_positive_int("num_encoder_layers", num_encoder_layers)
        check_positive_int("num_decoder_layers", num_decoder_layers)
        self.max_len = check_positive_int("max_len", max_len)
        check_probability("dropout", dropout)
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if value is not None:
                check_positive_int(name, value, minimum=0)
                if value >= self.tgt_vocab:
                    raise ValueError(f"{name}={value} is outside the target vocabulary {tgt_vocab}")
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(
                "share_embeddings=True needs src_vocab == tgt_vocab (one joint vocabulary, as the "
                f"paper's byte-pair encoding), got {src_vocab} and {tgt_vocab}"
            )
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.norm_first = bool(norm_first)
        self.tgt_embed = nn.Embedding(tgt_vocab, dim)
        self.src_embed = self.tgt_embed if share_embeddings else nn.Embedding(src_vocab, dim)
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, std=dim**-0.5)
        self.src_pos = build_positions(pos_encoding, dim, max_len=max_len, dropout=dropout)
        self.tgt_pos = build_positions(pos_encoding, dim, max_len=max_len, dropout=dropout)
        common = {
            "num_heads": num_heads,
            "ffn_dim": ffn_dim,
            "dropout": dropout,
            "attn_dropout": attn_dropout,
            "activation": activation,
            "norm_first": norm_first,
        }
        self.encoder = nn.ModuleList(
            EncoderLayer(
                dim,
                attention=attention,
                attention_kwargs=attention_kwargs,
                seq_len=max_len,
                **common,
            )
            for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(
                dim,
                attention=attention,
                attention_kwargs=attention_kwargs,
                cross_attention=cross_attention,
                cross_attention_kwargs=cross_attention_kwargs,
                seq_len=max_len,
                memory_len=max_len,
                **common,
            )
            for _ in range(num_decoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.head = nn.Linear(dim, tgt_vocab, bias=False)
        if tie_output:
            self.head.weight = self.tgt_embed.weight

    # ------------------------------------------------------------------ pieces
    def _source(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor | None:
        check_tokens("src", src, self.src_vocab)
        if src.shape[1] > self.max_len:
            raise ValueError(f"src has {src.shape[1]} tokens, more than max_len={self.max_len}")
        if src_mask is None:
            return padding_mask(src, self.pad_id)
        return check_padding_mask("src_mask", src_mask, src, "src")

    def encode(
        self, src: torch.Tensor, *, src_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(memory (B, S, dim), src_mask)``: the encoder output and the mask it used."""
        src_mask = self._source(src, src_mask)
        x = self.src_pos(self.src_embed(src) * math.sqrt(self.dim))  # (B, S, dim)
        for layer in self.encoder:
            x = layer(x, mask=src_mask)
        return self.encoder_norm(x), src_mask

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        memory_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        caches: list | None = None,
        memory_caches: list | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Logits ``(B, T, tgt_vocab)`` of the decoder on ``tgt`` (positions from ``offset``)."""
        x = self.tgt_pos(self.tgt_embed(tgt) * math.sqrt(self.dim), offset=offset)  # (B, T, dim)
        for index, layer in enumerate(self.decoder):
            x = layer(
                x,
                memory,
                mask=tgt_mask,
                memory_mask=memory_mask,
                cache=None if caches is None else caches[index],
                memory_cache=None if memory_caches is None else memory_caches[index],
            )
        return self.head(self.decoder_norm(x))

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        *,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        memory, src_mask = self.encode(src, src_mask=src_mask)
        check_tokens("tgt", tgt, self.tgt_vocab)
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(
                f"src and tgt must have the same batch, got {src.shape[0]} and {tgt.shape[0]}"
            )
        if tgt.shape[1] > self.max_len:
            raise ValueError(f"tgt has {tgt.shape[1]} tokens, more than max_len={self.max_len}")
        if tgt_mask is None:
            tgt_mask = padding_mask(tgt, self.pad_id)
        else:
            check_padding_mask("tgt_mask", tgt_mask, tgt, "tgt")
        return self.decode(tgt, memory, memory_mask=src_mask, tgt_mask=tgt_mask)

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        *,
        max_len: int,
        beam_size: int = 1,
        eos_id: int | None = None,
        bos_id: int | None = None,
        src_mask: torch.Tensor | None = None,
        alpha: float = 0.6,
        use_cache: bool | None = None,
    ) -> torch.Tensor:
        """Translate ``src``: greedy (``beam_size=1``) or beam search, in eval mode.

        The source is encoded once; each decoder layer keeps a cache (see the class docstring).
        Rows that produced ``eos_id`` are filled with ``pad_id``; decoding stops early once every
        row ended. The model is put in eval mode for the call and restored afterwards.

        Args:
            src: ``(B, S)`` source ids.
            max_len: Most tokens to generate (``>= 1``).
            beam_size: Beam width (the paper uses 4 with ``alpha=0.6``).
            eos_id: End token (default: the model's ``eos_id``).
            bos_id: Start token (default: the model's ``bos_id``).
            src_mask: ``(B, S)`` padding mask (default ``src != pad_id``).
            alpha: Length-penalty exponent of beam search.
            use_cache: None caches when the mechanism can; True requires it; False recomputes.

        Returns:
            ``(B, T)`` generated ids without the start token, ``T <= max_len``.
        """
        check_positive_int("max_len", max_len)
        beams = check_positive_int("beam_size", beam_size)
        check_finite("alpha", alpha)
        eos_id = self.eos_id if eos_id is None else check_positive_int("eos_id", eos_id, minimum=0)
        bos_id = self.bos_id if bos_id is None else check_positive_int("bos_id", bos_id, minimum=0)
        if self.max_len < max_len + 1:
            raise ValueError(f"max_len={max_len} needs max_len + 1 <= the model's {self.max_len}")
        was_training = self.training
        self.eval()
        try:
            memory, src_mask = self.encode(src, src_mask=src_mask)
            cached = resolve_use_cache([layer.self_attn for layer in self.decoder], use_cache)
            if beams > 1:
                memory = memory.repeat_interleave(beams, dim=0)  # (B * K, S, dim)
                if src_mask is not None:
                    src_mask = src_mask.repeat_interleave(beams, dim=0)  # (B * K, S)

            # the encoder output's keys and values: projected once per cross-attention layer
            memory_caches = [
                KVCache() if cached and type(layer.cross_attn).forward is MHA.forward else None
                for layer in self.decoder
            ]

            def forward(tokens, caches, offset):
                return self.decode(
                    tokens,
                    memory,
                    memory_mask=src_mask,
                    caches=caches,
                    memory_caches=memory_caches if caches is not None else None,
                    offset=offset,
                )

            session = LayerCaches(
                [layer.self_attn for layer in self.decoder], cached, forward, memory_caches
            )
            start = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
            pad = 0 if self.pad_id is None else self.pad_id
            return search(
                session,
                start,
                beam_size=beams,
                max_len=max_len,
                eos_id=eos_id,
                pad_id=pad,
                alpha=alpha,
            )
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        return f"src_vocab={self.src_vocab}, tgt_vocab={self.tgt_vocab}, dim={self.dim}"


def _paper_config(name: str, *, dim: int, heads: int, ffn: int, dropout: float, params: str):
    def factory(*, src_vocab: int, tgt_vocab: int, **kwargs: Any) -> Transformer:
        return Transformer(
            src_vocab=src_vocab,
            tgt_vocab=tgt_vocab,
            **{
                "dim": dim,
                "num_heads": heads,
                "num_encoder_layers": 6,
                "num_decoder_layers": 6,
                "ffn_dim": ffn,
                "dropout": dropout,
                **kwargs,
            },
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"""The Transformer ({name.split("_")[1]}) of Vaswani et al. 2017, Table 3.

    "Attention Is All You Need", https://arxiv.org/abs/1706.03762: N = 6, d_model = {dim},
    d_ff = {ffn}, h = {heads}, d_k = d_v = {dim // heads}, P_drop = {dropout}; {params} parameters
    with the paper's shared 37,000-token vocabulary (``share_embeddings=True``). Label smoothing
    (0.1) is a training setting, not part of the model.

    Args:
        src_vocab: Source vocabulary.
        tgt_vocab: Target vocabulary.
        **kwargs: Any other :class:`Transformer` option (``attention=``, ``dropout=`` ...).

    Shape:
        - src ``(B, S)``, tgt ``(B, T)`` -> ``(B, T, tgt_vocab)``

    Example:
        >>> model = {name}(src_vocab=100, tgt_vocab=100, num_encoder_layers=1,
        ...                num_decoder_layers=1)
        >>> model.dim, model.decoder[0].self_attn.num_heads
        ({dim}, {heads})
    """
    return MODELS.register(
        name,
        paper=VASWANI_2017,
        tags=("encoder_decoder", "seq2seq", "translation", "paper_config"),
        complexity="O((S^2 + T^2 + S T) d) per layer",
    )(factory)


transformer_base = _paper_config(
    "transformer_base", dim=512, heads=8, ffn=2048, dropout=0.1, params="63.1M (the paper: 65M)"
)
transformer_big = _paper_config(
    "transformer_big", dim=1024, heads=16, ffn=4096, dropout=0.3, params="214M (the paper: 213M)"
)
