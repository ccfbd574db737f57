"""Synthesizer (Tay et al. 2021): attention weights synthesised without query-key dot products."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo.efficient._fixed_length import check_length, check_seq_len
from attnzoo.functional.dropout import dropout
from attnzoo.functional.softmax import key_padding_keep
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["COMPONENTS", "SynthesizerAttention"]

COMPONENTS = ("dense", "random", "factorized_dense", "factorized_random", "vanilla")

TAY_2021 = Paper(
    title="Synthesizer: Rethinking Self-Attention for Transformer Models",
    authors="Tay, Bahri, Metzler, Juan, Zhao, Zheng",
    year=2021,
    url="https://arxiv.org/abs/2005.00743",
)


def parse_mode(mode: object) -> tuple[str, ...]:
    """``"random+vanilla"`` -> ``("random", "vanilla")``, validated against :data:`COMPONENTS`."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str such as 'dense' or 'random+vanilla', got {mode!r}")
    parts = tuple(part.strip() for part in mode.split("+"))
    unknown = [part for part in parts if part not in COMPONENTS]
    if unknown:
        raise ValueError(
            f"mode must be one of {COMPONENTS} or a '+'-joined mixture of them (e.g. "
            f"'random+vanilla'); got {mode!r} with unknown part(s) {unknown}"
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"mode lists a component twice: {mode!r}")
    if parts == ("vanilla",):
        raise ValueError("mode='vanilla' alone is dot-product attention: use attnzoo.create('mha')")
    return parts


class DenseSynthesis(nn.Module):
    """Dense synthetic logits ``F(X_i) = W2_h ReLU(W1 X_i + b1) + b2_h`` per head.

    ``fc1`` is ``W1`` (``dim -> nh * hd``, the paper's ``d x d`` when ``nh * hd = dim``); each head
    ``h`` has its own ``W2_h`` (``hd x width``) and ``b2_h``. With ``factors=(a, b)`` the output
    is factorised (factorized dense): ``width = a + b`` logits ``A, B`` per token, composed as
    ``C[j] = A[j // b] * B[j % b]`` for ``j < seq_len`` (``A`` repeated, ``B`` tiled).
    """

    def __init__(
        self, dim: int, num_heads: int, head_dim: int, seq_len: int, factors: tuple | None
    ) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.factors = num_heads, head_dim, factors
        width = seq_len if factors is None else factors[0] + factors[1]
        self.fc1 = nn.Linear(dim, num_heads * head_dim)
        bound = 1.0 / math.sqrt(head_dim)  # nn.Linear's default for a head_dim -> width layer
        self.weight2 = nn.Parameter(torch.empty(num_heads, head_dim, width).uniform_(-bound, bound))
        self.bias2 = nn.Parameter(torch.empty(num_heads, width).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        hidden = F.relu(self.fc1(x)).view(
            batch, length, self.num_heads, self.head_dim
        )  # (B, L, nh, hd)
        hidden = hidden.transpose(1, 2)  # (B, nh, L, hd)
        if self.factors is None:
            weight2, bias2 = self.weight2[..., :length], self.bias2[:, None, :length]
            return torch.matmul(hidden, weight2).add_(bias2)  # (B, nh, L, L), no second copy
        a = self.factors[0]
        out = torch.matmul(hidden, self.weight2) + self.bias2[:, None, :]  # (B, nh, L, a + b)
        outer = out[..., :a, None] * out[..., None, a:]  # (B, nh, L, a, b)
        return outer.flatten(-2)[..., :length]  # (B, nh, L, L)


class RandomSynthesis(nn.Module):
    """Random synthetic logits ``R`` per head, shared by every input (``(1, nh, L, L)``).

    ``rank=None``: ``R`` is a full ``(nh, seq_len, seq_len)`` tensor, standard normal.
    ``rank=k``: ``R = R1 R2^T`` with ``R1, R2`` of shape ``(nh, seq_len, k)``, drawn with std
    ``k ** -0.25`` so that the entries of ``R`` have unit variance, as in the full case.
    ``trainable=False`` stores them as buffers (the paper's fixed random synthesizer).
    """

    def __init__(self, num_heads: int, seq_len: int, rank: int | None, trainable: bool) -> None:
        super().__init__()
        self.rank = rank
        if rank is None:
            tensors = {"logits": torch.randn(num_heads, seq_len, seq_len)}
        else:
            std = rank**-0.25
            tensors = {
                "factor1": torch.randn(num_heads, seq_len, rank) * std,
                "factor2": torch.randn(num_heads, seq_len, rank) * std,
            }
        for name, tensor in tensors.items():
            if trainable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def forward(self, length: int) -> torch.Tensor:
        if self.rank is None:
            return self.logits[None, :, :length, :length]  # (1, nh, L, L)
        factor1, factor2 = self.factor1[:, :length], self.factor2[:, :length]  # (nh, L, k)
        return torch.matmul(factor1, factor2.transpose(-1, -2))[None]  # (1, nh, L, L)


@EFFICIENT.register(
    "synthesizer",
    paper=TAY_2021,
    tags=("attention_free", "synthetic", "fixed_length"),
    complexity="O(L^2 d); random modes need no query-key product",
)
class SynthesizerAttention(AttentionBase):
    r"""Synthesizer: ``softmax(B) G(X)`` with synthetic logits ``B`` instead of ``Q K^T``.

    Tay, Bahri, Metzler, Juan, Zhao and Zheng, "Synthesizer: Rethinking Self-Attention for
    Transformer Models", ICML 2021, https://arxiv.org/abs/2005.00743. Per head,
    ``Y = softmax(B) G(X)`` where ``G = v_proj`` and the ``L x L`` logits ``B`` come from
    ``mode``:

    - ``"dense"`` (default): ``B_i = W2 ReLU(W1 X_i + b1) + b2`` — each token predicts its own
      row of logits from itself alone (``W1``: ``dim -> nh * hd``; per head ``W2``:
      ``hd -> seq_len``).
    - ``"random"``: ``B = R``, a learned ``seq_len x seq_len`` matrix per head, independent of
      the input; ``trainable_random=False`` keeps it fixed (the paper's fixed random).
    - ``"factorized_dense"``: ``F_A, F_B`` predict ``a`` and ``b`` logits per token
      (``a * b >= seq_len``), composed as ``B_i[j] = A_i[j // b] B_i[j % b]``.
    - ``"factorized_random"``: ``B = R1 R2^T`` with ``R1, R2`` of shape ``seq_len x rank``
      (``rank=8`` as in the paper).
    - mixtures ``"random+vanilla"``, ``"dense+vanilla"``, ``"dense+random"`` ... (any
      ``+``-joined components, ``"vanilla"`` = ``q k^T / sqrt(hd)`` from ``q_proj``/``k_proj``):
      ``B = sum_i alpha_i B_i`` with learned ``alpha = softmax(mix_logits)`` (the paper's
      ``sum alpha = 1``; equal weights at initialisation).

    Cost ``O(L^2 d)`` time and ``O(L^2)`` memory per head: the weights are an explicit matrix.
    Random modes skip the query-key product. Without a mask the weights come from a plain
    softmax (self-attention rows are never empty), once for the whole batch in random modes
    (unless dropout is active); with a mask, or while recording, from the safe masked softmax of
    ``AttentionBase`` on per-sample ``(B, nh, L, L)`` logits.

    Capabilities: fixed length (``seq_len`` required; shorter inputs use the first ``L`` rows and
    columns of ``R`` / the first ``L`` outputs of ``F``; longer raise ``ValueError``); causal by
    masking the synthetic logits (``j <= i``); any module mask (bool or additive float, padding
    or per query) applied to the logits, with exact zeros for fully masked rows; no
    cross-attention (the logits index positions of the one input sequence). The post-softmax
    weights ``(B, nh, L, L)`` always pass through ``probe``. ``q_proj`` and ``k_proj`` exist
    only in mixtures with ``"vanilla"`` (otherwise they are None).

    Deviations and choices: ``R`` (and ``R1 R2^T``) start standard normal; ``W2`` and ``b2`` use
    ``nn.Linear``'s uniform initialisation; the composition of the factorised dense outputs
    (``A`` repeated, ``B`` tiled, i.e. their outer product) is our reading of the paper's
    tiling functions; default factors ``a = ceil(sqrt(seq_len))``, ``b = ceil(seq_len / a)``.

    Formula:
        $$
        Y = \mathrm{softmax}(B)\, G(X), \qquad B_i = W_2\, \mathrm{ReLU}(W_1 X_i + b_1) + b_2
        $$

        per head, with $G$ = `v_proj` (`mode="dense"`; `"random"` learns $B = R$).

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``v_proj`` (and ``q_proj``, ``k_proj`` for ``"vanilla"``).
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        mode: A component of :data:`COMPONENTS` or a ``+``-joined mixture (see above).
        seq_len: Longest input length (required).
        rank: ``k`` of ``"factorized_random"``.
        factors: ``(a, b)`` of ``"factorized_dense"`` with ``a * b >= seq_len``.
        trainable_random: Learn ``R`` (True) or keep it fixed (False, stored as a buffer).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``, ``L <= seq_len``
        - mask: ``(B, L)`` padding (``True`` = real token), ``(B, L, L)`` or ``(B, nh, L, L)``
        - output: ``(B, L, C)``

    Example:
        >>> syn = SynthesizerAttention(32, num_heads=4, mode="random", seq_len=16)
        >>> syn(torch.randn(2, 12, 32), is_causal=True).shape
        torch.Size([2, 12, 32])
        >>> syn.q_proj is None
        True
    """

    backend = "dense: softmax of the synthetic (L, L) logits times the values"

    supports_mask = True
    supports_causal = True
    supports_cross = False
    fixed_length = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        mode: str = "dense",
        seq_len: int | None = None,
        rank: int = 8,
        factors: tuple[int, int] | None = None,
        trainable_random: bool = True,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.mode = mode
        self.components = parse_mode(mode)
        self.seq_len = check_seq_len(seq_len, "synthesizer")
        self.rank = check_positive_int("rank", rank)
        if not isinstance(trainable_random, bool):
            raise TypeError(f"trainable_random must be a bool, got {type_name(trainable_random)}")
        if "vanilla" not in self.components:
            self.q_proj, self.k_proj = None, None  # no query-key product to project for
        self.factors = self._check_factors(factors)
        nh, hd, length = self.num_heads, self.head_dim, self.seq_len
        synth = {}
        for name in self.components:
            if name in ("dense", "factorized_dense"):
                split = self.factors if name == "factorized_dense" else None
                synth[name] = DenseSynthesis(dim, nh, hd, length, split)
            elif name in ("random", "factorized_random"):
                low_rank = self.rank if name == "factorized_random" else None
                synth[name] = RandomSynthesis(nh, length, low_rank, trainable_random)
        self.synth = nn.ModuleDict(synth)
        if len(self.components) > 1:
            self.mix_logits = nn.Parameter(torch.zeros(len(self.components)))

    def _check_factors(self, factors: object) -> tuple[int, int]:
        if factors is None:
            a = math.isqrt(self.seq_len - 1) + 1  # ceil(sqrt(seq_len))
            return a, -(-self.seq_len // a)
        if not isinstance(factors, tuple | list) or len(factors) != 2:
            raise TypeError(f"factors must be a pair (a, b) of ints, got {type_name(factors)}")
        a, b = (check_positive_int("factors[i]", f) for f in factors)
        if a * b < self.seq_len:
            raise ValueError(f"factors (a, b) need a * b >= seq_len = {self.seq_len}, got {a}*{b}")
        return a, b

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Synthetic logits ``(B | 1, nh, L, L)`` of ``x`` (``(B, L, C)``), mixed by ``alpha``."""
        batch, length, _ = x.shape
        parts = []
        for name in self.components:
            if name == "vanilla":
                shape = (batch, length, self.num_heads, self.head_dim)
                q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
                k = self.k_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
                parts.append(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim))
            elif name in ("dense", "factorized_dense"):
                parts.append(self.synth[name](x))  # (B, nh, L, L)
            else:
                parts.append(self.synth[name](length).to(x.dtype))  # (1, nh, L, L)
        if len(parts) == 1:
            return parts[0]
        alpha = torch.softmax(self.mix_logits, dim=0)
        return sum(alpha[i] * part for i, part in enumerate(parts))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if need_weights:  # the reference path, weights from the probe
            return self.forward_with_weights(x, context, mask=mask, is_causal=is_causal)
        x, context, unbatched = self.check_inputs(x, context, is_causal)
        batch, length, _ = x.shape
        check_length("synthesizer", length, self.seq_len)
        mask = self.check_mask(mask, batch, length, length, x.dtype)
        v = self.v_proj(x).view(batch, length, self.num_heads, self.head_dim)  # (B, L, nh, hd)
        v = v.transpose(1, 2)  # (B, nh, L, hd)
        keep = key_padding_keep(mask, v)  # padded keys, found before causality is merged in
        if keep is not None:
            v = v.masked_fill(~keep, 0.0)  # NaN stored at padded tokens cannot leak
        scores = self.logits(x)  # (B | 1, nh, L, L)
        if mask is None and not self.probe.recording:
            out = self._attend_unmasked(scores, v, is_causal)
        else:
            scores = scores.expand(batch, -1, -1, -1)  # (B, nh, L, L): per-sample weights
            out, _ = self.attend_scores(scores, v, mask, is_causal)
        return self.finish(out, unbatched)

    def _attend_unmasked(
        self, scores: torch.Tensor, v: torch.Tensor, is_causal: bool
    ) -> torch.Tensor:
        """Fast path without a mask: plain softmax, no empty-row guards, weights kept per batch.

        Self-attention rows are never empty (causality keeps the diagonal), so the safe softmax's
        extra passes over the ``L x L`` weights are skipped; batch-independent (random) weights
        are normalised once for the whole batch unless dropout needs one draw per sample.
        """
        length = scores.shape[-1]
        if is_causal:
            future = ~torch.ones(length, length, dtype=torch.bool, device=v.device).tril()
            scores = scores.masked_fill(future, float("-inf"))
        half = v.dtype in (torch.float16, torch.bfloat16)
        attn = torch.softmax(scores, dim=-1, dtype=torch.float32 if half else None).to(v.dtype)
        if self.dropout_p > 0:
            attn = dropout(attn.expand(v.shape[0], -1, -1, -1), p=self.dropout_p)
        return torch.matmul(attn, v)  # (B, nh, L, hd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}, seq_len={self.seq_len}"
