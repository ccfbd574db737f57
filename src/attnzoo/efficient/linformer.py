"""Linformer (Wang et al. 2020): keys and values projected along the length to ``k`` rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_choice, check_positive_int, type_name
from attnzoo._recompute import recomputed
from attnzoo.functional.attention import attention
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["SHARING", "Linformer", "linformer_projection"]

SHARING = ("none", "headwise", "kv", "layerwise")


def linformer_projection(seq_len: int, k: int, heads: int | None = None) -> nn.Parameter:
    """A length projection ``(seq_len, k)`` (or ``(heads, seq_len, k)``) initialised as fairseq.

    Xavier-uniform with gain ``1/sqrt(2)`` (fairseq's ``compress_k``), so the projected keys keep
    the scale of the keys. Build one and pass it as ``projection=`` to several
    :class:`Linformer` layers for the paper's layerwise sharing.
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("k", k)
    weight = torch.empty(seq_len, k) if heads is None else torch.empty(heads, seq_len, k)
    bound = math.sqrt(6.0 / (seq_len + k)) / math.sqrt(2.0)
    return nn.Parameter(weight.uniform_(-bound, bound))


@EFFICIENT.register(
    "linformer",
    paper=Paper(
        title="Linformer: Self-Attention with Linear Complexity",
        authors="Wang, Li, Khabsa, Fang, Ma",
        year=2020,
        url="https://arxiv.org/abs/2006.04768",
    ),
    tags=("low_rank", "fixed_length", "cross"),
    complexity="O(L k hd) time and memory (k = projected length)",
)
class Linformer(AttentionBase):
    r"""Linformer: attention over keys and values projected along the sequence to ``k`` rows.

    Wang, Li, Khabsa, Fang, Ma, "Linformer: Self-Attention with Linear Complexity", 2020,
    https://arxiv.org/abs/2006.04768.

    ``head_i = softmax(q_i (E^T k_i)^T / sqrt(hd)) (F^T v_i)`` with learned ``E, F`` of shape
    ``(seq_len, k)``: the ``(L, S)`` matrix becomes ``(L, k)``, ``O(L k hd)`` instead of
    ``O(L S hd)``. The attention over the projected rows runs in SDPA (one ``softmax``, one
    dropout on the ``(L, k)`` weights — applied once, unlike ports that drop twice).

    Length: the projections are built for ``seq_len`` keys (``fixed_length``). A shorter input
    uses the first ``S`` rows of ``E, F`` (fairseq's slicing); a longer one raises
    ``ValueError``. ``k`` larger than ``seq_len`` is clamped to ``seq_len`` (more projected rows
    cannot raise the rank), which also makes tiny inputs work.

    Padding: ``(B, S)`` boolean padding masks (``True`` = real token). Padded key/value rows
    are zeroed before projecting, so with right padding the valid outputs do not depend on the
    padded content nor on the amount of padding; a sample with no real key returns zeros. Other
    masks raise ``NotImplementedError``: a projected row mixes every position. Causal attention
    is impossible for the same reason (``NotImplementedError``). Cross-attention projects the
    context (``S <= seq_len``).

    Sharing (paper section 4): ``"none"`` — ``E_i, F_i`` per head; ``"headwise"`` (default, as
    fairseq and the paper's main runs) — one ``E`` and one ``F`` shared by the heads; ``"kv"``
    — one matrix for keys and values (``E = F``); ``"layerwise"`` — one matrix for keys and
    values shared by several layers: pass the same :func:`linformer_projection` as
    ``projection=`` to each.

    Speed: when ``E`` and ``F`` are shared by the heads (every sharing but ``"none"``) the tokens
    are compressed before they are projected, ``(E^T X) W_K^T + (E^T 1) b_K^T`` — the same
    numbers as ``E^T (X W_K^T + 1 b_K^T)`` — so the key and value projections run on ``k`` rows
    instead of ``S`` and ``K``, ``V`` ``(B, S, C)`` are never formed.

    Attention weights: the ``(B, nh, L, k)`` weights over the projected rows go through
    ``probe`` (there is no token-level matrix). Training memory: the whole layer keeps only its
    input for backward and is recomputed there (dropout masks replayed exactly);
    ``recompute = False`` (an attribute) keeps its activations instead. Defaults: ``k = 256``;
    ``E, F`` initialised as fairseq (xavier-uniform, gain ``1/sqrt(2)``); ``seq_len`` has no
    default (required).

    Formula:
        $$
        \mathrm{head} = \mathrm{softmax}\!\left(\frac{Q (E^\top K)^\top}{\sqrt{d_h}}\right)
        (F^\top V), \qquad E, F \in \mathbb{R}^{n \times k}
        $$

        with $n$ = `seq_len` and $k$ the projected length.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width ``hd``, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Dropout on the ``(L, k)`` weights (training only), applied once.
        proj_drop: Dropout after ``out_proj``.
        seq_len: Longest key length ``S`` (rows of ``E`` and ``F``). Required.
        k: Projected length (paper default 256), clamped to ``seq_len``.
        sharing: ``"none"``, ``"headwise"``, ``"kv"`` or ``"layerwise"``.
        projection: The shared ``(seq_len, k)`` parameter for ``sharing="layerwise"``.
        context_dim: Width of ``context`` for cross-attention, default ``dim``.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; context: ``(B, S, C_ctx)`` with ``S <= seq_len``
        - mask: ``(B, S)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = Linformer(64, num_heads=4, seq_len=128, k=32)
        >>> attn(torch.randn(2, 100, 64)).shape
        torch.Size([2, 100, 64])
    """

    backend = "attention (sdpa) over the k projected keys and values"

    supports_mask = True
    supports_causal = False
    supports_cross = True
    no_weights_reason = (
        "its queries attend to k projected keys, not to the S tokens (the probe records those "
        "(B, nh, L, k) weights)"
    )
    fixed_length = True
    recompute = True  # training: recompute in backward instead of keeping activations

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        seq_len: int,
        k: int = 256,
        sharing: str = "headwise",
        projection: nn.Parameter | None = None,
        context_dim: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            context_dim=context_dim,
        )
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.k = min(check_positive_int("k", k), seq_len)
        self.sharing = check_choice("sharing", sharing, SHARING)
        if (sharing == "layerwise") != (projection is not None):
            raise ValueError(
                "sharing='layerwise' needs projection= (a linformer_projection(seq_len, k) "
                f"shared by the layers), and projection= needs sharing='layerwise'; got "
                f"sharing={sharing!r} and projection {type_name(projection)}"
            )
        heads = self.num_heads if sharing == "none" else None
        if projection is not None:
            if not isinstance(projection, nn.Parameter) or projection.shape != (seq_len, self.k):
                raise ValueError(
                    f"projection must be an nn.Parameter of shape (seq_len, k) = ({seq_len}, "
                    f"{self.k}), got {type_name(projection)}"
                )
            self.proj_e = projection
        else:
            self.proj_e = linformer_projection(seq_len, self.k, heads)
        separate = sharing in ("none", "headwise")
        self.proj_f = linformer_projection(seq_len, self.k, heads) if separate else None

    def _compress(self, t: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """``(B, nh, S, hd)`` -> ``(B, nh, k, hd)`` by the first ``S`` rows of per-head ``proj``."""
        return proj[:, : t.shape[2], :].transpose(-2, -1) @ t  # (B, nh, k, hd)

    def _compressed_kv(
        self, source: torch.Tensor, keep: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``E^T K`` and ``F^T V`` (``(B, nh, k, hd)`` each) for ``E, F`` shared by the heads.

        By associativity ``E^T (X W^T + 1 b^T) = (E^T X) W^T + (E^T 1) b^T``: the ``S`` tokens are
        compressed to ``k`` rows first and only those rows are projected, so ``K`` and ``V``
        ``(B, S, C)`` are never formed. Padded tokens are zeroed first and left out of ``E^T 1``
        (the maths of zeroing their keys and values).
        """
        batch, length, _ = source.shape
        if keep is not None:  # padded tokens take no part (not even a NaN they hold)
            source = source.masked_fill(~keep[:, :, None], 0.0)

        def compressed(rows: torch.Tensor, mixed: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
            out = F.linear(mixed, proj.weight)  # (B, k, C)
            if proj.bias is not None:
                sums = rows.sum(0) if keep is None else keep.to(rows.dtype) @ rows  # ([B,] k)
                out = out + (sums[..., None] * proj.bias).to(out.dtype)  # autocast: bf16
            heads = out.view(batch, self.k, self.num_heads, self.head_dim)  # (B, k, nh, hd)
            return heads.transpose(1, 2)  # (B, nh, k, hd)

        rows_e = self.proj_e[:length]  # (S, k)
        mixed_e = rows_e.transpose(0, 1) @ source  # (B, k, C_ctx)
        rows_f, mixed_f = rows_e, mixed_e  # sharing "kv" / "layerwise": F = E
        if self.proj_f is not None:
            rows_f = self.proj_f[:length]  # (S, k)
            mixed_f = rows_f.transpose(0, 1) @ source  # (B, k, C_ctx)
        k = compressed(rows_e, mixed_e, self.k_proj)  # (B, nh, k, hd)
        return k, compressed(rows_f, mixed_f, self.v_proj)  # (B, nh, k, hd) x 2

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
        kv_len = (x if context is None else context).shape[1]
        if kv_len > self.seq_len:
            raise ValueError(
                f"Linformer was built for seq_len={self.seq_len} keys (the rows of its length "
                f"projections E, F) but got {kv_len}; build it with seq_len >= {kv_len}"
            )
        keep = self.padding_mask(mask, x.shape[0], x.shape[1], kv_len, x.dtype)
        if self.probe.recording:
            out = self._layer(x, context, keep)
        else:  # in training the whole layer (projections included) is recomputed in backward
            out = recomputed(self._layer, x, context, keep, module=self)
        return out.squeeze(0) if unbatched else out

    def _layer(
        self, x: torch.Tensor, context: torch.Tensor | None, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """Projections, length compression, attention and ``out_proj``: ``(B, L, C)``."""
        q = self.project_query(x)  # (B, nh, L, hd)
        source = x if context is None else context
        if self.proj_e.dim() == 2:  # E, F shared by the heads: compress before projecting
            k, v = self._compressed_kv(source, keep)  # (B, nh, k, hd) x 2
        else:  # one E_i, F_i per head
            k, v = self.project_kv(source)  # (B, nh, S, hd) x 2
            if keep is not None:  # zero padded rows before they are mixed into projected rows
                gone = ~keep[:, None, :, None]  # (B, 1, S, 1)
                k, v = k.masked_fill(gone, 0.0), v.masked_fill(gone, 0.0)
            k, v = self._compress(k, self.proj_e), self._compress(v, self.proj_f)
        if self.probe.recording:
            scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, nh, L, k)
            out, _ = self.attend_scores(scores, v, None, False)
        else:
            out = attention(q, k, v, dropout_p=self.dropout_p)
        return self.finish(out, False)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, seq_len={self.seq_len}, k={self.k}, sharing={self.sharing!r}"
        )
