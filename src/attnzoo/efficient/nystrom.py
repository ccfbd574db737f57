"""Nystromformer (Xiong et al. 2021): Nystrom approximation of softmax attention with landmarks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo._recompute import needs_grad, recomputed
from attnzoo.efficient._kernel import HALF
from attnzoo.efficient._kernel_features import LOG2E
from attnzoo.efficient._landmarks import (
    iterative_pinv,
    masked_weights,
    segment_counts,
    segment_ids,
    segment_means,
)
from attnzoo.functional.attention import attention
from attnzoo.functional.dropout import dropout
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["Nystromformer", "iterative_pinv", "segment_means"]


@EFFICIENT.register(
    "nystrom",
    paper=Paper(
        title="Nystromformer: A Nystrom-Based Algorithm for Approximating Self-Attention",
        authors="Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh",
        year=2021,
        url="https://arxiv.org/abs/2102.03902",
    ),
    tags=("low_rank", "landmarks"),
    complexity="O(L m hd + m^3) time, O(L m) memory (m = num_landmarks)",
)
class Nystromformer(AttentionBase):
    r"""Nystromformer: softmax attention approximated from ``m`` landmark queries and keys.

    Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh, "Nystromformer: A Nystrom-Based Algorithm
    for Approximating Self-Attention", AAAI 2021, https://arxiv.org/abs/2102.03902.

    Landmarks ``Q~, K~`` are segment means of the (scaled) queries and keys. Then
    ``out = softmax(Q K~^T) pinv(softmax(Q~ K~^T)) (softmax(Q~ K^T) V) + conv(V)``, computed
    right to left in ``O(L m hd + m^3)`` (no ``L x L`` tensor). ``pinv`` is the paper's
    Newton-Schulz iteration (6 steps) with the per-matrix initialisation
    ``A^T / (||A||_1 ||A||_inf)`` (:func:`iterative_pinv`); ``conv`` is the depthwise
    convolution skip over the sequence on the values (one ``(kernel, 1)`` filter per head).

    Lengths: ``L`` need not be a multiple of ``num_landmarks``: segment ``l`` holds tokens
    ``i`` with ``floor(i m / L) = l`` (sizes differ by at most one; the official code requires
    divisibility). With ``L < num_landmarks`` every token is its own landmark (``m = L``).

    Padding: ``(B, S)`` boolean masks (``True`` = real token). Landmark means skip padded
    tokens, padded keys are masked out of ``softmax(Q~ K^T)``, padded values are zeroed before
    the convolution, and a landmark whose segment holds only padding is masked out of all three
    softmaxes (its pinv rows/columns stay zero), so there is no NaN (xformers#360) and the
    padded content cannot change valid outputs; a sample with no real token returns zeros.
    Other masks, causal attention and cross-attention raise ``NotImplementedError``
    (landmarks summarise the whole sequence).

    Under ``torch.autocast`` the layer runs with autocast disabled (the iterative pinv and the
    landmark softmaxes lose their meaning in bfloat16) and returns the autocast dtype.

    Exactness: with ``num_landmarks = L``, ``pinv_iterations=None`` (exact ``linalg.pinv``)
    and ``conv_kernel_size=None`` it equals softmax attention (``A pinv(A) A = A``). With fewer
    landmarks than tokens and peaked scores (large inputs), the landmark kernel is nearly
    singular: the exact ``pinv`` then amplifies (relative errors of ``1e8`` measured at input
    scale 16), while the default 6-iteration pinv stays bounded (below 10, tested at scales
    1-64) — keep the iterative pinv unless ``num_landmarks >= L``.

    Speed: without autograd the keys are projected block by block (``block_size`` tokens) into
    an online softmax for ``softmax(Q~ K^T) V`` and the segment sums of ``K~``, and the queries
    go block by block through SDPA, the conv skip and ``out_proj``, so neither ``K`` nor any
    ``(B, L, C)`` intermediate is whole. With autograd, whole tensors and two SDPA calls; in
    training the whole layer keeps only its input for backward and is recomputed there (dropout
    masks replayed exactly), ``recompute = False`` (an attribute) keeps its activations instead.

    Attention weights: while ``attnzoo.viz.record_attention`` listens, the dense-equivalent
    ``softmax(Q K~^T) pinv(.) softmax(Q~ K^T)`` ``(B, nh, L, S)`` goes through ``probe`` (rows
    sum to about one; the conv skip is not in it). ``attn_drop`` drops entries of
    ``softmax(Q K~^T)`` (each query's weights over the landmarks), once.

    Defaults: ``num_landmarks = 64`` and ``conv_kernel_size = 33`` (the paper's BERT runs and
    the official ``nystrom-512`` config; its LRA configs use 32-256 landmarks and kernel 35),
    6 pinv iterations. Half inputs are computed in float32.

    Formula:
        $$
        \mathrm{out} = \mathrm{softmax}(Q \tilde K^\top)\;
        \mathrm{pinv}\big(\mathrm{softmax}(\tilde Q
        \tilde K^\top)\big)\; \mathrm{softmax}(\tilde Q K^\top)\, V + \mathrm{conv}(V)
        $$

        with the (scaled) queries and keys, $\tilde Q, \tilde K$ their $m$ segment-mean landmarks
        and
        pinv by 6 Newton–Schulz steps.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width ``hd``, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Dropout on ``softmax(Q K~^T)`` (training only).
        proj_drop: Dropout after ``out_proj``.
        num_landmarks: Landmarks ``m`` (clamped to ``L``).
        pinv_iterations: Newton-Schulz steps; ``None`` uses the exact ``torch.linalg.pinv``.
        conv_kernel_size: Odd kernel of the depthwise conv skip on ``V``; ``None`` disables it.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; mask: ``(B, L)`` bool padding mask
        - output: ``(B, L, C)``

    Example:
        >>> attn = Nystromformer(64, num_heads=4, num_landmarks=8)
        >>> attn(torch.randn(2, 100, 64)).shape
        torch.Size([2, 100, 64])
    """

    backend = "three softmax kernels over the landmarks, pseudo-inverse by iteration"

    supports_mask = True
    supports_causal = False
    supports_cross = False
    no_weights_reason = (
        "the Nystrom product softmax(Q K~^T) pinv(A) softmax(Q~ K^T) is never formed "
        "(attnzoo.viz.record_attention builds its dense equivalent, O(L S))"
    )
    block_size = 1024  # keys / queries per block of the fast path: speed, not maths
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
        num_landmarks: int = 64,
        pinv_iterations: int | None = 6,
        conv_kernel_size: int | None = 33,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.num_landmarks = check_positive_int("num_landmarks", num_landmarks)
        if pinv_iterations is not None:
            check_positive_int("pinv_iterations", pinv_iterations)
        self.pinv_iterations = pinv_iterations
        self.conv = None
        if conv_kernel_size is not None:
            if isinstance(conv_kernel_size, bool) or not isinstance(conv_kernel_size, int):
                raise TypeError(
                    "conv_kernel_size must be an odd int or None, got "
                    f"{type_name(conv_kernel_size)}"
                )
            if conv_kernel_size < 1 or conv_kernel_size % 2 == 0:
                raise ValueError(f"conv_kernel_size must be odd and >= 1, got {conv_kernel_size}")
            heads = self.num_heads
            self.conv = nn.Conv2d(
                heads,
                heads,
                (conv_kernel_size, 1),
                padding=(conv_kernel_size // 2, 0),
                groups=heads,
                bias=False,
            )

    def _pinv(self, a: torch.Tensor) -> torch.Tensor:
        if self.pinv_iterations is None:
            return torch.linalg.pinv(a)
        return iterative_pinv(a, self.pinv_iterations)

    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        heads = y.view(*y.shape[:-1], self.num_heads, self.head_dim)  # (B, L, nh, hd)
        return heads.transpose(1, 2)  # (B, nh, L, hd)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # refused: see no_weights_reason
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        device_type = x.device.type if isinstance(x, torch.Tensor) else "cpu"
        if torch.is_autocast_enabled(device_type):  # pinv iterations need float32: see above
            low = torch.get_autocast_dtype(device_type)
            with torch.autocast(device_type, enabled=False):
                return self(x, context, mask=mask, is_causal=is_causal).to(low)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, length, _ = x.shape
        keep = self.padding_mask(mask, batch, length, length, x.dtype)
        if self.probe.recording:
            out = self._layer(x, keep)
        else:  # in training the whole layer (projections included) is recomputed in backward
            out = recomputed(self._layer, x, keep, module=self)
        return out.squeeze(0) if unbatched else out

    def _layer(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Projections, landmarks, the three kernels and ``out_proj``: ``(B, L, C)``."""
        batch, length, _ = x.shape
        dtype = x.dtype
        compute = torch.float32 if dtype in HALF else dtype
        q = self._heads(self.q_proj(x)).to(compute)  # (B, nh, L, hd)
        v = self._heads(self.v_proj(x)).to(compute)  # (B, nh, L, hd)
        if length == 0:
            return self.finish(v.to(dtype), False)
        if keep is not None:  # padded values cannot leak (not even NaN) into any path
            v = v.masked_fill(~keep[:, None, :, None], 0.0)
        m = min(self.num_landmarks, length)
        q_land, live = segment_means(q, m, keep)  # (B, nh, m, hd), (B, m) or None
        cols = pair = rows = None
        if live is not None:  # landmarks with no real token take no part
            cols = live[:, None, None, :]  # (B, 1, 1, m)
            pair = live[:, None, :, None] & cols  # (B, 1, m, m)
            rows = live[:, None, :, None] & keep[:, None, None, :]  # (B, 1, m, L)
        scale = self.head_dim**-0.5
        # Without autograd the keys stream (see _key_pass) and queries run in blocks; with it,
        # whole tensors: fewer, larger backward kernels train faster.
        graph = needs_grad(x, module=self)
        if self.probe.recording or graph:
            k = self._heads(self.k_proj(x)).to(compute)  # (B, nh, L, hd)
            if keep is not None:
                k = k.masked_fill(~keep[:, None, :, None], 0.0)
            k_land, _ = segment_means(k, m, keep)  # (B, nh, m, hd)
        if self.probe.recording:  # reference path: explicit kernels, dense-equivalent weights
            inv = self._pinv(masked_weights((q_land * scale) @ k_land.transpose(-2, -1), pair))
            kernel_1 = masked_weights((q * scale) @ k_land.transpose(-2, -1), cols)  # (B, nh, L, m)
            kernel_3 = masked_weights((q_land * scale) @ k.transpose(-2, -1), rows)  # (B, nh, m, L)
            self.probe(kernel_1 @ (inv @ kernel_3))  # (B, nh, L, L)
            if self.dropout_p > 0:
                kernel_1 = dropout(kernel_1, p=self.dropout_p)
            out = kernel_1 @ (inv @ (kernel_3 @ v))  # (B, nh, L, hd)
            if self.conv is not None:
                out = out + self._conv_skip(v, 0, length)
            return self.finish(out.to(dtype), False)
        # fast path: softmax(Q~ K^T) V by SDPA or the streamed key pass, then blocks of queries:
        # softmax(Q K~^T) Y by SDPA plus the conv skip, straight into out_proj
        if graph:
            summary = attention(q_land, k, v, mask=rows)  # (B, nh, m, hd)
        else:
            summary, k_land = self._key_pass(x, q_land, v, keep, live, compute)  # (B, nh, m, hd)
        inv = self._pinv(masked_weights((q_land * scale) @ k_land.transpose(-2, -1), pair))
        y = inv @ summary  # (B, nh, m, hd)
        out = x.new_empty(batch, length, self.dim)  # (B, L, C)
        block = length if graph else self.block_size
        for start in range(0, length, block):
            stop = min(start + block, length)
            part = attention(q[:, :, start:stop], k_land, y, mask=cols, dropout_p=self.dropout_p)
            if self.conv is not None:  # (B, nh, Lb, hd) both, (B, Lb, nh, hd) in memory
                part = self._conv_skip(v, start, stop).add_(part)
            out[:, start:stop] = self.finish(part.to(dtype), False)  # (B, Lb, C)
        return out

    def _key_pass(
        self,
        x: torch.Tensor,
        q_land: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None,
        live: torch.Tensor | None,
        compute: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``softmax(Q~ K^T) V`` and the key landmarks ``K~``, keys projected block by block.

        Used without autograd (every block's scores share one buffer). An online softmax over
        blocks of ``Lb = block_size`` keys (running maximum per landmark, sums rescaled when it
        grows; ``exp2`` with ``log2(e)`` folded into ``Q~``) while each block's keys are summed
        into their segments: the maths of the SDPA call and of :func:`segment_means` on the
        whole ``K``, without ``K``'s ``(B, L, C)`` tensor. Padded keys get weight 0 and no part
        in the means; a landmark with no real token gets zeros.

        Returns:
            ``(summary (B, nh, m, hd), k_land (B, nh, m, hd))``.
        """
        batch, heads, length, width = v.shape
        m, block = q_land.shape[2], self.block_size
        q_t = (q_land * (width**-0.5 * LOG2E)).transpose(-2, -1)  # (B, nh, hd, m)
        seg = segment_ids(length, m, x.device)  # (L,)
        sums = v.new_zeros(batch, m, heads, width)  # (B, m, nh, hd) key sums per segment
        acc = v.new_zeros(batch, heads, m, width)  # (B, nh, m, hd) sum_j p_j v_j
        total = v.new_zeros(batch, heads, 1, m)  # (B, nh, 1, m) sum_j p_j
        top = v.new_full((batch, heads, 1, m), -math.inf)  # (B, nh, 1, m) running maximum
        work = v.new_empty(batch * heads * min(block, length) * m)  # scores, reused per block
        for start in range(0, length, block):
            stop = min(start + block, length)
            k = self.k_proj(x[:, start:stop]).to(compute)  # (B, Lb, C)
            k = k.view(batch, stop - start, heads, width)  # (B, Lb, nh, hd)
            if keep is not None:
                k = k.masked_fill(~keep[:, start:stop, None, None], 0.0)
            sums.index_add_(1, seg[start:stop], k)
            shape = (batch * heads, stop - start, m)
            out = work[: math.prod(shape)].view(shape)  # (B nh, Lb, m)
            keys = k.transpose(1, 2).reshape(batch * heads, stop - start, width)  # (B nh, Lb, hd)
            scores = torch.bmm(keys, q_t.reshape(batch * heads, width, m), out=out)
            scores = scores.view(batch, heads, stop - start, m)  # (B, nh, Lb, m) log2 units
            if keep is not None:
                scores.masked_fill_(~keep[:, None, start:stop, None], -math.inf)
            grown = torch.maximum(top, scores.amax(2, keepdim=True))  # (B, nh, 1, m)
            shift = grown.masked_fill(grown == -math.inf, 0.0)  # no real key yet: any finite
            rescale = torch.exp2(top - shift)  # (B, nh, 1, m), 0 before the first real key
            probs = scores.sub_(shift).exp2_()  # (B, nh, Lb, m)
            total = total * rescale + probs.sum(2, keepdim=True)
            acc = acc * rescale.transpose(-2, -1) + probs.transpose(-2, -1) @ v[:, :, start:stop]
            top = grown
        summary = acc / total.clamp_min(torch.finfo(total.dtype).tiny).transpose(-2, -1)
        if live is not None:  # landmarks with no real token: zeros, as SDPA's masked rows
            summary = summary.masked_fill(~live[:, None, :, None], 0.0)
        counts = segment_counts(length, m, keep, v.dtype, x.device)  # (B | 1, m)
        k_land = sums / counts.clamp_min(1)[:, :, None, None]  # (B, m, nh, hd)
        return summary, k_land.transpose(1, 2)  # (B, nh, m, hd) x 2

    def _conv_skip(self, v: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the depthwise ``(kernel, 1)`` convolution of ``v (B, nh, L, hd)``.

        Computed over those rows and their halo of ``kernel // 2`` rows each side (zero padding
        only at the ends of the sequence). Without autograd it runs as one ``(1, kernel)``
        filter per channel ``(head, d)`` on the ``(B, L, nh * hd)`` memory the projection
        produced (channels-last for oneDNN, no transposing copy) and returns
        ``(B, nh, stop - start, hd)`` laid out as ``(B, stop - start, nh, hd)``, what
        ``out_proj`` reads; with autograd, as ``nh`` channels (oneDNN's backward of the
        per-channel form is ~20x slower).
        """
        batch, heads, length, width = v.shape
        half, weight = self.conv.padding[0], self.conv.weight.to(v.dtype)  # (nh, 1, kernel, 1)
        first, last = max(start - half, 0), min(stop + half, length)
        window = v[:, :, first:last]  # (B, nh, W, hd)
        if torch.is_grad_enabled() and (v.requires_grad or weight.requires_grad):
            # channels-last makes oneDNN's depthwise (kernel, 1) convolution ~5x faster on CPU
            image = window.contiguous(memory_format=torch.channels_last)  # (B, nh, W, hd)
            out = F.conv2d(image, weight, padding=(half, 0), groups=heads)  # (B, nh, W, hd)
            return out[:, :, start - first : stop - first]  # (B, nh, R, hd)
        weight = weight.repeat_interleave(width, 0).transpose(-2, -1)  # (nh * hd, 1, 1, kernel)
        rows = window.transpose(1, 2).reshape(batch, -1, heads * width)  # (B, W, C)
        image = rows.transpose(1, 2).unsqueeze(2)  # (B, C, 1, W), channels-last
        out = F.conv2d(image, weight, padding=(0, half), groups=heads * width)  # (B, C, 1, W)
        out = out[..., start - first : stop - first].squeeze(2).transpose(1, 2)  # (B, R, C)
        return out.reshape(batch, stop - start, heads, width).transpose(1, 2)  # (B, nh, R, hd)

    def extra_repr(self) -> str:
        kernel = None if self.conv is None else self.conv.kernel_size[0]
        return (
            f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, "
            f"pinv_iterations={self.pinv_iterations}, conv_kernel_size={kernel}"
        )
