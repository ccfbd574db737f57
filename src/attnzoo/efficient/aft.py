"""Attention Free Transformer (Zhai et al. 2021): AFT-full, AFT-simple and AFT-local."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.efficient._fixed_length import check_length, check_seq_len
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["MODES", "AttentionFreeTransformer"]

MODES = ("full", "simple", "local")

ZHAI_2021 = Paper(
    title="An Attention Free Transformer",
    authors="Zhai, Talbott, Srivastava, Huang, Goh, Zhang, Susskind",
    year=2021,
    url="https://arxiv.org/abs/2105.14103",
)


def _key_weights(
    k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(K - max K)`` and ``exp(K - max K) * V`` with padded keys given weight exactly 0.

    The maximum (over valid keys, per sample and channel) is detached: it cancels between
    numerator and denominator and only keeps ``exp`` in range. Padded values are zeroed first
    so that NaN or inf stored there cannot reach the output.
    """
    if keep is not None:
        k = k.masked_fill(~keep[..., None], float("-inf"))
        v = v.masked_fill(~keep[..., None], 0.0)
    if k.shape[1] == 0:  # no key (L = 0): the maximum of nothing is undefined, nothing to shift
        return k.exp(), k.exp() * v
    shift = k.detach().amax(dim=1, keepdim=True)  # (B, 1, D)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    e = torch.exp(k - shift)  # (B, S, D)
    return e, e * v


def _row_shift(logits: torch.Tensor, floor: float | None = None) -> torch.Tensor:
    """Detached row maxima of bias logits (``-inf`` = absent), 0 for empty rows."""
    if logits.shape[-1] == 0:  # no key at all (L = 0): amax of nothing is undefined
        return logits.new_zeros(*logits.shape[:-1], 1)
    shift = logits.detach().amax(dim=-1, keepdim=True)
    if floor is not None:
        shift = shift.clamp_min(floor)
    return torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with exact zeros (and zero gradients) where nothing was visible."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


@EFFICIENT.register(
    "aft",
    paper=ZHAI_2021,
    tags=("attention_free", "position_bias", "fixed_length"),
    complexity="O(L^2 d) full; O(L s d) local; O(L d) simple",
)
class AttentionFreeTransformer(AttentionBase):
    r"""Attention Free Transformer: keys and learned position biases weight the values per channel.

    Zhai, Talbott, Srivastava, Huang, Goh, Zhang and Susskind, "An Attention Free Transformer",
    2021, https://arxiv.org/abs/2105.14103. With ``Q, K, V`` the projections of ``x`` (width
    ``D = num_heads * head_dim``) and ``w`` learned pair-wise position biases, for every
    position ``t`` and channel ``d``:

    ``Y[t, d] = sigmoid(Q[t, d]) * sum_t' exp(K[t', d] + w[t, t']) V[t', d]
    / sum_t' exp(K[t', d] + w[t, t'])``, then ``out_proj``.

    Modes (``mode=``):

    - ``"full"`` (default, AFT-full): ``w`` is a learned ``seq_len x seq_len`` matrix.
      ``O(L^2 D)`` time and ``O(L^2 + L D)`` memory — quadratic in ``L`` like dense attention
      (one ``L x L`` bias matrix shared by all channels), but no ``L x L`` tensor per head.
    - ``"simple"`` (AFT-simple, ``w = 0``): ``Y[t] = sigmoid(Q[t]) * sum_t' softmax(K)[t'] V[t']``
      — ``O(L D)`` time and memory (sums, or prefix sums when causal). No positional
      parameters: ``seq_len`` is optional and, when given, only bounds the input length.
    - ``"local"`` (AFT-local): ``w[t, t']`` is learned where ``|t - t'| < local_window`` and is
      ``0`` outside. Distant tokens are *not* masked: they are weighted by ``exp(K)`` alone, so
      AFT-local keeps global connectivity. ``O(L s D)`` with ``s = local_window``: prefix and
      suffix sums for the outside part, blocked band products for the window (no ``L x L``
      tensor). Band biases are stored as ``(seq_len, 2 s - 1)``; entries whose key would fall
      outside the sequence are never used.

    Numerics, at any scale: ``exp`` is taken after subtracting the (detached) maximum of ``K``
    over valid keys and the maximum of each bias row, which cancel in the ratio. That shift is
    shared by all queries, so a query whose visible keys all lie far below the strongest key
    of the sequence (a causal prefix, or a row whose biases hide the strongest key) would
    underflow; every row whose denominator falls below ``sqrt(finfo.tiny)`` is therefore
    recomputed with its own shift (an exact softmax over its visible keys, ``O(S D)`` per such
    row), so every output is exact to rounding and causal — no later key can push an earlier
    row into underflow. Half inputs are mixed in float32.

    Capabilities: ``is_causal=True`` restricts every sum to ``t' <= t`` (biases masked, prefix
    sums). Boolean ``(B, S)`` padding masks give padded keys weight exactly 0 (and zero their
    values); a query with no visible key outputs exactly 0 before ``out_proj``. Other masks raise
    ``NotImplementedError``; cross-attention is not supported (``w`` is indexed by the positions
    of one sequence). While ``attnzoo.viz.record_attention`` listens, the module takes the dense
    reference path and records ``(B, nh, L, S)`` weights: for each head, the mean over its
    ``head_dim`` channels of the per-channel weights ``exp(K + w) / sum`` (rows sum to 1; the
    query gate ``sigmoid(Q)`` is not included). Heads have no other meaning in AFT: every
    channel is mixed independently, so ``num_heads * head_dim`` only sets the width ``D``.

    Defaults and deviations: sigmoid query gate as in the paper; ``w`` is initialised to zero, so
    a fresh AFT-full or AFT-local equals AFT-simple; a factorised ``w = U V^T`` and AFT-conv
    are not implemented; ``out_proj`` maps ``D`` back to ``dim`` as in common AFT
    implementations; ``attn_drop`` has no effect (there is no weight matrix on the fast path).
    ``local_window=32`` is a choice (the paper reports several window sizes, none a default).

    Formula:
        $$
        Y_t = \sigma(Q_t) \odot \frac{\sum_{t'} \exp(K_{t'} + w_{t, t'}) \odot V_{t'}}
        {\sum_{t'} \exp(K_{t'} + w_{t, t'})}
        $$

        with learned pair-wise position biases $w$ (`mode="full"`), then `out_proj`.

    Args:
        dim: Model width ``C``.
        num_heads: Head count; with ``head_dim`` sets the inner width ``D``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: No effect (see above).
        proj_drop: Dropout after ``out_proj`` (training only).
        mode: ``"full"``, ``"simple"`` or ``"local"``.
        seq_len: Longest input; required for ``"full"`` and ``"local"``. Shorter inputs use the
            first ``L`` rows and columns of ``w``; longer ones raise ``ValueError``.
        local_window: ``s`` of AFT-local: biases where ``|t - t'| < s`` (``mode="local"``).

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``
        - mask: ``(B, L)`` bool padding mask, ``True`` = real token
        - output: ``(B, L, C)``

    Example:
        >>> aft = AttentionFreeTransformer(32, num_heads=4, seq_len=16)
        >>> aft(torch.randn(2, 10, 32), is_causal=True).shape
        torch.Size([2, 10, 32])
        >>> AttentionFreeTransformer(32, mode="simple")(torch.randn(2, 1000, 32)).shape
        torch.Size([2, 1000, 32])
    """

    backend = "per-channel exponential weights: two matrix products (running sums when causal)"

    supports_mask = True
    supports_causal = True
    supports_cross = False
    no_weights_reason = (
        "every channel has its own weights exp(K + w) / sum (attnzoo.viz.record_attention "
        "records their per-head mean)"
    )
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
        mode: str = "full",
        seq_len: int | None = None,
        local_window: int = 32,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.mode = check_choice("mode", mode, MODES)
        self.seq_len = check_seq_len(seq_len, f"aft(mode={mode!r})", required=mode != "simple")
        self.local_window = check_positive_int("local_window", local_window)
        if mode == "full":
            self.pos_bias = nn.Parameter(torch.zeros(self.seq_len, self.seq_len))
        elif mode == "local":
            self._half = min(self.local_window, self.seq_len)  # s, clamped to seq_len
            self.pos_bias = nn.Parameter(torch.zeros(self.seq_len, 2 * self._half - 1))

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
        check_length(f"aft(mode={self.mode!r})", length, self.seq_len)
        keep = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, L, D) each
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        q, k, v = q.to(work), k.to(work), v.to(work)
        if self.probe.recording:
            mixed, weights = self.reference(q, k, v, keep, is_causal, need_weights=True)
            self.probe(weights.to(x.dtype))
        elif self.mode == "simple":
            mixed = self._simple(q, k, v, keep, is_causal)
        elif self.mode == "local":
            mixed = self._local(q, k, v, keep, is_causal)
        else:
            mixed = self.reference(q, k, v, keep, is_causal)[0]
        y = self.proj_drop(self.out_proj(mixed.to(x.dtype)))
        return y.squeeze(0) if unbatched else y

    def dense_bias(
        self, length: int, is_causal: bool, device: torch.device | None = None
    ) -> torch.Tensor:
        """The ``(L, L)`` matrix ``w`` of the current mode, ``-inf`` where causality hides keys."""
        if self.mode == "full":
            bias = self.pos_bias[:length, :length]
            if is_causal:
                causal = torch.ones_like(bias, dtype=torch.bool).tril()
                bias = bias.masked_fill(~causal, float("-inf"))
            return bias
        rows = torch.arange(length, device=device if device is not None else self._device())
        return self.bias_rows(rows, length, is_causal)

    def _device(self) -> torch.device:
        return self.q_proj.weight.device

    def bias_rows(self, rows: torch.Tensor, length: int, is_causal: bool) -> torch.Tensor:
        """Rows ``rows`` (``(n,)`` query positions) of :meth:`dense_bias`: ``(n, L)``."""
        pos = torch.arange(length, device=rows.device)
        if self.mode == "full":
            bias = self.pos_bias[rows, :length]
        elif self.mode == "local":
            col = pos[None, :] - rows[:, None] + self._half - 1  # (n, L) band column
            inside = (col >= 0) & (col <= 2 * self._half - 2)
            band = self.pos_bias[rows].gather(1, col.clamp(0, 2 * self._half - 2))
            bias = torch.where(inside, band, torch.zeros_like(band))
        else:
            bias = torch.zeros(len(rows), length, device=rows.device)
        if is_causal:
            bias = bias.masked_fill(pos[None, :] > rows[:, None], float("-inf"))
        return bias

    def _rescued_ratio(
        self,
        num: torch.Tensor,
        den: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        """``num / den`` (``(B, L, D)``), with rows near underflow recomputed with their own shift.

        A row whose denominator (in the shared shift's units) is below ``sqrt(tiny)`` may have
        lost its visible keys to underflow: it is recomputed as an exact softmax over its
        visible keys. Rows above keep all terms that matter (lost ones are ``< sqrt(tiny)``
        relative). Rows with no visible key come out as exact zeros either way.
        """
        ratio = _ratio(num, den)  # (B, L, D)
        weak = (den < torch.finfo(den.dtype).tiny ** 0.5).any(-1)  # (B, L)
        if not bool(weak.any()):
            return ratio
        batch_idx, row_idx = weak.nonzero(as_tuple=True)  # (n,) each
        if keep is not None:
            v = v.masked_fill(~keep[..., None], 0.0)
        fixed = []
        for start in range(0, len(row_idx), 64):  # (64, S, D) at a time
            b, i = batch_idx[start : start + 64], row_idx[start : start + 64]
            logits = self.bias_rows(i, k.shape[1], is_causal).to(k.dtype)[:, :, None] + k[b]
            if keep is not None:
                logits = logits.masked_fill(~keep[b][..., None], float("-inf"))  # (n, S, D)
            shift = logits.detach().amax(dim=1, keepdim=True)  # (n, 1, D)
            weights = (logits - torch.where(torch.isfinite(shift), shift, 0.0)).exp()
            fixed.append(_ratio((weights * v[b]).sum(1), weights.sum(1)))  # (n, D)
        return ratio.index_put((batch_idx, row_idx), torch.cat(fixed))

    def reference(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None,
        is_causal: bool,
        *,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Dense form of every mode: ``sigmoid(Q) * (P @ (E V)) / (P @ E)``, ``P = exp(w - c)``.

        Returns the mixed ``(B, L, D)`` channels and, with ``need_weights``, the per-head mean
        weights ``(B, nh, L, S)`` described in the class docstring.
        """
        batch, length, _ = q.shape
        bias = self.dense_bias(length, is_causal, q.device).to(q.dtype)
        pos_weights = (bias - _row_shift(bias)).exp_()  # (L, S), one L x S buffer
        e, ev = _key_weights(k, v, keep)  # (B, S, D) each
        num, den = torch.matmul(pos_weights, torch.cat([ev, e], dim=-1)).chunk(2, dim=-1)
        mixed = torch.sigmoid(q) * self._rescued_ratio(num, den, k, v, keep, is_causal)
        if not need_weights:
            return mixed, None
        inv = _ratio(torch.ones_like(den), den)  # (B, L, D), 0 where nothing is visible
        inv = inv.view(batch, length, self.num_heads, self.head_dim)  # (B, L, nh, hd)
        e_heads = e.view(batch, length, self.num_heads, self.head_dim)  # (B, S, nh, hd)
        per_head = torch.matmul(inv.transpose(1, 2), e_heads.permute(0, 2, 3, 1))  # (B, nh, L, S)
        return mixed, per_head * pos_weights / self.head_dim

    def _simple(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        """AFT-simple in ``O(L D)``: one sum over keys, or prefix sums when causal."""
        e, ev = _key_weights(k, v, keep)  # (B, S, D) each
        if is_causal:
            num, den = ev.cumsum(dim=1), e.cumsum(dim=1)  # (B, L, D)
        else:
            num, den = ev.sum(dim=1, keepdim=True), e.sum(dim=1, keepdim=True)  # (B, 1, D)
            num, den = num.expand_as(q), den.expand_as(q)  # (B, L, D)
        return torch.sigmoid(q) * self._rescued_ratio(num, den, k, v, keep, is_causal)

    def _local(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        keep: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        """AFT-local in ``O(L s D)``: outside-window prefix/suffix sums plus blocked band sums.

        ``sum_t' exp(w'[t, t']) f[t'] = sum_{|t - t'| >= s} f[t'] + sum_{|t - t'| < s}
        exp(w[t, t']) f[t']`` with ``f = (E V, E)``; both parts are scaled by ``exp(-c_t)``,
        ``c_t = max(0, max_t' w[t, t'])``. Outside sums come from a forward and a backward
        cumulative sum (no cancellation); the band is a batched product of
        ``(blk, blk + 2 s - 2)`` coefficient blocks with overlapping key windows.
        """
        batch, length, width = q.shape
        if length == 0:  # no token: the empty (B, 0, D) result (the blocks below need one)
            return torch.sigmoid(q)
        half = self._half
        e, ev = _key_weights(k, v, keep)  # (B, S, D) each
        f = torch.cat([ev, e], dim=-1)  # (B, S, 2D)
        outside = F.pad(f.cumsum(dim=1), (0, 0, half, 0))[:, :length]  # keys t' <= t - s
        if not is_causal:
            suffix = f.flip(1).cumsum(dim=1).flip(1)  # (B, S, 2D): sum over t' >= t
            outside = outside + F.pad(suffix, (0, 0, 0, half))[:, half : half + length]
        blk = max(half, 32)
        blocks = -(-length // blk)
        win = blk + 2 * half - 2
        padded = F.pad(f, (0, 0, half - 1, blocks * blk - length + half - 1))
        windows = padded.unfold(1, win, blk).transpose(-1, -2)  # (B, nb, win, 2D)
        rows = torch.arange(blocks * blk, device=q.device).view(blocks, blk, 1)  # (nb, blk, 1)
        cols = torch.arange(win, device=q.device)
        col = cols - torch.arange(blk, device=q.device)[:, None]  # (blk, win) band column
        key_pos = rows[:, :1] + cols - (half - 1)  # (nb, 1, win) key index
        valid = (col >= 0) & (col <= 2 * half - 2) & (key_pos >= 0) & (key_pos < length)
        if is_causal:
            valid = valid & (col <= half - 1)
        bias_rows = self.pos_bias[rows.squeeze(-1).clamp(max=length - 1)]  # (nb, blk, 2s - 1)
        index = col.clamp(0, 2 * half - 2).expand(blocks, blk, win)
        logits = bias_rows.gather(-1, index).to(q.dtype).masked_fill(~valid, float("-inf"))
        shift = _row_shift(logits, floor=0.0)  # (nb, blk, 1)
        coef = (logits - shift).exp_()  # (nb, blk, win)
        band = torch.matmul(coef, windows)  # (B, nb, blk, 2D)
        band = band.reshape(batch, blocks * blk, 2 * width)[:, :length]  # (B, L, 2D)
        scale = torch.exp(-shift).reshape(blocks * blk, 1)[:length]  # (L, 1)
        num, den = (scale * outside + band).chunk(2, dim=-1)
        return torch.sigmoid(q) * self._rescued_ratio(num, den, k, v, keep, is_causal)

    def extra_repr(self) -> str:
        window = f", local_window={self.local_window}" if self.mode == "local" else ""
        return f"{super().extra_repr()}, mode={self.mode!r}, seq_len={self.seq_len}{window}"
