"""Parametric Nadaraya–Watson attention: Gaussian kernel pooling with a learned bandwidth."""

from __future__ import annotations

import torch
from torch import nn

from attnzoo._checks import check_finite, type_name
from attnzoo.functional.scoring import squared_distances
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import SEQUENCE, Paper

__all__ = ["NadarayaWatsonAttention"]


NADARAYA_1964 = Paper(
    title="On Estimating Regression",
    authors="Nadaraya",
    year=1964,
    url="https://doi.org/10.1137/1109020",
)


@SEQUENCE.register(
    "nadaraya_watson",
    paper=NADARAYA_1964,
    tags=("dense", "self", "cross", "kernel", "foundations"),
    complexity="O(L S d)",
)
class NadarayaWatsonAttention(AttentionBase):
    r"""Nadaraya–Watson kernel regression with a learnable bandwidth, as attention.

    ``f(q) = sum_i softmax_i(-((q - k_i) w)^2 / 2) v_i`` — the survey's "parametric" attention
    pooling (d2l ``NWKernelRegression``): a Gaussian kernel whose inverse bandwidth ``w`` is
    learned, one per head. With vectors the squared distance is ``|q - k_i|^2``. Nadaraya,
    "On estimating regression", 1964; Watson, "Smooth regression analysis", 1964.

    By default there are no projections (``projections=False``: queries are ``x``, keys and values
    are ``context``, heads split the channels), exactly the textbook model; ``projections=True``
    adds ``q_proj/k_proj/v_proj/out_proj`` like ``mha``. Deviations: d2l draws the initial ``w``
    uniformly from [0, 1); here ``w`` starts at ``init_inverse_bandwidth=1`` so the untrained
    module equals the non-parametric Gaussian pooling ``attnzoo.functional.nadaraya_watson``;
    the default ``num_heads=1`` (not ``mha``'s 8) is the textbook's single kernel.

    Formula:
        $$
        f(q) = \sum_i \mathrm{softmax}_i\!\left(-\frac{1}{2}\big(\lVert q - k_i \rVert\,
        w\big)^2\right) v_i
        $$

        with a learned inverse bandwidth $w$ per head (initialised at 1).

    Args:
        dim: Width ``C`` of queries (and of keys/values without projections).
        num_heads: Kernels, each with its own ``w`` over ``head_dim`` channels.
        head_dim: Channels per head, default ``dim // num_heads``.
        qkv_bias: Bias of the projections (``projections=True`` only).
        attn_drop: Dropout on the weights (training only).
        proj_drop: Dropout on the output.
        projections: Add learned ``q/k/v/out`` projections.
        init_inverse_bandwidth: Initial ``w``.

    The keys are ``context`` (default ``x``); the values are ``context`` too unless ``values``
    is given — the survey's regression has keys ``x_i`` and values ``y_i``.

    Shape:
        - x: ``(B, L, C)``; context: ``(B, S, C)``; values: ``(B, S, C_v)`` (default: context)
        - output ``(B, L, C)``, or ``(B, L, C_v)`` with ``values`` and no projections

    Example:
        >>> nw = NadarayaWatsonAttention(1)
        >>> x_train = torch.linspace(0, 5, 50).view(1, 50, 1)
        >>> y_train = 2 * torch.sin(x_train) + x_train**0.8
        >>> nw(torch.zeros(1, 3, 1), x_train, values=y_train).shape
        torch.Size([1, 3, 1])
    """

    backend = "reference: dense kernel weights from exact squared distances"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        projections: bool = False,
        init_inverse_bandwidth: float = 1.0,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            projections=projections,
        )
        init = check_finite("init_inverse_bandwidth", init_inverse_bandwidth, positive=True)
        self.w = nn.Parameter(torch.full((self.num_heads,), init))

    def _split_values(self, values: torch.Tensor, x: torch.Tensor, kv_len: int) -> torch.Tensor:
        """``values (B, S, C_v)`` checked against the queries ``x`` and split into heads."""
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"values must be a torch.Tensor (B, S, C_v), got {type_name(values)}")
        batch = x.shape[0]
        if values.dim() != 3 or values.shape[:2] != (batch, kv_len):
            raise ValueError(
                f"values must be (B, S, C_v) with the batch of x, B = {batch}, and one row per "
                f"key, S = {kv_len}; got shape {tuple(values.shape)}"
            )
        if values.dtype != x.dtype or values.device != x.device:
            raise TypeError(
                f"values must match x in dtype and device: x {x.dtype} on {x.device}, values "
                f"{values.dtype} on {values.device}; convert with values.to(x)"
            )
        if isinstance(self.v_proj, nn.Linear) and values.shape[-1] != self.context_dim:
            raise ValueError(
                f"values must have C_v = context_dim = {self.context_dim} channels (the input "
                f"of v_proj), got shape {tuple(values.shape)}"
            )
        projected = self.v_proj(values)  # (B, S, C_v)
        if projected.shape[-1] % self.num_heads:
            raise ValueError(
                f"values width {projected.shape[-1]} must be divisible by "
                f"num_heads={self.num_heads}"
            )
        width = projected.shape[-1] // self.num_heads
        return projected.view(batch, kv_len, self.num_heads, width).transpose(
            1, 2
        )  # (B, nh, S, hd_v)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        values: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if isinstance(values, torch.Tensor) and isinstance(x, torch.Tensor) and x.dim() == 2:
            values = values.unsqueeze(0)  # (1, S, C_v)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        if values is not None:
            v = self._split_values(values, x, k.shape[2])  # (B, nh, S, hd_v)
        batch, _, q_len, _ = q.shape
        mask = self.check_mask(mask, batch, q_len, k.shape[2], q.dtype)
        # |q - k|^2 from the differences themselves (exact to their rounding, whatever the
        # offset of q and k; the |q|^2 + |k|^2 - 2 q.k expansion cancels for un-centred inputs),
        # without materialising the (B, nh, L, S, hd) difference tensor.
        sq_dist = squared_distances(q, k)  # (B, nh, L, S)
        scale = self.w.pow(2).view(1, -1, 1, 1) / 2  # (1, nh, 1, 1)
        scores = -scale * sq_dist  # (B, nh, L, S)
        out, attn = self.attend_scores(scores, v, mask, is_causal)
        if values is not None and isinstance(self.out_proj, nn.Identity):
            batch, heads, length, width = out.shape
            y = out.transpose(1, 2).reshape(batch, length, heads * width)  # (B, L, C_v)
            y = self.proj_drop(y.squeeze(0) if unbatched else y)
        else:
            y = self.finish(out, unbatched)
        return (y, attn.squeeze(0) if unbatched else attn) if need_weights else y
