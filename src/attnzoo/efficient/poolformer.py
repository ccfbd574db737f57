"""PoolFormer's token mixer (Yu et al. 2022): average pooling minus the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int
from attnzoo.efficient._attention_free import AttentionFreeBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["PoolFormerMixing"]

YU_2022 = Paper(
    title="MetaFormer Is Actually What You Need for Vision",
    authors="Yu, Luo, Zhou, Si, Zhou, Wang, Feng, Yan",
    year=2022,
    url="https://arxiv.org/abs/2111.11418",
)


@EFFICIENT.register(
    "poolformer",
    paper=YU_2022,
    tags=("attention_free", "pooling", "causal"),
    complexity="O(L C)",
)
class PoolFormerMixing(AttentionFreeBase):
    r"""PoolFormer token mixing: ``y_i = mean_{j in window(i)} x_j - x_i``, no parameters.

    Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022,
    https://arxiv.org/abs/2111.11418. The paper's point: inside the MetaFormer block (norm,
    token mixer, residual, channel MLP), even parameter-free average pooling competes with
    attention. Its mixer is ``AvgPool(pool_size, stride 1, count_include_pad=False)(x) - x``
    (the input is subtracted because the block adds it back). On sequences the window is
    ``pool_size`` tokens centred on ``i`` (the paper pools 2-D patch grids the same way; timm's
    ``Pooling`` on a ``1 x L`` grid gives exactly this). ``O(L C)`` by prefix sums.

    Additions (the paper has neither): a ``(B, L)`` padding mask removes padded tokens from
    every average (they count as absent, as the sequence ends do), so real outputs do not
    depend on padding; ``is_causal=True`` averages the ``pool_size`` tokens ending at ``i``.
    ``num_heads``, ``head_dim``, ``qkv_bias`` and ``attn_drop`` have no effect.

    Formula:
        $$
        y_i = \frac{1}{|W(i)|} \sum_{j \in W(i)} x_j - x_i
        $$

        with $W(i)$ the `pool_size` tokens centred on $i$ that exist (padding and the sequence ends
        excluded).

    Args:
        dim: Model width ``C``.
        pool_size: Window length (odd; 3, the paper's).
        num_heads: No effect (contract argument).
        head_dim: No effect (contract argument).
        qkv_bias: No effect (contract argument).
        attn_drop: No effect (contract argument).
        proj_drop: Dropout on the output (training only).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``; mask: ``(B, L)`` bool, ``True`` = real
        - output: ``(B, L, C)``

    Example:
        >>> pool = PoolFormerMixing(1)
        >>> pool(torch.tensor([[[1.0], [2.0], [6.0]]]))[0, :, 0]
        tensor([ 0.5000,  1.0000, -2.0000])
    """

    backend = "average pooling over the sequence"

    supports_mask = True
    supports_causal = True
    token_mixing = "PoolFormer mixes tokens by average pooling (no weight matrix)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        pool_size: int = 3,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.pool_size = check_positive_int("pool_size", pool_size)
        if self.pool_size % 2 == 0:
            raise ValueError(f"pool_size must be odd (a centred window), got {pool_size}")

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # refused: there are none
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, length, _ = x.shape
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        real = x.new_ones(batch, length, 1) if keep is None else keep[..., None].to(x.dtype)
        values = x if keep is None else x.masked_fill(~keep[..., None], 0.0)  # NaN-proof
        before, after = (self.pool_size - 1, 0) if is_causal else (self.pool_size // 2,) * 2
        stacked = torch.cat([values, real], dim=-1)  # (B, L, C + 1): sums and counts at once
        prefix = F.pad(stacked.cumsum(dim=1), (0, 0, 1, 0))  # (B, L + 1, C + 1), prefix[0] = 0
        index = torch.arange(length, device=x.device)
        stop = (index + after + 1).clamp(max=length)  # (L,) one past the window
        start = (index - before).clamp(min=0)  # (L,)
        window = prefix[:, stop] - prefix[:, start]  # (B, L, C + 1)
        sums, counts = window[..., :-1], window[..., -1:]
        mean = sums / counts.clamp_min(1.0)  # a real token always counts itself
        y = self.proj_drop(mean - x)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, pool_size={self.pool_size}"
