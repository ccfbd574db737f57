"""Sinusoidal absolute positional encoding (Vaswani et al. 2017)."""

from __future__ import annotations

import torch

from attnzoo._checks import check_finite
from attnzoo.papers import VASWANI_2017
from attnzoo.positional.base import AdditivePositionalTable
from attnzoo.registry import POSITIONAL

__all__ = ["SinusoidalPositionalEncoding", "sinusoid_table"]


def sinusoid_table(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Computed in float64. For odd ``dim`` the last column is a sine (``ceil(d/2)`` sines,
    ``floor(d/2)`` cosines).

    Args:
        positions: ``(...)`` positions (integers or reals).
        dim: Encoding width ``d``.
        base: The wavelength base (10000 in the paper).

    Returns:
        ``(..., dim)`` float64 table.

    Example:
        >>> sinusoid_table(torch.tensor([0]), 4)
        tensor([[0., 1., 0., 1.]], dtype=torch.float64)
    """
    pair = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device)  # 2i
    inv_freq = base ** (-pair / dim)  # (ceil(d/2),)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq  # (..., ceil(d/2))
    table = torch.empty(*positions.shape, dim, dtype=torch.float64, device=positions.device)
    table[..., 0::2] = torch.sin(angles)
    table[..., 1::2] = torch.cos(angles[..., : dim // 2])
    return table


@POSITIONAL.register(
    "sinusoidal", paper=VASWANI_2017, tags=("absolute", "fixed", "1d"), complexity="O(L d)"
)
class SinusoidalPositionalEncoding(AdditivePositionalTable):
    r"""Fixed sinusoidal encoding added to the tokens, then dropout.

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``
    (Vaswani et al., "Attention Is All You Need", 2017, https://arxiv.org/abs/1706.03762,
    section 3.5): each pair of channels is a rotation at its own frequency, so ``PE[pos + k]`` is
    a linear function of ``PE[pos]``. The table is a non-persistent buffer (not in the
    ``state_dict``); positions ``offset .. offset + L - 1`` must be below ``max_len``.
    For odd ``dim`` the last channel is a sine.

    Formula:
        $$
        \begin{aligned}
        PE_{(pos,\,2i)} &= \sin\!\left(pos / 10000^{2i/d}\right) \\
        PE_{(pos,\,2i+1)} &= \cos\!\left(pos / 10000^{2i/d}\right)
        \end{aligned}
        \qquad Y = \mathrm{Dropout}(X + PE_{[\mathrm{offset}:\mathrm{offset}+L]})
        $$

        with $d$ = `dim`; $PE_{pos+k}$ is a linear function of $PE_{pos}$.

    Args:
        dim: Model width ``d``.
        max_len: Longest sequence (positions ``0 .. max_len - 1``).
        dropout: Dropout on ``x + PE`` (the paper uses 0.1).
        base: Wavelength base (10000).

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)`` -> same

    Example:
        >>> pe = SinusoidalPositionalEncoding(8, max_len=16)
        >>> pe(torch.zeros(2, 5, 8)).shape
        torch.Size([2, 5, 8])
        >>> pe.pe[0]
        tensor([0., 1., 0., 1., 0., 1., 0., 1.])
    """

    def __init__(
        self, dim: int, *, max_len: int = 5000, dropout: float = 0.0, base: float = 10000.0
    ) -> None:
        super().__init__(dim, max_len=max_len, dropout=dropout)
        self.base = check_finite("base", base, positive=True)
        table = sinusoid_table(torch.arange(self.max_len), self.dim, self.base)
        self.register_buffer("pe", table.float(), persistent=False)  # (max_len, dim)

    def table(self) -> torch.Tensor:
        return self.pe
