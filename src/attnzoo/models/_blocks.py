"""Transformer building blocks shared by the models: attention by name, encoder/decoder layers.

Every model takes ``attention=`` (a registered sequence or efficient mechanism) and
``attention_kwargs=``; :func:`build_attention` turns them into a module and refuses, at
construction, a mechanism that cannot do what its layer needs (causality, cross-attention, a
fixed length).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_choice, check_positive_int, check_probability, type_name
from attnzoo.layers.drop_path import DropPath
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.mlp import Mlp
from attnzoo.positional.learned import LearnedPositionalEmbedding
from attnzoo.positional.sinusoidal import SinusoidalPositionalEncoding
from attnzoo.registry import get_entry, list_names

__all__ = [
    "POSITIONS",
    "DecoderLayer",
    "EncoderLayer",
    "attention_names",
    "build_attention",
    "build_positions",
    "check_padding_mask",
    "check_tokens",
]

TOKEN_MIXER_FAMILIES = ("sequence", "efficient")
POSITIONS = ("sinusoidal", "learned", "none")


def attention_names(*, causal: bool = False, cross: bool = False) -> list[str]:
    """Registered token mixers that can serve a layer needing ``causal`` / ``cross``."""
    names = []
    for family in TOKEN_MIXER_FAMILIES:
        for name in list_names(family=family):
            cls = get_entry(name).obj
            if (not causal or cls.supports_causal) and (not cross or cls.supports_cross):
                names.append(name)
    return sorted(names)


def build_attention(
    attention: str,
    dim: int,
    *,
    num_heads: int,
    attn_drop: float = 0.0,
    causal: bool = False,
    cross: bool = False,
    seq_len: int | None = None,
    options: Mapping[str, Any] | None = None,
    role: str = "self-attention",
) -> nn.Module:
    """Build the registered mechanism ``attention`` for one layer, checking its capabilities.

    Args:
        attention: Name of a ``sequence`` or ``efficient`` mechanism (``attnzoo.list_names``).
        dim: Model width.
        num_heads: Heads, unless ``options`` sets ``num_heads``.
        attn_drop: Attention-weight dropout, unless ``options`` sets ``attn_drop``.
        causal: The layer calls it with ``is_causal=True`` (a decoder).
        cross: The layer calls it with a ``context`` (encoder-decoder attention).
        seq_len: Longest key sequence the layer sees; given to fixed-length mechanisms
            (linformer, sinkhorn, synthesizer, mixer, aft) unless ``options`` sets it.
        options: The model's ``attention_kwargs``: constructor options of the mechanism.
        role: Layer description used in error messages.

    Raises:
        ValueError: unknown name, not a token mixer, or a missing capability — naming the
            mechanism, the capability and the mechanisms that have it.
        TypeError: ``options`` the mechanism's constructor does not take.
    """
    if not isinstance(attention, str):
        raise TypeError(f"attention must be a registry name (str), got {type_name(attention)}")
    entry = get_entry(attention)
    if entry.family not in TOKEN_MIXER_FAMILIES:
        raise ValueError(
            f"attention must name a sequence or efficient mechanism, got {attention!r}, a "
            f"{entry.family} entry; choose from {attention_names()}"
        )
    cls = entry.obj
    for needed, flag, what in (
        (causal, "supports_causal", "causal"),
        (cross, "supports_cross", ""),
    ):
        if needed and not getattr(cls, flag):
            kind = "a causal" if what else "a cross-attention"
            raise ValueError(
                f"attention={attention!r} cannot be the {role} of this model: the layer needs "
                f"{kind} mechanism and {cls.__name__}.{flag} is False; choose one of "
                f"{attention_names(causal=causal, cross=cross)}"
            )
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"attention_kwargs must be a dict or None, got {type_name(options)}")
    kwargs: dict[str, Any] = {"num_heads": num_heads, "attn_drop": attn_drop, **(options or {})}
    if "dim" in kwargs:
        raise ValueError("attention_kwargs must not set dim: the model's width is used")
    if cls.fixed_length and "seq_len" not in kwargs:
        if seq_len is None:
            raise ValueError(
                f"attention={attention!r} is fixed-length and needs seq_len; pass it in "
                "attention_kwargs or give the model a max_len"
            )
        kwargs["seq_len"] = seq_len
    try:
        return cls(dim, **kwargs)
    except TypeError as error:
        raise TypeError(f"attention_kwargs do not fit {attention!r}: {error}") from None


def build_positions(kind: str, dim: int, *, max_len: int, dropout: float) -> nn.Module:
    """Absolute positions added to the token embeddings, then dropout.

    ``"sinusoidal"`` (Vaswani et al. 2017), ``"learned"`` (a trainable table) or ``"none"``
    (dropout only). Positions beyond ``max_len`` raise ``ValueError`` naming ``max_len``.
    """
    check_choice("pos_encoding", kind, POSITIONS)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(dim, max_len=max_len, dropout=dropout)
    if kind == "learned":
        return LearnedPositionalEmbedding(dim, max_len=max_len, dropout=dropout)
    return _DropoutOnly(dropout)


class _DropoutOnly(nn.Dropout):
    """``pos_encoding="none"``: dropout, with the ``offset`` argument of the encodings."""

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        return super().forward(x)


def check_tokens(name: str, tokens: Any, vocab_size: int) -> torch.Tensor:
    """``tokens`` if it is a ``(B, L)`` integer tensor of ids in ``[0, vocab_size)``, ``L >= 1``."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a (B, L) tensor of token ids, got {type_name(tokens)}")
    if tokens.dtype in (torch.bool,) or tokens.is_floating_point() or tokens.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(f"{name} must be (B, L) with L >= 1, got shape {tuple(tokens.shape)}")
    if tokens.numel():
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} holds token id {bad}, outside the vocabulary [0, {vocab_size - 1}]"
            )
    return tokens


def check_padding_mask(
    name: str, mask: Any, tokens: torch.Tensor, tokens_name: str
) -> torch.Tensor:
    """``mask`` if it is a bool ``(B, L)`` padding mask (``True`` = real) shaped like ``tokens``."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool (B, L) padding mask (True = real token), got {type_name(mask)}"
        )
    if mask.shape != tokens.shape:
        raise ValueError(
            f"{name} must have the shape of {tokens_name} {tuple(tokens.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sub-layers with residuals: post-LN or pre-LN.

    Post-LN (Vaswani et al. 2017): ``x = norm1(x + drop(attn(x)))``, ``x = norm2(x + mlp(x))``.
    Pre-LN (``norm_first=True``, ViT, GPT-2, LRA): ``x = x + drop(attn(norm1(x)))``,
    ``x = x + mlp(norm2(x))``. Submodules use timm's names (``attn``, ``norm1``, ``mlp.fc1`` ...).

    Args:
        dim: Model width.
        num_heads: Attention heads.
        ffn_dim: Hidden width of the feed-forward block.
        dropout: Dropout on each sub-layer's output (and inside the MLP).
        attn_dropout: Dropout on the attention weights.
        activation: MLP activation (``"relu"`` in the Transformer, ``"gelu"`` in ViT).
        norm_first: Pre-LN instead of post-LN.
        norm_eps: LayerNorm epsilon.
        drop_path: Stochastic-depth rate of both residual branches.
        causal: The layer is called with ``is_causal=True`` (decoder-only models).
        attention: Registered mechanism of the self-attention.
        attention_kwargs: Its constructor options.
        seq_len: Longest sequence, for fixed-length mechanisms.

    Shape:
        - x: ``(B, L, dim)``; mask: ``(B, L)`` padding (``True`` = real token) -> ``(B, L, dim)``
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
        causal: bool = False,
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
        seq_len: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = bool(norm_first)
        self.attn = build_attention(
            attention,
            dim,
            num_heads=num_heads,
            attn_drop=attn_dropout,
            causal=causal,
            seq_len=seq_len,
            options=attention_kwargs,
            role="causal self-attention" if causal else "self-attention",
        )
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = Dropout(check_probability("dropout", dropout))
        self.mlp = Mlp(dim, ffn_dim, act_layer=activation, drop=dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: Any = None,
    ) -> torch.Tensor:
        extra = {} if cache is None else {"cache": cache}
        if self.norm_first:
            h = self.attn(self.norm1(x), mask=mask, is_causal=is_causal, **extra)
            x = x + self.drop_path(self.drop(h))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        h = self.attn(x, mask=mask, is_causal=is_causal, **extra)
        x = self.norm1(x + self.drop_path(self.drop(h)))
        return self.norm2(x + self.drop_path(self.mlp(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention and feed-forward (Vaswani et al. 2017).

    Each sub-layer has a residual connection and a LayerNorm (after it by default, before it with
    ``norm_first``). The self-attention is causal; its mechanism must have ``supports_causal``,
    the cross-attention's ``supports_cross`` (both checked at construction).

    Args:
        dim: Model width.
        num_heads: Attention heads.
        ffn_dim: Feed-forward hidden width.
        dropout: Sub-layer output dropout.
        attn_dropout: Attention-weight dropout.
        activation: MLP activation.
        norm_first: Pre-LN instead of post-LN.
        norm_eps: LayerNorm epsilon.
        attention: Mechanism of the causal self-attention.
        attention_kwargs: Its options.
        cross_attention: Mechanism of the encoder-decoder attention.
        cross_attention_kwargs: Its options.
        seq_len: Longest target sequence (fixed-length self-attention).
        memory_len: Longest source sequence (fixed-length cross-attention).

    ``cache`` is the self-attention's decoding cache; ``memory_cache`` a :class:`KVCache` that
    keeps the cross-attention's projection of ``memory`` after the first step (``mha``).

    Shape:
        - x: ``(B, T, dim)``, memory: ``(B, S, dim)``, masks ``(B, T)`` / ``(B, S)``
        - output: ``(B, T, dim)``
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
        cross_attention: str = "mha",
        cross_attention_kwargs: Mapping[str, Any] | None = None,
        seq_len: int | None = None,
        memory_len: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = bool(norm_first)
        self.self_attn = build_attention(
            attention,
            dim,
            num_heads=num_heads,
            attn_drop=attn_dropout,
            causal=True,
            seq_len=seq_len,
            options=attention_kwargs,
            role="decoder's causal self-attention",
        )
        self.cross_attn = build_attention(
            cross_attention,
            dim,
            num_heads=num_heads,
            attn_drop=attn_dropout,
            cross=True,
            seq_len=memory_len,
            options=cross_attention_kwargs,
            role="decoder's cross-attention",
        )
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = Dropout(check_probability("dropout", dropout))
        self.mlp = Mlp(
            dim, check_positive_int("ffn_dim", ffn_dim), act_layer=activation, drop=dropout
        )

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: Any = None,
        memory_cache: Any = None,
    ) -> torch.Tensor:
        extra = {} if cache is None else {"cache": cache}
        cross = {} if memory_cache is None else {"cache": memory_cache}
        if self.norm_first:
            x = x + self.drop(self.self_attn(self.norm1(x), mask=mask, is_causal=True, **extra))
            x = x + self.drop(self.cross_attn(self.norm2(x), memory, mask=memory_mask, **cross))
            return x + self.mlp(self.norm3(x))
        x = self.norm1(x + self.drop(self.self_attn(x, mask=mask, is_causal=True, **extra)))
        x = self.norm2(x + self.drop(self.cross_attn(x, memory, mask=memory_mask, **cross)))
        return self.norm3(x + self.mlp(x))
