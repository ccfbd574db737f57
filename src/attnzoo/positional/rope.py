"""Rotary position embedding, RoPE (Su et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_finite, check_positive_int, type_name
from attnzoo.positional.base import check_input, check_length
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["RotaryEmbedding"]

SU_2021 = Paper(
    title="RoFormer: Enhanced Transformer with Rotary Position Embedding",
    authors="Su, Lu, Pan, Murtadha, Wen, Liu",
    year=2021,
    url="https://arxiv.org/abs/2104.09864",
)


@POSITIONAL.register(
    "rope", paper=SU_2021, tags=("relative", "fixed", "rotary"), complexity="O(L hd)"
)
class RotaryEmbedding(nn.Module):
    r"""Rotate each pair of query/key channels by an angle proportional to the position.

    Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021,
    https://arxiv.org/abs/2104.09864. Channel pair ``i`` at position ``m`` is rotated by
    ``m * theta_i``, ``theta_i = base^(-2i/hd)``; then ``<R_m q, R_n k>`` depends only on
    ``m - n``, and rotations preserve norms. ``interleaved=True`` pairs channels ``(2i, 2i+1)``
    as in the paper; ``False`` pairs ``(i, i + hd/2)`` as GPT-NeoX and LLaMA do. Angles are
    computed in float64 from the positions of every call (no cache that could serve another
    offset); half inputs are rotated in float32.

    Formula:
        $$
        \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
        \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i
        \end{pmatrix}
        \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix}, \qquad
        \theta_i = \mathrm{base}^{-2i/d_h}
        $$

        for the query or key $x$ at position $m$ (pairs $(i, i + d_h/2)$ when `interleaved=False`),
        so
        $\langle R_m q, R_n k\rangle$ depends only on $m - n$.

    Args:
        dim: Per-head width ``hd`` (even).
        base: Frequency base (10000).
        interleaved: Pair adjacent channels (paper) or halves (NeoX/LLaMA).
        max_len: Optional limit on positions (``None``: any).

    Shape:
        - rotate(q, k, offset): q ``(B, nh, L, hd)``, k ``(B, nkv, S, hd)`` -> same shapes
        - forward(x, offset): ``(..., L, hd)`` -> same

    Example:
        >>> rope = RotaryEmbedding(8)
        >>> q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
        >>> q_rot, k_rot = rope.rotate(q, k)
        >>> torch.allclose(q_rot.norm(dim=-1), q.norm(dim=-1))
        True
    """

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10000.0,
        interleaved: bool = True,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim, minimum=2)
        if self.dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got dim={dim}")
        self.base = check_finite("base", base, positive=True)
        self.interleaved = interleaved
        self.max_len = None if max_len is None else check_positive_int("max_len", max_len)

    def angles(self, length: int, offset: int = 0, device=None) -> torch.Tensor:
        """``(L, hd/2)`` float64 angles ``(offset + m) * theta_i``."""
        check_length(type(self).__name__, length, self.max_len, offset)
        pair = torch.arange(0, self.dim, 2, dtype=torch.float64, device=device)
        theta = self.base ** (-pair / self.dim)  # (hd/2,)
        positions = torch.arange(offset, offset + length, dtype=torch.float64, device=device)
        return positions[:, None] * theta[None, :]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        check_input(self, x, layout="(..., L, hd)", ndims=None)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type_name(offset)}")
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        angles = self.angles(x.shape[-2], offset, x.device)
        cos, sin = angles.cos().to(work), angles.sin().to(work)  # (L, hd/2)
        xw = x.to(work)
        if self.interleaved:
            even, odd = xw[..., 0::2], xw[..., 1::2]  # (..., L, hd/2) each
            out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
            out = out.flatten(-2)  # (..., L, hd)
        else:
            first, second = xw.chunk(2, dim=-1)  # (..., L, hd/2) each
            out = torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
        return out.to(x.dtype)

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate queries and keys whose first token sits at position ``offset``.

        For cached decoding pass the number of tokens already cached: the new queries and keys
        take positions ``offset ..``; cached keys were rotated when they were new.
        """
        check_input(self, q, layout="(B, nh, L, hd)", ndims=None, name="q")
        check_input(self, k, layout="(B, nkv, S, hd)", ndims=None, name="k")
        return self.forward(q, offset), self.forward(k, offset)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, interleaved={self.interleaved}"
