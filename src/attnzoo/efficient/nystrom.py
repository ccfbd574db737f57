"""Nystromformer (Xiong et al. 2021): Nystrom approximation of softmax attention with landmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo.efficient._kernel import HALF
from attnzoo.functional.attention import attention
from attnzoo.functional.softmax import safe_softmax
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["Nystromformer", "iterative_pinv", "segment_means"]


def iterative_pinv(a: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of each ``(..., m, m)`` matrix by Newton-Schulz iteration.

    ``Z_0 = A^T / (||A||_1 ||A||_inf)`` computed per matrix (the official code's first version
    took the maximum over the whole batch, so one sample's scale changed another's result,
    mlpen/Nystromformer#3), then ``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4``
    (Xiong et al. 2021, eq. 13). A zero matrix gives zeros; zero rows/columns stay zero.
    """
    m = a.shape[-1]
    flat = a.reshape(-1, m, m)  # (N, m, m)
    col = flat.abs().sum(-2).amax(-1)  # (N,) ||A||_1
    row = flat.abs().sum(-1).amax(-1)  # (N,) ||A||_inf
    norm = (col * row)[:, None, None]
    z = flat.transpose(-2, -1) / torch.where(norm > 0, norm, torch.ones_like(norm))
    for _ in range(iterations):  # four fused GEMMs (baddbmm folds every scalar and subtraction)
        az = torch.bmm(flat, z)
        inner = torch.baddbmm(az, az, az, beta=7, alpha=-1)  # A Z (7 I - A Z)
        inner = torch.baddbmm(az, az, inner, beta=15, alpha=-1)  # A Z (15 I - inner)
        z = torch.baddbmm(z, z, inner, beta=13 / 4, alpha=-1 / 4)  # Z (13 I - inner) / 4
    return z.view(a.shape)  # (..., m, m)


def segment_means(
    x: torch.Tensor, segments: int, keep: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Means of ``segments`` contiguous segments of ``x (B, nh, L, hd)`` over real tokens.

    Token ``i`` belongs to segment ``floor(i * segments / L)``: sizes differ by at most one, so
    ``segments <= L`` never leaves one empty. With a ``(B, L)`` padding mask the means skip
    padded tokens; returns ``(means (B, nh, segments, hd), live (B, segments) or None)`` where
    ``live`` marks segments with at least one real token.
    """
    batch, heads, length, width = x.shape
    if keep is not None:
        x = x.masked_fill(~keep[:, None, :, None], 0.0)
    if length % segments == 0:  # equal segments: a view and one reduction
        size = length // segments
        sums = x.unflatten(2, (segments, size)).sum(3)  # (B, nh, m, hd)
        if keep is None:
            return sums / size, None
        counts = keep.view(batch, segments, size).sum(-1).to(x.dtype)  # (B, m)
    else:
        seg = torch.arange(length, device=x.device) * segments // length  # (L,)
        sums = x.new_zeros(batch, heads, segments, width).index_add_(2, seg, x)  # (B, nh, m, hd)
        if keep is None:
            counts = torch.bincount(seg, minlength=segments).to(x.dtype)  # (m,)
            return sums / counts[:, None], None
        weight = keep.to(x.dtype)  # (B, L)
        counts = weight.new_zeros(batch, segments).index_add_(1, seg, weight)  # (B, m)
    return sums / counts.clamp_min(1)[:, None, :, None], counts > 0


def _softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.softmax(scores, dim=-1) if mask is None else safe_softmax(scores, mask)


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
    """Nystromformer: softmax attention approximated from ``m`` landmark queries and keys.

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

    Exactness: with ``num_landmarks = L``, ``pinv_iterations=None`` (exact ``linalg.pinv``)
    and ``conv_kernel_size=None`` it equals softmax attention (``A pinv(A) A = A``).

    Attention weights: while ``attnzoo.viz.record_attention`` listens, the dense-equivalent
    ``softmax(Q K~^T) pinv(.) softmax(Q~ K^T)`` ``(B, nh, L, S)`` goes through ``probe`` (rows
    sum to about one; the conv skip is not in it). ``attn_drop`` drops entries of
    ``softmax(Q K~^T)`` (each query's weights over the landmarks), once.

    Defaults: ``num_landmarks = 64`` and ``conv_kernel_size = 33`` (the paper's BERT runs and
    the official ``nystrom-512`` config; its LRA configs use 32-256 landmarks and kernel 35),
    6 pinv iterations. Half inputs are computed in float32.

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

    supports_mask = True
    supports_causal = False
    supports_cross = False

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

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        q, k, v = self.project(x, None)  # (B, nh, L, hd) x 3
        batch, _, length, _ = q.shape
        keep = self.padding_mask(mask, batch, length, length, q.dtype)
        dtype = q.dtype
        if length == 0:
            return self.finish(v, unbatched)
        compute = torch.float32 if dtype in HALF else dtype
        q, k, v = q.to(compute), k.to(compute), v.to(compute)
        if keep is not None:  # padded keys/values cannot leak (not even NaN) into any path
            gone = ~keep[:, None, :, None]  # (B, 1, L, 1)
            k, v = k.masked_fill(gone, 0.0), v.masked_fill(gone, 0.0)
        m = min(self.num_landmarks, length)
        q_land, live = segment_means(q, m, keep)  # (B, nh, m, hd), (B, m) or None
        k_land, _ = segment_means(k, m, keep)  # (B, nh, m, hd)
        scale = self.head_dim**-0.5
        cols = rows = pair = None
        if live is not None:  # landmarks with no real token take no part
            cols = live[:, None, None, :]  # (B, 1, 1, m)
            pair = live[:, None, :, None] & cols  # (B, 1, m, m)
            rows = live[:, None, :, None] & keep[:, None, None, :]  # (B, 1, m, L)
        kernel_2 = _softmax((q_land * scale) @ k_land.transpose(-2, -1), pair)  # (B, nh, m, m)
        inv = self._pinv(kernel_2)  # (B, nh, m, m)
        if self.probe.recording:  # reference path: explicit kernels, dense-equivalent weights
            kernel_1 = _softmax((q * scale) @ k_land.transpose(-2, -1), cols)  # (B, nh, L, m)
            kernel_3 = _softmax((q_land * scale) @ k.transpose(-2, -1), rows)  # (B, nh, m, L)
            self.probe(kernel_1 @ (inv @ kernel_3))  # (B, nh, L, L)
            if self.dropout_p > 0:
                kernel_1 = F.dropout(kernel_1, p=self.dropout_p)
            out = kernel_1 @ (inv @ (kernel_3 @ v))  # (B, nh, L, hd)
            if self.conv is not None:
                out = out + self._conv_skip(v)
        else:  # softmax(Q~ K^T) V and softmax(Q K~^T) Y are fused SDPA calls (no L x m tensor)
            summary = attention(q_land, k, v, mask=rows)  # (B, nh, m, hd)
            out = attention(q, k_land, inv @ summary, mask=cols, dropout_p=self.dropout_p)
            if self.conv is not None:  # in place: both are (B, L, nh, hd) in memory
                out = self._conv_skip(v).add_(out)
        return self.finish(out.to(dtype), unbatched)

    def _conv_skip(self, v: torch.Tensor) -> torch.Tensor:
        """Depthwise ``(kernel, 1)`` convolution of ``v (B, nh, L, hd)`` along the sequence.

        Run as one ``(1, kernel)`` filter per channel ``(head, d)`` on the ``(B, L, nh * hd)``
        memory that the projection produced (channels-last for oneDNN, no transposing copy);
        returns ``(B, nh, L, hd)`` laid out as ``(B, L, nh, hd)``, what ``out_proj`` reads.
        """
        batch, heads, length, width = v.shape
        weight = self.conv.weight.to(v.dtype)  # (nh, 1, kernel, 1)
        weight = weight.repeat_interleave(width, 0).transpose(-2, -1)  # (nh * hd, 1, 1, kernel)
        rows = v.transpose(1, 2).reshape(batch, length, heads * width)  # (B, L, nh * hd)
        image = rows.transpose(1, 2).unsqueeze(2)  # (B, nh * hd, 1, L), channels-last
        pad = (0, self.conv.padding[0])
        out = F.conv2d(image, weight, padding=pad, groups=heads * width)  # (B, nh * hd, 1, L)
        out = out.squeeze(2).transpose(1, 2)  # (B, L, nh * hd)
        return out.reshape(batch, length, heads, width).transpose(1, 2)  # (B, nh, L, hd)

    def extra_repr(self) -> str:
        kernel = None if self.conv is None else self.conv.kernel_size[0]
        return (
            f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, "
            f"pinv_iterations={self.pinv_iterations}, conv_kernel_size={kernel}"
        )
