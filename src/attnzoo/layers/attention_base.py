"""``AttentionBase``: what every sequence/efficient attention module shares.

It owns the four projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), the dropouts and
the :class:`AttentionProbe`, and turns the module contract of docs/design.md section 5 —
``forward(x, context=None, *, mask=None, is_causal=False)`` on ``(B, L, C)`` — into validated
tensors. Subclasses implement only the mixing of ``q, k, v``.
"""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import (
    check_floating,
    check_module_dtype,
    check_positive_int,
    check_probability,
    type_name,
)
from attnzoo.functional.pooling import pool
from attnzoo.functional.softmax import causal_mask, check_mask, merge_masks
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.probe import AttentionProbe

__all__ = ["FUSED_PROJECTION_ROWS", "AttentionBase", "as_attention_mask"]

#: Rows (``B * L``) from which self-attention runs ``q_proj, k_proj, v_proj`` as one GEMM.
FUSED_PROJECTION_ROWS = 1024


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _global_module_hooks() -> bool:
    """Whether global module hooks (``nn.modules.module.register_module_*_hook``) exist."""
    module = nn.modules.module
    return any(getattr(module, f"_global{name}", None) for name in _HOOKS)


def as_attention_mask(
    mask: torch.Tensor | None, batch: int, q_len: int, kv_len: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """A module's ``mask`` argument as a 4-D mask broadcastable to ``(B, nh, L, S)``.

    Accepted layouts (bool ``True`` = may attend, or an additive float bias of ``dtype``):

    - ``(B, S)``: padding mask, ``True`` = real token -> ``(B, 1, 1, S)``;
    - ``(B | 1, L, S)``: attention mask per sample -> ``(B | 1, 1, L, S)``;
    - ``(B | 1, nh | 1, L, S)``: per head.

    A 2-D mask is always a padding mask; pass a shared ``(L, S)`` attention mask as ``mask[None]``.
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type_name(mask)}")
    if mask.dim() == 2:
        if tuple(mask.shape) != (batch, kv_len):
            raise ValueError(
                f"a 2-D mask is a padding mask of shape (B, S) = ({batch}, {kv_len}) with "
                f"True = real token; got {tuple(mask.shape)}. Pass an (L, S) attention mask "
                "as mask[None]."
            )
        mask = mask[:, None, None, :]  # (B, 1, 1, S)
    elif mask.dim() == 3:
        mask = mask[:, None]  # (B | 1, 1, L, S)
    elif mask.dim() != 4:
        raise ValueError(
            "mask must be (B, S) padding, (B, L, S) or (B, nh, L, S); got shape "
            f"{tuple(mask.shape)}"
        )
    if mask.shape[0] not in (1, batch):
        raise ValueError(
            f"mask batch dim must be 1 or B={batch}, got mask of shape {tuple(mask.shape)}"
        )
    return mask


class AttentionBase(nn.Module):
    """Projections, dropouts, probe and input checks shared by attention modules.

    Args:
        dim: Model width ``C`` of the queries' input and of the output.
        num_heads: Query heads ``nh``.
        head_dim: Per-head width ``hd``, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        num_kv_heads: Key/value heads (grouped-query attention); default ``num_heads``.
        context_dim: Width of the ``context`` for cross-attention; default ``dim``.
        proj_bias: Bias in ``out_proj``.
        projections: False replaces the four projections by ``nn.Identity`` (heads then split
            the input channels; needs ``num_heads * head_dim == dim == context_dim``).

    Shape:
        - x: ``(B, L, C)``; context: ``(B, S, C_ctx)``; output ``(B, L, C)``
    """

    supports_mask = True
    supports_causal = True
    supports_cross = True
    backend: str | None = None  # how the fast path computes (``attnzoo info`` prints it)
    fixed_length = False
    has_attention_weights = True  # routed through ``probe`` (attnzoo.viz.record_attention)
    # ``need_weights=True`` returns the (B, nh, L, S) weights the probe sees; None if it can,
    # otherwise the reason it cannot (an approximation without a token-by-token matrix)
    no_weights_reason: str | None = None

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        num_kv_heads: int | None = None,
        context_dim: int | None = None,
        proj_bias: bool = True,
        projections: bool = True,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(
                    f"dim ({dim}) must be divisible by num_heads ({num_heads}), or pass head_dim"
                )
            head_dim = dim // num_heads
        self.head_dim = check_positive_int("head_dim", head_dim)
        self.num_kv_heads = check_positive_int(
            "num_kv_heads", num_heads if num_kv_heads is None else num_kv_heads
        )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
            )
        self.context_dim = check_positive_int("context_dim", context_dim or dim)
        self.attn_drop = check_probability("attn_drop", attn_drop)
        inner, kv_inner = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if projections:
            self.q_proj = nn.Linear(dim, inner, bias=qkv_bias)
            self.k_proj = nn.Linear(self.context_dim, kv_inner, bias=qkv_bias)
            self.v_proj = nn.Linear(self.context_dim, kv_inner, bias=qkv_bias)
            self.out_proj = nn.Linear(inner, dim, bias=proj_bias)
        else:
            if not inner == kv_inner == dim == self.context_dim:
                raise ValueError(
                    "projections=False needs num_heads * head_dim == num_kv_heads * head_dim == "
                    f"dim == context_dim, got {self.num_heads} * {self.head_dim}, "
                    f"{self.num_kv_heads} * {self.head_dim}, {dim}, {self.context_dim}"
                )
            self.q_proj, self.k_proj = nn.Identity(), nn.Identity()
            self.v_proj, self.out_proj = nn.Identity(), nn.Identity()
        self.proj_drop = Dropout(check_probability("proj_drop", proj_drop))
        self.probe = AttentionProbe()

    @property
    def dropout_p(self) -> float:
        """Attention-weight dropout in effect now (0 in eval)."""
        return self.attn_drop if self.training else 0.0

    def check_inputs(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        is_causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Validate ``x`` and ``context``; return them batched and whether ``x`` was unbatched.

        Raises ``TypeError`` when ``x`` or ``context`` is not a tensor, is not floating, or has
        a dtype other than the module's parameters (the message gives both fixes,
        ``module.half()`` or ``x.float()``; modules without floating parameters accept any
        floating dtype, and under ``torch.autocast`` the dtype is autocast's to choose),
        ``ValueError`` for a wrong rank or width, ``NotImplementedError`` for a capability the
        class flags refuse.

        Empty inputs, the rule of the sequence and efficient families: ``B = 0`` or ``L = 0``
        is valid and gives the natural empty result, ``(0, L, C)`` or ``(B, 0, C)``, with a
        working backward; an empty ``context`` (``S = 0``) is valid wherever cross-attention
        is, and then every query attends to nothing (zeros before ``out_proj``). Every
        registered mechanism is held to this by ``tests/test_bad_inputs.py``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor (B, L, C), got {type_name(x)}")
        if not isinstance(is_causal, bool):
            raise TypeError(f"is_causal must be a bool, got {type_name(is_causal)}")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)  # (1, L, C)
            context = context.unsqueeze(0) if isinstance(context, torch.Tensor) else context
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be (B, L, C) with C = dim = {self.dim}, got shape {tuple(x.shape)}"
            )
        check_floating("x", x)
        check_module_dtype("x", x, self)
        if context is not None:
            if not self.supports_cross:
                raise NotImplementedError(f"{type(self).__name__} does not support cross-attention")
            if not isinstance(context, torch.Tensor):
                raise TypeError(
                    "context must be a torch.Tensor (B, S, C_ctx) or None, got "
                    f"{type_name(context)}"
                )
            if context.dim() != 3:
                raise ValueError(f"context must be (B, S, C_ctx), got {type_name(context)}")
            if context.shape[0] != x.shape[0] or context.shape[-1] != self.context_dim:
                raise ValueError(
                    f"context must be (B, S, C_ctx) = ({x.shape[0]}, S, {self.context_dim}), "
                    f"got {tuple(context.shape)}"
                )
            if context.dtype != x.dtype or context.device != x.device:
                raise TypeError(
                    f"context must match x in dtype and device: x {x.dtype} on {x.device}, "
                    f"context {context.dtype} on {context.device}"
                )
        if is_causal and not self.supports_causal:
            raise NotImplementedError(f"{type(self).__name__} cannot honour is_causal=True")
        return x, context, unbatched

    def check_mask(
        self, mask: torch.Tensor | None, batch: int, q_len: int, kv_len: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """Module mask as a validated 4-D mask (see :func:`as_attention_mask`)."""
        if mask is not None and not self.supports_mask:
            raise NotImplementedError(f"{type(self).__name__} does not support masks")
        mask = as_attention_mask(mask, batch, q_len, kv_len, dtype)
        if mask is not None:
            check_mask(mask, (batch, self.num_heads, q_len, kv_len), dtype)
        return mask

    def padding_mask(
        self, mask: torch.Tensor | None, batch: int, q_len: int, kv_len: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """The ``(B, S)`` bool key mask (``True`` = real key), for padding-only mechanisms.

        Accepts a ``(B, S)`` bool padding mask, or any bool mask of the module layouts whose
        query and head dims are 1. Raises ``NotImplementedError`` for per-query masks or float
        masks, which such mechanisms cannot honour.
        """
        mask = self.check_mask(mask, batch, q_len, kv_len, dtype)
        if mask is None:
            return None
        if mask.dtype != torch.bool or mask.shape[1] != 1 or mask.shape[2] != 1:
            raise NotImplementedError(
                f"{type(self).__name__} takes only boolean (B, S) padding masks (True = real "
                f"token); got a mask of shape {tuple(mask.shape)} and dtype {mask.dtype}"
            )
        return mask[:, 0, 0, :].expand(batch, kv_len)  # (B, S)

    def project(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q (B, nh, L, hd)``, ``k, v (B, nkv, S, hd)`` from the projections.

        Self-attention over at least :data:`FUSED_PROJECTION_ROWS` rows (``B * L``) runs the
        three projections as one GEMM on their concatenated weights, as a fused ``qkv`` layer
        does (timm, ``nn.MultiheadAttention``): the same function, one large output instead of
        three, so fewer kernel launches and fresh allocations. ``q, k, v`` are then views of
        that one ``(B, L, (nh + 2 nkv) hd)`` tensor. Below that size the per-call weight
        concatenation would cost more than it saves; projections that are not plain
        ``nn.Linear`` or carry hooks are always called one by one.
        """
        if context is None and self._fuses_projections(x):
            batch, length, _ = x.shape
            q, k, v = self._fused_qkv(x)  # (B, L, nh hd), (B, L, nkv hd) x 2
            q = q.view(batch, length, self.num_heads, self.head_dim)  # (B, L, nh, hd)
            kv_shape = (batch, length, self.num_kv_heads, self.head_dim)
            k, v = k.view(kv_shape), v.view(kv_shape)  # (B, L, nkv, hd) x 2
            return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        k, v = self.project_kv(x if context is None else context)
        return self.project_query(x), k, v

    def project_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention's ``q (B, L, nh hd)``, ``k, v (B, L, nkv hd)``, token-major.

        One GEMM on the concatenated weights where :meth:`project` would fuse (then the three
        are column views of one ``(B, L, (nh + 2 nkv) hd)`` tensor), else the three calls.
        """
        if self._fuses_projections(x):
            return self._fused_qkv(x)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def _fused_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`project_tokens` as one GEMM (the caller checked ``_fuses_projections``)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([proj.weight for proj in projections])  # ((nh + 2 nkv) hd, C)
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([proj.bias for proj in projections])  # ((nh + 2 nkv) hd,)
        qkv = nn.functional.linear(x, weight, bias)  # (B, L, (nh + 2 nkv) hd)
        kv_inner = self.num_kv_heads * self.head_dim
        q, k, v = qkv.split([self.num_heads * self.head_dim, kv_inner, kv_inner], dim=-1)
        return q, k, v

    def _fuses_projections(self, x: torch.Tensor) -> bool:
        """Whether ``q_proj, k_proj, v_proj`` can run as one GEMM on ``x`` (see :meth:`project`)."""
        if x.dim() != 3 or x.shape[0] * x.shape[1] < FUSED_PROJECTION_ROWS:
            return False
        if _global_module_hooks():
            return False
        projections = (self.q_proj, self.k_proj, self.v_proj)
        for proj in projections:
            if type(proj) is not nn.Linear or any(getattr(proj, name, None) for name in _HOOKS):
                return False
        if len({proj.in_features for proj in projections}) != 1:
            return False
        kv_inner = self.num_kv_heads * self.head_dim
        if self.k_proj.out_features != kv_inner or self.v_proj.out_features != kv_inner:
            return False
        return len({proj.bias is None for proj in projections}) == 1

    def project_query(self, x: torch.Tensor) -> torch.Tensor:
        """``q (B, nh, L, hd)`` from ``x (B, L, C)``."""
        batch, q_len, _ = x.shape
        q = self.q_proj(x).view(batch, q_len, self.num_heads, self.head_dim)  # (B, L, nh, hd)
        return q.transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``k, v (B, nkv, S, hd)`` from the key/value source ``(B, S, C_ctx)``."""
        batch, kv_len, _ = source.shape
        shape = (batch, kv_len, self.num_kv_heads, self.head_dim)
        k = self.k_proj(source).view(shape)  # (B, S, nkv, hd)
        v = self.v_proj(source).view(shape)  # (B, S, nkv, hd)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward_with_weights(self, x, context=None, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, weights (B, nh, L, S))``: the module's reference path, weights from ``probe``.

        What ``need_weights=True`` runs for mechanisms whose weights exist only on their
        reference path. Raises ``ValueError`` with :attr:`no_weights_reason` where there is no
        token-by-token weight matrix to return.
        """
        reason = self.no_weights_reason
        if reason is None and not type(self).has_attention_weights:
            reason = "it mixes tokens without attention weights"
        if reason is not None:
            raise ValueError(
                f"need_weights=True: {type(self).__name__} has no (B, nh, L, S) attention "
                f"weights: {reason}"
            )
        captured: list[torch.Tensor] = []
        handle = self.probe.register_forward_hook(lambda _m, _i, out: captured.append(out))
        recording, self.probe.recording = self.probe.recording, True
        try:
            out = self(x, context, **kwargs)
        finally:
            self.probe.recording = recording
            handle.remove()
        weights = captured[-1]  # (B, nh, L, S)
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 2
        return out, weights.squeeze(0) if unbatched else weights

    def attend_scores(
        self,
        scores: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        normalize=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights and output from ``(B, nh, L, S)`` scores of any scoring rule.

        Merges the (validated) ``mask`` with bottom-right causality, runs the safe masked
        softmax (or ``normalize(scores, mask)``, e.g. sparsemax or a sigmoid), passes the
        weights through ``probe`` and applies weight dropout.

        Returns:
            ``(out (B, nh, L, hd_v), attn (B, nh, L, S))``.
        """
        merged = mask
        if is_causal:
            merged = merge_masks(mask, causal_mask(*scores.shape[-2:], device=scores.device))
        kwargs = {} if normalize is None else {"normalize": normalize}
        out, attn = pool(scores, v, merged, self.dropout_p, padding=mask, **kwargs)
        return out, self.probe(attn)

    def attend_nothing(self, q: torch.Tensor, v: torch.Tensor, unbatched: bool) -> torch.Tensor:
        """The output when ``B``, ``L`` or ``S`` is 0: every query attends to nothing.

        Zero heads ``(B, nh, L, hd_v)`` (all-zero ``(B, nh, L, S)`` weights while the probe
        records) through ``out_proj``: the natural empty result for ``B = 0`` or ``L = 0``, and
        the fully-masked-row rule (exact zeros before ``out_proj``) for an empty context. For
        mechanisms whose routing or hashing cannot run on empty tensors.
        """
        batch, heads, q_len, _ = q.shape
        kv_len, width = v.shape[-2:]
        if self.probe.recording:
            self.probe(q.new_zeros(batch, heads, q_len, kv_len))
        return self.finish(q.new_zeros(batch, heads, q_len, width), unbatched)

    def finish(self, out: torch.Tensor, unbatched: bool) -> torch.Tensor:
        """``(B, nh, L, hd)`` heads -> ``out_proj`` -> dropout -> ``(B, L, C)`` (or ``(L, C)``)."""
        batch, heads, q_len, width = out.shape
        merged = out.transpose(1, 2).reshape(batch, q_len, heads * width)  # (B, L, nh * hd)
        y = self.proj_drop(self.out_proj(merged))
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}{kv}"
