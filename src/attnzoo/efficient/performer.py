"""Performer (Choromanski et al. 2021): FAVOR+ positive orthogonal random features."""

from __future__ import annotations

import torch

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.efficient._kernel import HALF, KernelAttentionBase, RecurrentState
from attnzoo.efficient._kernel_features import (
    orthogonal_gaussian,
    relu_kernel_features,
    softmax_kernel_features,
)
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["KERNELS", "Performer", "RecurrentState"]

KERNELS = ("softmax", "relu")


@EFFICIENT.register(
    "performer",
    paper=Paper(
        title="Rethinking Attention with Performers",
        authors="Choromanski, Likhosherstov, Dohan, Song, Gane, Sarlos, Hawkins, Davis, "
        "Mohiuddin, Kaiser, Belanger, Colwell, Weller",
        year=2021,
        url="https://arxiv.org/abs/2009.14794",
    ),
    tags=("kernel", "random_features", "causal", "recurrent", "cross"),
    complexity="O(L m hd) time, O(L m + m hd) memory (m = nb_features)",
)
class Performer(KernelAttentionBase):
    r"""Performer attention: FAVOR+ random features that approximate the softmax kernel.

    Choromanski et al., "Rethinking Attention with Performers", ICLR 2021,
    https://arxiv.org/abs/2009.14794.

    Softmax kernel (default): ``phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m)`` with
    ``x' = x / hd^(1/4)`` and ``W`` of ``m = nb_features`` block-orthogonal Gaussian rows, so
    ``E[phi(q)^T phi(k)] = exp(q^T k / sqrt(hd))`` (unbiased) with strictly positive features.
    ReLU kernel: ``phi(x) = relu(W x / sqrt(m)) + 1e-3``. Then
    ``out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / phi(q_i)^T sum_j phi(k_j)`` in ``O(L m hd)``,
    causal by the chunked prefix sums shared with ``linear``
    (:func:`attnzoo.efficient._kernel.kernel_attention`), and RNN-mode decoding with a
    :class:`RecurrentState` as ``cache=`` (decode in ``eval()``, so the features stay fixed).
    Non-causal calls stream blocks of ``block_size`` tokens through projections, features and
    ``out_proj`` (the ``(B, nh, L, m)`` features are never whole); ``exp`` is evaluated as
    ``exp2`` with ``log2(e)`` folded into ``W``.

    Random features: ``W`` is a buffer drawn at construction from the global RNG (seed with
    ``torch.manual_seed``). In training it is redrawn every ``redraw_interval`` forward calls
    (``calls_since_redraw`` counts them; ``None`` never redraws); ``eval()`` never redraws, so
    two eval calls are identical. ``W`` and the features stay in float32 for half inputs
    (``.half()`` leaves ``W`` in float32). The orthogonal blocks come from a sign-corrected QR
    (``Q diag(sign(diag(R)))``, Haar-distributed); the official code uses LAPACK's raw ``Q``,
    whose first column always has a negative first entry, which biases the estimator.

    Numerical stabilisation, at any input scale: each query's features are divided by their
    own largest one (cancels in its normalisation). Each key's features are split as
    ``f_j * exp(l_j)`` with ``l_j`` its largest exponent (``f_j <= 1``), and the key sums are
    kept relative to the largest ``l_j`` — the official code's max over keys, but computed
    over real keys only (padding cannot shift it) and, in causal calls and RNN decoding, as a
    running maximum with online rescaling (no later key can change an earlier output), as
    FlashAttention's online softmax does with its row maxima. Nothing overflows; the weight of
    a key ``exp(-88)`` times below the strongest one underflows in float32, as it would in
    softmax attention. No ``eps`` is added to softmax features (the official ``1e-6`` would
    bias the estimate); a query that sees no real key returns zeros. Limits, measured (tests
    in ``test_kernel_numerics.py``): up to input scale 16 the float32 result is the float64
    evaluation of the same estimator; where one key's features span more than float32's ~88
    nats (input scale 64 with the default initialisation), its weakest features underflow and
    the streamed, explicit and recurrent paths agree only roughly — by then FAVOR+ itself is
    far from softmax (its variance grows as ``exp(|q|^2 + |k|^2)``; relative error ~1.2 at
    scale 64 even with 1024 features).

    Can: self/cross attention, causal (bottom-right), ``(B, S)`` bool padding masks. Cannot:
    per-query or float masks (``NotImplementedError``). Attention weights: while
    ``attnzoo.viz.record_attention`` listens, the explicit normalised ``phi(q) phi(k)^T``
    matrix (``O(L S)``) goes through ``probe`` and gives the output. ``attn_drop`` drops whole
    key columns of that implicit matrix (shared by every query, rescaled), as in ``linear``.

    Formula:
        $$
        \begin{gathered}
        \phi(x) = \frac{1}{\sqrt{m}} \exp\!\left(W x' - \frac{\lVert x' \rVert^2}{2}\right), \qquad
        x' = x / d_h^{1/4} \\
        \mathrm{out}_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j)\, v_j^\top}{\phi(q_i)^\top \sum_j
        \phi(k_j)}
        \end{gathered}
        $$

        with $W$ the $m$ = `nb_features` block-orthogonal Gaussian rows, so
        $\mathbb{E}[\phi(q)^\top \phi(k)] = \exp(q^\top k / \sqrt{d_h})$.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width ``hd``, default ``dim // num_heads``.
        qkv_bias: Bias in the q/k/v projections.
        attn_drop: Key-column dropout on the implicit weights (training only).
        proj_drop: Dropout after ``out_proj``.
        nb_features: Random features ``m`` (paper/official default 256).
        kernel: ``"softmax"`` (FAVOR+, positive features) or ``"relu"``.
        redraw_interval: Redraw ``W`` every this many training calls (default 1000, as
            performer-pytorch); ``None`` keeps it fixed.
        ortho_scaling: Row norms of ``W``: 0 = chi-distributed (unbiased, official default),
            1 = ``sqrt(hd)``.
        chunk_size: Tokens per chunk of the causal prefix sums.
        context_dim: Width of ``context`` for cross-attention, default ``dim``.

    Shape:
        - x: ``(B, L, C)`` or ``(L, C)``; context: ``(B, S, C_ctx)``
        - mask: ``(B, S)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = Performer(64, num_heads=4, nb_features=32).eval()
        >>> x = torch.randn(2, 10, 64)
        >>> torch.equal(attn(x), attn(x))
        True
        >>> attn(x, is_causal=True).shape
        torch.Size([2, 10, 64])
    """

    backend = "random-feature kernel (FAVOR+): two matrix products (prefix sums when causal)"

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        nb_features: int = 256,
        kernel: str = "softmax",
        redraw_interval: int | None = 1000,
        ortho_scaling: int = 0,
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
        self.nb_features = check_positive_int("nb_features", nb_features)
        self.kernel = check_choice("kernel", kernel, KERNELS)
        if redraw_interval is not None:
            check_positive_int("redraw_interval", redraw_interval)
        self.redraw_interval = redraw_interval
        self.ortho_scaling = check_choice("ortho_scaling", ortho_scaling, (0, 1))
        self.chunk_size = self._check_chunk(chunk_size)
        self.calls_since_redraw = 0
        self.register_buffer("projection", self._draw(torch.device("cpu"), torch.float32))

    def _draw(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return orthogonal_gaussian(
            self.nb_features, self.head_dim, scaling=self.ortho_scaling, device=device, dtype=dtype
        )

    @torch.no_grad()
    def redraw_features(self) -> None:
        """Draw a new projection ``W`` now (global RNG) and reset the call counter."""
        self.projection = self._draw(self.projection.device, self.projection.dtype)
        self.calls_since_redraw = 0

    def _apply(self, fn, recurse=True):
        kept = self.projection
        super()._apply(fn, recurse)
        if self.projection.dtype in HALF:  # features must stay in float32 (overflow)
            self.projection = kept.to(device=self.projection.device, dtype=torch.float32)
        return self

    def prepare_features(self) -> None:
        """Count training calls and redraw ``W`` every ``redraw_interval`` of them."""
        if self.training and self.redraw_interval is not None:
            if self.calls_since_redraw >= self.redraw_interval:
                self.redraw_features()
            self.calls_since_redraw += 1

    def check_decoding(self) -> None:
        """A redraw mid-sequence would leave the cached state in the old features' space."""
        if self.training and self.redraw_interval is not None:
            raise ValueError(
                "performer decoding with cache= needs fixed random features, but the module is "
                f"in training mode with redraw_interval={self.redraw_interval}: call .eval() "
                "to decode, or set redraw_interval=None"
            )

    @property
    def feature_dim(self) -> int:
        return self.nb_features

    def query_features(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        w = self.projection.to(q.dtype)
        if self.kernel == "relu":
            return relu_kernel_features(q, w, out=out)
        return softmax_kernel_features(q, w, normalise_rows=True, out=out)  # per-query scale

    def key_features(self, k: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``phi(k)`` as the paper writes it (unbiased; leaves the float range for large ``k``)."""
        w = self.projection.to(k.dtype)
        if self.kernel == "relu":
            return relu_kernel_features(k, w, out=out)
        return softmax_kernel_features(k, w, out=out)

    def scaled_key_features(
        self, k: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Softmax kernel: ``(f, log_scale)`` with each key's largest feature taken out."""
        if self.kernel == "relu":
            return self.key_features(k, out=out), None
        w = self.projection.to(k.dtype)
        return softmax_kernel_features(k, w, normalise_rows=True, return_log_scale=True, out=out)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, nb_features={self.nb_features}, kernel={self.kernel!r}, "
            f"redraw_interval={self.redraw_interval}"
        )
