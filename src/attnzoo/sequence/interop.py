"""Interoperability with ``torch.nn.MultiheadAttention``: weights both ways, inverted masks.

PyTorch's ``nn.MultiheadAttention`` uses the opposite boolean polarity from attnzoo
(``key_padding_mask``/``attn_mask``: ``True`` = masked out). The two ``inverted_*`` helpers are
the only places in attnzoo that flip a boolean mask; float masks are additive biases with the
same meaning in both libraries and pass through unchanged.

Example:
    >>> import torch
    >>> from torch import nn
    >>> ref = nn.MultiheadAttention(16, 4, batch_first=True)
    >>> mha = from_torch(ref)
    >>> x = torch.randn(2, 5, 16)
    >>> pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])   # torch: True = padding
    >>> ours = mha(x, mask=inverted_key_padding_mask(pad))
    >>> theirs = ref(x, x, x, key_padding_mask=pad, need_weights=False)[0]
    >>> torch.testing.assert_close(ours, theirs)
"""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import type_name
from attnzoo.sequence.multihead import MultiHeadAttention

__all__ = [
    "from_torch",
    "inverted_attn_mask",
    "inverted_key_padding_mask",
    "load_from_torch",
    "to_torch",
]


def _invert(mask: torch.Tensor | None, name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type_name(mask)}")
    if mask.dtype == torch.bool:
        return ~mask
    if mask.is_floating_point():
        return mask
    raise TypeError(f"{name} must be bool or floating, got dtype {mask.dtype}")


def inverted_key_padding_mask(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flip a boolean ``(B, S)`` padding mask: PyTorch ``True`` = pad <-> attnzoo ``True`` = real.

    The flip is its own inverse, so it converts both ways; float masks pass through unchanged.
    """
    return _invert(key_padding_mask, "key_padding_mask")


def inverted_attn_mask(attn_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flip a boolean attention mask: PyTorch ``True`` = masked <-> attnzoo ``True`` = may attend.

    Float masks pass through unchanged.

    PyTorch's 3-D masks are ``(B * nh, L, S)``; attnzoo's are ``(B, nh, L, S)``: reshape with
    ``mask.view(B, nh, L, S)`` after inverting. A 2-D ``(L, S)`` mask becomes ``mask[None]``.
    """
    return _invert(attn_mask, "attn_mask")


def _check_supported(ref: nn.MultiheadAttention) -> None:
    if not isinstance(ref, nn.MultiheadAttention):
        raise TypeError(f"expected torch.nn.MultiheadAttention, got {type(ref).__name__}")
    if ref.bias_k is not None or ref.add_zero_attn:
        raise NotImplementedError("add_bias_kv and add_zero_attn have no attnzoo equivalent")


def from_torch(ref: nn.MultiheadAttention) -> MultiHeadAttention:
    """A new attnzoo ``mha`` with the configuration and weights of ``ref``."""
    _check_supported(ref)
    mha = MultiHeadAttention(
        ref.embed_dim,
        num_heads=ref.num_heads,
        qkv_bias=ref.in_proj_bias is not None,
        proj_bias=ref.out_proj.bias is not None,
        attn_drop=ref.dropout,
        kdim=ref.kdim,
        vdim=ref.vdim,
    ).to(device=ref.out_proj.weight.device, dtype=ref.out_proj.weight.dtype)
    return load_from_torch(mha, ref)


def load_from_torch(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy the weights of ``ref`` into ``mha`` (same shapes required); returns ``mha``."""
    _check_supported(ref)
    if ref._qkv_same_embed_dim:
        w_q, w_k, w_v = ref.in_proj_weight.chunk(3, dim=0)
    else:
        w_q, w_k, w_v = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
    b_q = b_k = b_v = None
    if ref.in_proj_bias is not None:
        b_q, b_k, b_v = ref.in_proj_bias.chunk(3, dim=0)
    pairs = [
        (mha.q_proj, w_q, b_q),
        (mha.k_proj, w_k, b_k),
        (mha.v_proj, w_v, b_v),
        (mha.out_proj, ref.out_proj.weight, ref.out_proj.bias),
    ]
    with torch.no_grad():
        for layer, weight, bias in pairs:
            if layer.weight.shape != weight.shape or (layer.bias is None) != (bias is None):
                raise ValueError(
                    f"shape mismatch copying {tuple(weight.shape)} into {layer}; build the "
                    "module with from_torch(ref) instead"
                )
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
    return mha


def to_torch(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    """A ``torch.nn.MultiheadAttention`` (``batch_first=True``) with the weights of ``mha``."""
    if not isinstance(mha, MultiHeadAttention):
        raise TypeError(f"expected attnzoo MultiHeadAttention, got {type(mha).__name__}")
    if mha.num_kv_heads != mha.num_heads or mha.num_heads * mha.head_dim != mha.dim:
        raise ValueError(
            "torch.nn.MultiheadAttention needs num_kv_heads == num_heads and "
            f"num_heads * head_dim == dim; got {mha.num_kv_heads}, {mha.num_heads}, "
            f"{mha.head_dim}, {mha.dim}"
        )
    if (mha.q_proj.bias is None) != (mha.out_proj.bias is None):
        raise ValueError("torch.nn.MultiheadAttention has one bias flag for q/k/v and out_proj")
    ref = nn.MultiheadAttention(
        mha.dim,
        mha.num_heads,
        dropout=mha.attn_drop,
        bias=mha.q_proj.bias is not None,
        kdim=mha.context_dim,
        vdim=mha.vdim,
        batch_first=True,
    ).to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)
    with torch.no_grad():
        weights = (mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight)
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.cat(weights, dim=0))
        else:
            ref.q_proj_weight.copy_(weights[0])
            ref.k_proj_weight.copy_(weights[1])
            ref.v_proj_weight.copy_(weights[2])
        if ref.in_proj_bias is not None:
            biases = (mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias)
            ref.in_proj_bias.copy_(torch.cat(biases))
            ref.out_proj.bias.copy_(mha.out_proj.bias)
        ref.out_proj.weight.copy_(mha.out_proj.weight)
    return ref
