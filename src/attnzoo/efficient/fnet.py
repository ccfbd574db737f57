"""FNet (Lee-Thorp et al. 2021): token mixing by the real part of a 2-D Fourier transform."""

from __future__ import annotations

import torch

from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["FNetMixing", "fourier_mix"]

LEE_THORP_2021 = Paper(
    title="FNet: Mixing Tokens with Fourier Transforms",
    authors="Lee-Thorp, Ainslie, Eckstein, Ontañón",
    year=2021,
    url="https://arxiv.org/abs/2105.03824",
)


def fourier_mix(x: torch.Tensor) -> torch.Tensor:
    """``Re(FFT_seq(FFT_hidden(x)))`` over the last two dims of a real ``(..., L, C)`` tensor.

    Computed from the half spectrum of ``rfft2`` (about half the work of ``fft2``): for real
    input the full 2-D spectrum is Hermitian, ``Y[k, m] = conj(Y[-k mod L, C - m])``, so the
    real parts of the columns ``m > C // 2`` are those of columns ``C - m`` at rows ``-k mod L``.
    Half-precision inputs are transformed in float32 and cast back.

    Example:
        >>> x = torch.randn(2, 5, 6)
        >>> torch.allclose(fourier_mix(x), torch.fft.fft2(x).real, atol=1e-5)
        True
    """
    if x.numel() == 0:  # B = 0 or L = 0: the transform of nothing (pocketfft/MKL refuse it)
        return x.clone()
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    channels = x.shape[-1]
    half = torch.fft.rfft2(work, dim=(-2, -1)).real  # (..., L, C // 2 + 1)
    missing = channels - 1 - channels // 2  # columns C // 2 + 1 .. C - 1
    mirrored = half.roll(-1, dims=-2).flip(-2)  # row k holds row (-k mod L)
    tail = mirrored[..., 1 : missing + 1].flip(-1)  # column m holds column C - m
    return torch.cat([half, tail], dim=-1).to(x.dtype)


@EFFICIENT.register(
    "fnet",
    paper=LEE_THORP_2021,
    tags=("attention_free", "fourier", "parameter_free"),
    complexity="O(L C log(L C))",
)
class FNetMixing(AttentionFreeBase):
    r"""FNet Fourier token mixing: ``y = Re(FFT_seq(FFT_hidden(x)))``, no parameters.

    Lee-Thorp, Ainslie, Eckstein and Ontañón, "FNet: Mixing Tokens with Fourier Transforms",
    2021, https://arxiv.org/abs/2105.03824. FNet replaces the self-attention sublayer of a
    Transformer encoder by a 2-D discrete Fourier transform over the sequence and hidden
    dimensions, keeping only the real part:

    ``y[l, c] = Re( sum_{j, d} x[j, d] exp(-2 pi i (l j / L + c d / C)) )``.

    This module is that sublayer only (the residual, layer norms and feed-forward belong to the
    block, as for every attention module here). It is exact, has no parameters and costs
    ``O(L C log(L C))`` time and ``O(L C)`` memory.

    What it can and cannot do:

    - **Padding by zeroing**: with a ``(B, S)`` boolean padding mask (``True`` = real token),
      masked tokens are set to zero before the transform, so valid outputs do not depend on the
      *content* of padded positions (NaN there cannot leak either). They still depend on the
      *amount* of padding, because the DFT over the sequence has length ``L`` (as in the paper,
      which pads every input to a fixed length). Outputs at padded positions are not zero.
      Other masks (per-query, float) raise ``NotImplementedError``.
    - **No causality**: every output mixes every token; ``is_causal=True`` raises
      ``NotImplementedError``. No cross-attention (``context`` raises).
    - **No attention weights**: ``attnzoo.viz.record_attention`` raises ``ValueError`` naming
      the module (``has_attention_weights = False``).

    Contract arguments that have no effect (FNet has no heads, projections or weights):
    ``num_heads``, ``head_dim``, ``qkv_bias`` and ``attn_drop`` are validated and ignored.
    ``proj_drop`` is a dropout on the output (default 0, as in the paper's mixing sublayer).
    Deviation from the paper's code: none in the maths; the paper computes the DFT with FFT on
    GPU and with matrix multiplies on TPU for short sequences, this module always uses
    ``torch.fft`` (half spectrum, see :func:`fourier_mix`).

    Formula:
        $$
        y_{l, c} = \mathrm{Re}\!\left( \sum_{j, d} x_{j, d}\; e^{-2\pi i\, (l j / L + c d / C)}
        \right)
        = \mathrm{Re}\big(\mathcal{F}_{\mathrm{seq}}(\mathcal{F}_{\mathrm{hidden}}(X))\big)
        $$

    Args:
        dim: Model width ``C``.
        num_heads: No effect (contract argument).
        head_dim: No effect (contract argument).
        qkv_bias: No effect (contract argument).
        attn_drop: No effect (no weights to drop).
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``
        - mask: ``(B, L)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> fnet = FNetMixing(8)
        >>> x = torch.randn(2, 5, 8)
        >>> torch.allclose(fnet(x), torch.fft.fftn(x, dim=(1, 2)).real, atol=1e-5)
        True
    """

    backend = "torch.fft over sequence and hidden dims"

    supports_mask = True
    token_mixing = "FNet mixes tokens with a Fourier transform (no query-key weight matrix)"

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
        batch, length, _ = x.shape
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        if keep is not None:
            x = x.masked_fill(~keep[..., None], 0.0)
        y = self.proj_drop(fourier_mix(x))
        return y.squeeze(0) if unbatched else y
