"""Multi-head attention (Vaswani et al. 2017): self- and cross-attention, GQA/MQA, KV cache."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.functional.attention import attention, attention_reference
from attnzoo.functional.normalizers import NORMALIZERS
from attnzoo.functional.varlen import varlen_attention
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.papers import VASWANI_2017
from attnzoo.registry import SEQUENCE
from attnzoo.sequence.cache import KVCache, PackedKVCache

__all__ = ["MultiHeadAttention"]


@SEQUENCE.register(
    "mha",
    paper=VASWANI_2017,
    tags=("dense", "self", "cross", "gqa", "kv_cache"),
    complexity="O(L S d) time; O(L + S) memory on the fast path",
)
class MultiHeadAttention(AttentionBase):
    r"""Multi-head scaled dot-product attention.

    ``head_i = softmax(q_i k_i^T / sqrt(hd)) v_i`` on ``num_heads`` learned projections, then
    ``out_proj(concat(head_1, ..., head_nh))`` (Vaswani et al., "Attention Is All You Need", 2017,
    https://arxiv.org/abs/1706.03762). Self-attention when ``context`` is None, cross-attention
    otherwise. ``num_kv_heads < num_heads`` gives grouped-query attention (Ainslie et al. 2023,
    https://arxiv.org/abs/2305.13245); ``num_kv_heads=1`` is multi-query attention
    (Shazeer 2019, https://arxiv.org/abs/1911.02150).

    Without ``need_weights`` the core runs in ``F.scaled_dot_product_attention``, which never
    allocates an ``L x S`` tensor when there is no mask. With ``need_weights=True`` (or while
    ``attnzoo.viz.record_attention`` listens on ``probe``) it runs ``attention_reference`` and
    returns per-head weights (before dropout). Causal masking is bottom-right aligned, so a
    :class:`KVCache` fed one token at a time reproduces one causal call on the whole sequence.
    With a ``context`` (cross-attention) the cache instead keeps the context's projected keys
    and values from its first call and reuses them at every later step (the context is the
    same encoder output throughout a decoding; only its shape is checked).
    To copy weights from or to ``torch.nn.MultiheadAttention`` see
    :mod:`attnzoo.sequence.interop`.

    Packed variable-length sequences (FlashAttention's convention): ``x`` of shape
    ``(1, sum(L_i), C)`` with ``cu_seqlens=[0, L_0, L_0 + L_1, ...]``; each sequence attends only
    to itself (causal within it with ``is_causal``), at a cost of ``sum(L_i^2)``
    (:func:`attnzoo.functional.varlen.varlen_attention`), and equals running it alone. With
    ``cache=attnzoo.PackedKVCache()`` each sequence keeps its own keys and values: prefill the
    packed prompts, then decode one token per sequence (``cu_seqlens = arange(N + 1)``).

    ``normalizer="sparsemax"`` or ``"entmax15"`` replaces the softmax by a sparse projection
    onto the simplex (Martins & Astudillo 2016, https://arxiv.org/abs/1602.02068; Peters,
    Niculae & Martins 2019, https://arxiv.org/abs/1905.05702; see
    :mod:`attnzoo.functional.normalizers`): weak keys get exactly zero weight. Those calls
    always take the reference path (SDPA knows only softmax).

    Formula:
        $$
        \begin{gathered}
        \mathrm{head}_i = \mathrm{softmax}\!\left(\frac{(X W_i^Q)(C W_i^K)^\top}{\sqrt{d_h}}
        \right) C W_i^V \\
        \mathrm{MHA}(X, C) = [\mathrm{head}_1; \dots; \mathrm{head}_{n_h}]\, W^O
        \end{gathered}
        $$

        with $C = X$ for self-attention, $d_h$ the head width and $[\,\cdot\,;\cdot\,]$
        concatenation over heads.

    Args:
        dim: Model width ``C``.
        num_heads: Query heads ``nh``.
        num_kv_heads: Key/value heads (GQA); must divide ``num_heads``. Default ``num_heads``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        context_dim: Width of ``context`` (cross-attention with another width); default ``dim``.
        proj_bias: Bias in ``out_proj``.
        kdim: Width of the keys' source (``context``), as ``torch.nn.MultiheadAttention``;
            default ``context_dim``.
        vdim: Width of the values' source; when it differs from ``kdim``, pass the values as
            ``value=`` (torch's ``forward(query, key, value)``). Default ``kdim``.
        normalizer: ``"softmax"`` (the paper), ``"sparsemax"`` or ``"entmax15"``.

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``
        - context: ``(B, S, C_ctx)``, default ``x``
        - mask: ``(B, S)`` padding (``True`` = real token), ``(B, L, S)`` or ``(B, nh, L, S)``;
          bool (``True`` = may attend) or additive float
        - output: ``(B, L, C)``; weights ``(B, nh, L, S)`` when ``need_weights``

    Example:
        >>> mha = MultiHeadAttention(64, num_heads=4)
        >>> x, ctx = torch.randn(2, 10, 64), torch.randn(2, 7, 64)
        >>> out, w = mha(x, ctx, mask=torch.ones(2, 7, dtype=torch.bool), need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 4, 10, 7]))
    """

    backend = "sdpa (F.scaled_dot_product_attention); reference for weights or sparse normalisers"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        context_dim: int | None = None,
        proj_bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        normalizer: str = "softmax",
    ) -> None:
        if kdim is not None and context_dim is not None and kdim != context_dim:
            raise ValueError(f"kdim ({kdim}) and context_dim ({context_dim}) name the same width")
        context_dim = kdim if kdim is not None else context_dim
        super().__init__(
            dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            context_dim=context_dim,
            proj_bias=proj_bias,
        )
        self.normalizer = check_choice("normalizer", normalizer, tuple(NORMALIZERS))
        self.vdim = self.context_dim if vdim is None else check_positive_int("vdim", vdim)
        if self.vdim != self.context_dim:  # values from their own source
            self.v_proj = nn.Linear(self.vdim, self.v_proj.out_features, bias=qkv_bias)

    def _forward_packed(
        self,
        x: torch.Tensor,
        cu_seqlens: torch.Tensor,
        is_causal: bool,
        cache: PackedKVCache | None = None,
    ) -> torch.Tensor:
        """Sequences packed as ``(1, T, C)`` (or ``(T, C)``), offsets ``cu_seqlens``."""
        x, _, unbatched = self.check_inputs(x, None, is_causal)
        if x.shape[0] != 1:
            raise ValueError(
                f"packed sequences come as one row (1, T, C) with cu_seqlens, got {tuple(x.shape)}"
            )
        q, k, v = self.project(x, None)  # (1, nh, T, hd), (1, nkv, T, hd) x 2
        q, k, v = (t[0].transpose(0, 1) for t in (q, k, v))  # (T, heads, hd) each
        cu_k = None
        if cache is not None:  # every sequence's past keys too: (T_all, nkv, hd) x 2
            k, v, cu_k = cache.update(k, v, cu_seqlens)
        out = varlen_attention(
            q, k, v, cu_seqlens, cu_k, is_causal=is_causal, dropout_p=self.dropout_p
        )
        return self.finish(out.transpose(0, 1)[None], unbatched)  # (1, T, C)

    def _check_value(self, value: torch.Tensor | None, source: torch.Tensor) -> torch.Tensor | None:
        """``value`` ``(B, S, vdim)`` beside ``source`` ``(B, S, kdim)``, or the rule it breaks."""
        if value is None:
            if self.vdim != self.context_dim:
                raise ValueError(
                    f"this mha has vdim={self.vdim} != kdim={self.context_dim}: pass the values "
                    "as value= (B, S, vdim)"
                )
            return None
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"value must be a torch.Tensor (B, S, vdim), got {type(value).__name__}"
            )
        want = (source.shape[0], source.shape[1], self.vdim)
        if tuple(value.shape) != want:
            raise ValueError(
                f"value must be (B, S, vdim) = {want} (B and S of the keys' source), got "
                f"{tuple(value.shape)}"
            )
        if value.dtype != source.dtype:
            raise TypeError(f"value must have dtype {source.dtype}, got {value.dtype}")
        return value

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | PackedKVCache | None = None,
        value: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if cu_seqlens is not None:
            if context is not None or mask is not None or need_weights:
                raise ValueError(
                    "cu_seqlens= (packed sequences) is for self-attention without mask or "
                    "need_weights: each packed sequence attends only to itself"
                )
            if cache is not None and not isinstance(cache, PackedKVCache):
                raise TypeError(
                    "with cu_seqlens= the cache must be an attnzoo.PackedKVCache (one per "
                    f"packed sequence), got {type(cache).__name__}"
                )
            return self._forward_packed(x, cu_seqlens, is_causal, cache)
        if isinstance(value, torch.Tensor) and isinstance(x, torch.Tensor) and x.dim() == 2:
            value = value.unsqueeze(0)  # (1, S, C_v) with an unbatched query
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        value = self._check_value(value, x if context is None else context)
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be an attnzoo.KVCache, got {type(cache).__name__}")
        if cache is not None and context is not None and len(cache):
            # cross-attention: the context's keys and values were projected at the first call
            if cache.k.shape[0] != x.shape[0] or len(cache) != context.shape[1]:
                raise ValueError(
                    f"this cache holds the keys of a context (B, S) = ({cache.k.shape[0]}, "
                    f"{len(cache)}), but the context is {tuple(context.shape[:2])}; a "
                    "cross-attention cache serves one context: reset() it for another"
                )
            q, k, v = self.project_query(x), cache.k, cache.v  # (B, nh, L, hd), (B, nkv, S, hd)
        else:
            if value is None:
                q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nkv, S, hd) x 2
            else:  # keys from context, values from their own source (vdim)
                source = x if context is None else context
                shape = (*source.shape[:2], self.num_kv_heads, self.head_dim)
                q = self.project_query(x)  # (B, nh, L, hd)
                k = self.k_proj(source).view(shape).transpose(1, 2)  # (B, nkv, S, hd)
                v = self.v_proj(value).view(shape).transpose(1, 2)  # (B, nkv, S, hd)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, nkv, S_total, hd)
        batch, _, q_len, _ = q.shape
        mask = self.check_mask(mask, batch, q_len, k.shape[2], q.dtype)
        if need_weights or self.probe.recording or self.normalizer != "softmax":
            out, attn = attention_reference(
                q,
                k,
                v,
                mask=mask,
                is_causal=is_causal,
                dropout_p=self.dropout_p,
                need_weights=True,
                normalizer=self.normalizer,
            )
            attn = self.probe(attn)
            y = self.finish(out, unbatched)
            return (y, attn.squeeze(0) if unbatched else attn) if need_weights else y
        out = attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.dropout_p)
        return self.finish(out, unbatched)
