"""Linear attention (Katharopoulos et al. 2020): ``phi(x) = elu(x) + 1``, causal by prefix sums."""

from __future__ import annotations

import torch

from attnzoo._checks import check_finite
from attnzoo.efficient._kernel import KernelAttentionBase, RecurrentState
from attnzoo.efficient._kernel_features import elu_features
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["LinearAttention", "RecurrentState"]


@EFFICIENT.register(
    "linear",
    paper=Paper(
        title="Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
        authors="Katharopoulos, Vyas, Pappas, Fleuret",
        year=2020,
        url="https://arxiv.org/abs/2006.16236",
    ),
    tags=("kernel", "linear", "causal", "recurrent", "cross"),
    complexity="O(L hd^2) time, O(L hd) memory (causal: O(L (C + hd) hd), chunk C)",
)
class LinearAttention(KernelAttentionBase):
    r"""Linear attention: softmax replaced by the kernel ``phi(q)^T phi(k)``, ``phi = elu + 1``.

    Katharopoulos, Vyas, Pappas, Fleuret, "Transformers are RNNs: Fast Autoregressive
    Transformers with Linear Attention", 2020, https://arxiv.org/abs/2006.16236.

    ``out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps)``, summing
    over every key, or over ``j <= i + S - L`` when ``is_causal`` (bottom-right aligned). The
    sums are computed once (``O(L hd^2)``), never the ``L x S`` matrix. The causal form uses
    chunked prefix sums (:func:`attnzoo.efficient._kernel.kernel_attention`): exact, no Python
    loop over tokens. A :class:`RecurrentState` passed as ``cache=`` carries
    ``sum_j phi(k_j) [v_j, 1]^T`` between calls, so decoding token by token (the paper's RNN
    form, constant memory per step) equals one causal call on the whole sequence.

    Can: self- and cross-attention, causal (also cross, bottom-right), ``(B, S)`` boolean
    padding masks (padded keys get zero features; a query with no real key returns zeros),
    RNN-mode decoding. Cannot: per-query or float masks (``NotImplementedError``) — the kernel
    sums cannot skip single ``(i, j)`` pairs.

    Attention weights: there is no weight matrix on the fast path. While
    ``attnzoo.viz.record_attention`` listens, the module builds the explicit normalised
    ``phi(q) phi(k)^T`` matrix (``O(L S)``), passes it through ``probe`` and uses it for the
    output; with a ``cache`` nothing is recorded.

    Defaults and deviations: queries and keys enter ``phi`` unscaled (no ``1/sqrt(hd)``) and
    ``eps = 1e-6`` is added to the denominator, as in the authors' ``fast-transformers`` code.
    Dropout (``attn_drop``) cannot drop single ``(i, j)`` weights in linear time; it drops whole
    key columns of the implicit weight matrix (one mask per batch, head and key, shared by
    every query, rescaled by ``1 / (1 - p)``), which keeps the output's expectation. Half
    inputs run the kernel sums in float32 (they overflow in float16).

    Formula:
        $$
        \mathrm{out}_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j)\, v_j^\top}
        {\phi(q_i)^\top \sum_j \phi(k_j) + \epsilon}, \qquad \phi(x) = \mathrm{elu}(x) + 1
        $$

        summing over every key, or over $j \le i$ when causal.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width ``hd``, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Key-column dropout on the implicit weights (training only).
        proj_drop: Dropout after ``out_proj``.
        eps: Added to the denominator (``>= 0``); rows that see no key give zeros either way.
        chunk_size: Tokens per chunk of the causal prefix sums (speed/memory knob, not maths).
        context_dim: Width of ``context`` for cross-attention, default ``dim``.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; context: ``(B, S, C_ctx)``
        - mask: ``(B, S)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = LinearAttention(64, num_heads=4)
        >>> x = torch.randn(2, 10, 64)
        >>> attn(x, is_causal=True).shape
        torch.Size([2, 10, 64])
        >>> state = RecurrentState()
        >>> steps = torch.cat([attn(x[:, t : t + 1], is_causal=True, cache=state)
        ...                    for t in range(10)], dim=1)
        >>> torch.allclose(steps, attn(x, is_causal=True), atol=1e-5)
        True
    """

    backend = "kernel feature maps: two matrix products (cumulative sums when causal)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        eps: float = 1e-6,
        chunk_size: int = 64,
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
        self.eps = check_finite("eps", eps)
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.chunk_size = self._check_chunk(chunk_size)

    @property
    def feature_dim(self) -> int:
        return self.head_dim

    def query_features(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return elu_features(q)  # (..., hd): no larger than q, nothing to reuse

    def key_features(self, k: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return elu_features(k)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}, chunk_size={self.chunk_size}"
