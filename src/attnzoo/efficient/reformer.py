"""Reformer LSH attention (Kitaev, Kaiser, Levskaya 2020): shared-QK attention in hash buckets."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int
from attnzoo._recompute import recomputed
from attnzoo.efficient._clustering import (
    attend_groups,
    bucket_layout,
    compute_dtype,
    fused_chunks,
    grouped_dense_weights,
    merge_slots,
    token_slots,
)
from attnzoo.functional.dropout import dropout
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["ReformerAttention", "bucket_factors", "num_buckets"]

# The paper's m_{i,i} = 10^5: subtracted from a token's score with itself, so that it attends to
# itself only when nothing else is visible (exp(-1e5) is exactly 0 in float32 and float64).
SELF_PENALTY = 1e5


def num_buckets(length: int, bucket_size: int) -> int:
    """Buckets for ``length`` tokens: ``ceil(L / bucket_size)``, rounded up to even when > 1.

    Angular LSH hashes to ``argmax([xR; -xR])``, so more than one bucket needs an even count.
    """
    count = -(-length // bucket_size)
    return count + count % 2 if count > 1 else 1


def bucket_factors(count: int) -> tuple[int, ...]:
    """Hash factors as in the official trax code: one hash up to 128 buckets, else two.

    Above 128 buckets trax hashes twice into ``f1 = 2^ceil(log2(sqrt(n)))`` and
    ``f2 = 2 * (n // (2 f1))`` buckets (``f1 * f2 <= n`` buckets in all), so the random rotation
    has ``(f1 + f2) / 2`` columns instead of ``n / 2`` and hashing stays linear in ``L``.
    """
    if count <= 128:
        return (count,)
    first = 2 ** math.ceil(math.log2(math.sqrt(count)))
    return (first, 2 * (count // (2 * first)))


@EFFICIENT.register(
    "reformer",
    paper=Paper(
        title="Reformer: The Efficient Transformer",
        authors="Kitaev, Kaiser, Levskaya",
        year=2020,
        url="https://arxiv.org/abs/2001.04451",
    ),
    tags=("clustering", "lsh", "shared_qk", "self"),
    complexity="O(n_hashes L bucket_size d) time and memory",
)
class ReformerAttention(AttentionBase):
    r"""Reformer LSH self-attention: shared-QK attention inside angular-LSH buckets.

    Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", 2020,
    https://arxiv.org/abs/2001.04451. Queries and keys share one projection (``q_proj``; there
    is no ``k_proj``) and keys are length-normalised, ``k_j = q_j / |q_j|``. Each of
    ``n_hashes`` rounds hashes ``h(x) = argmax([xR; -xR])`` with a random rotation ``R``, sorts
    the tokens by (bucket, position), cuts the sorted sequence into chunks of ``bucket_size``
    and lets each query attend to the keys of its own bucket in its chunk and the chunk before.
    A token attends to itself only when nothing else is visible (its score with itself is
    lowered by the paper's ``10^5``). The rounds are merged with their softmax normalisers::

        o_i = sum_r exp(z_i^r - logsumexp_r' z_i^r') o_i^r,   o_i^r = softmax_j(q_i . k_j) v_j

    which is one softmax over everything ``i`` saw in any round. Complexity
    ``O(n_hashes L bucket_size d)`` time and memory; no ``L x L`` tensor. In training the whole
    layer keeps only its input for backward and is recomputed there, with the same random
    rotations (the reversible layers of the paper save memory the same way: by recomputing);
    ``recompute = False`` (an attribute) keeps the activations instead.

    Defaults and deviations from the paper and the official trax ``LSHSelfAttention``:

    - ``bucket_size=64``: ``ceil(L / bucket_size)`` buckets (even; one bucket when
      ``bucket_size >= L``), chunks of ``bucket_size`` tokens (of ``L`` when ``L <= bucket_size``).
      Trax's default (``chunk_len=128``, ``2 L / 128`` buckets) has the same mean bucket size.
      Above 128 buckets the hash is factorised in two as in trax (:func:`bucket_factors`).
    - ``n_hashes=1`` as trax's layer default (its enwik8 config uses 2; the paper shows error
      falling up to 8 rounds). Pairs seen in several rounds count several times, as in trax
      (the paper's ``- log N_ij`` de-duplication is not applied).
    - Keys from other buckets are masked inside the window, as in the paper's
      ``P_i = {j : h(q_i) = h(k_j)}`` (trax attends across buckets in the window), and every
      bucket starts a new chunk (its members are padded to whole chunks). A token's visible
      set then depends only on earlier members of its own bucket, so ``is_causal=True`` is
      strictly causal; in trax's packed layout future tokens move the chunk boundaries of the
      past. Lengths need not be multiples of ``bucket_size``.
    - Random rotations: fresh ones on every forward pass in training (trax draws new ones on
      every call); in ``eval()`` fixed ones drawn from ``torch.Generator().manual_seed(seed)``,
      so evaluation is deterministic. Rotations are per head, shared across the batch.
    - Padding tokens (``mask`` False) are left out of every bucket (trax gives them an extra
      bucket): they are never attended and their own outputs are zero.
    - Scores ``q_i . k_j`` with unit keys (trax), i.e. scaled dot-product attention with keys
      rescaled to norm ``sqrt(hd)``; scores are float32 for half inputs.
    - While an ``AttentionProbe`` records, the dense-equivalent ``(B, nh, L, L)`` weights go
      through ``probe`` and the output is computed from them.

    Self-attention only (shared QK); masks: ``(B, L)`` boolean padding masks only.

    Formula:
        $$
        \begin{gathered}
        h(x) = \arg\max\,[\,xR;\, -xR\,], \qquad k_j = q_j / \lVert q_j \rVert \\
        o^r_i = \sum_{j \in C_r(i)} \mathrm{softmax}_j(q_i k_j^\top)\, v_j, \qquad
        o_i = \sum_r e^{z^r_i - \mathrm{logsumexp}_{r'} z^{r'}_i}\, o^r_i
        \end{gathered}
        $$

        with $C_r(i)$ the keys of $i$'s bucket in its sorted chunk and the previous one (round $r$)
        and
        $z^r_i$ that round's log-normaliser.

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj`` and ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        bucket_size: Mean bucket size and chunk length ``m``.
        n_hashes: Hashing rounds.
        seed: Seed of the fixed rotations used in ``eval()``.

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``; mask: ``(B, L)`` bool, True = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("reformer", 64, num_heads=4, bucket_size=8, n_hashes=2)
        >>> attn(torch.randn(2, 50, 64), is_causal=True).shape
        torch.Size([2, 50, 64])
    """

    backend = "LSH buckets sorted into chunks; one round: fused SDPA per chunk kind"

    supports_mask = True
    supports_causal = True
    supports_cross = False
    recompute = True  # training: recompute in backward instead of keeping activations
    fixed_length = False

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        bucket_size: int = 64,
        n_hashes: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        del self.k_proj  # shared QK: keys are the normalised queries
        self.bucket_size = check_positive_int("bucket_size", bucket_size)
        self.n_hashes = check_positive_int("n_hashes", n_hashes)
        self.seed = check_positive_int("seed", seed, minimum=0)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, bucket_size={self.bucket_size}, "
            f"n_hashes={self.n_hashes}, seed={self.seed}"
        )

    def rotations(self, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Random rotations ``(nh, hd, n_hashes, columns)``: fresh in training, seeded in eval."""
        shape = (self.num_heads, self.head_dim, self.n_hashes, columns)
        if self.training:
            return torch.randn(shape, device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def hash_buckets(self, q: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        """Angular-LSH buckets ``(B, nh, n_hashes, L)`` of ``q`` and the number of buckets."""
        batch, heads, length, _ = q.shape
        if count == 1:
            zeros = torch.zeros(batch, heads, self.n_hashes, length, dtype=torch.long)
            return zeros.to(q.device), 1
        factors = bucket_factors(count)
        rotation = self.rotations(sum(f // 2 for f in factors), q.device, q.dtype)
        rotated = torch.einsum("bhld,hdrc->bhrlc", q, rotation)  # (B, nh, R, L, cols)
        buckets, start, scale = 0, 0, 1
        for factor in factors:  # one or two factors
            part = rotated[..., start : start + factor // 2]
            high, high_index = part.max(dim=-1)
            low, low_index = part.min(dim=-1)
            # argmax over [xR; -xR] without building the concatenation
            buckets = buckets + scale * torch.where(
                high >= -low, high_index, low_index + factor // 2
            )
            start, scale = start + factor // 2, scale * factor
        return buckets, scale

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
        real = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        if 0 in (batch, length) or self.probe.recording:
            return self._layer(x, real, is_causal, unbatched)
        # in training the whole layer is recomputed in backward (the same rotations)
        return recomputed(self._layer, x, real, is_causal, unbatched, module=self)

    def _layer(self, x, real: torch.Tensor | None, is_causal: bool, unbatched: bool):
        """Projections, LSH attention and the output projection: ``(B, L, C)``."""
        batch, length, _ = x.shape
        shape, dtype = (batch, length, self.num_heads, self.head_dim), compute_dtype(x.dtype)
        q = self.q_proj(x).view(shape).to(dtype)  # (B, L, nh, hd)
        v = self.v_proj(x).view(shape).to(dtype)  # (B, L, nh, hd)
        if 0 in (batch, length):  # no token to hash: the natural empty result
            return self.attend_nothing(q.transpose(1, 2), v.transpose(1, 2), unbatched)
        out = self._attend(q, v, real, is_causal)  # (B, nh, L, hd)
        return self.finish(out.to(x.dtype), unbatched)

    def _attend(
        self,
        q: torch.Tensor,
        v: torch.Tensor,
        real: torch.Tensor | None,
        is_causal: bool,
        fused: bool | None = None,
    ) -> torch.Tensor:
        """LSH attention of token-major ``q``, ``v`` ``(B, L, nh, hd)``: ``(B, nh, L, hd)``.

        ``fused`` (default: one round, no weight dropout, no probe) runs the chunks through
        fused SDPA (:func:`fused_chunks`); otherwise :meth:`_grouped_chunks` computes the
        weights and normalisers that dropout, several rounds and the probe need.
        """
        batch, length, heads, width = q.shape
        if real is not None:  # padding never enters: not even NaN stored there
            q = q.masked_fill(~real[:, :, None, None], 0.0)
            v = v.masked_fill(~real[:, :, None, None], 0.0)
        chunk = min(self.bucket_size, length)
        with torch.no_grad():
            count = num_buckets(length, self.bucket_size)
            buckets, count = self.hash_buckets(q.transpose(1, 2), count)  # (B, nh, R, L)
        if real is not None:
            buckets = buckets.masked_fill(~real[:, None, None, :], -1)  # padding: no bucket
        slot_token, slot_bucket = bucket_layout(buckets, chunk, count)  # (B, nh, R, T)
        rounds, total = slot_token.shape[2:]
        if total == 0:  # every token is padding (zeroed above): all outputs are exact zeros
            return v.transpose(1, 2) * 0.0  # (B, nh, L, hd)
        # distinct bucket ids per round, so that no chunk continues another round's bucket
        offsets = count * torch.arange(rounds, device=q.device).view(rounds, 1)  # (R, 1)
        bucket = torch.where(slot_bucket >= 0, slot_bucket + offsets, -1)
        bucket = bucket.view(batch, heads, -1, chunk)[..., 0]  # (B, nh, G): one per chunk
        continues = torch.zeros_like(bucket, dtype=torch.bool)  # a plane's first chunk starts
        continues[..., 1:] = (bucket[..., 1:] == bucket[..., :-1]) & (bucket[..., 1:] >= 0)
        continues = continues.view(-1)  # (N,)
        # row of token t of head h in batch b, in the token-major (B L nh, hd) layout
        batch_index = torch.arange(batch, device=q.device).view(batch, 1, 1, 1)
        head = torch.arange(heads, device=q.device).view(1, heads, 1, 1)
        rows = (batch_index * length + slot_token.clamp_min(0)) * heads + head  # (B, nh, R, T)
        rows = rows.view(-1, chunk)  # (N, m)
        q_rows, v_rows = q.reshape(-1, width), v.reshape(-1, width)  # (B L nh, hd)
        filled = (slot_token >= 0).view(-1, chunk)  # (N, m): empty slots are no keys
        if fused is None:
            fused = rounds == 1 and self.dropout_p == 0 and not self.probe.recording
        if fused:  # slot i of chunk n has its result in row offset[n] + i
            out, offset = fused_chunks(
                q_rows, v_rows, rows, filled.sum(-1), continues, is_causal, SELF_PENALTY
            )
        else:
            out, lse, probed = self._grouped_chunks(
                q_rows, v_rows, rows, filled, continues, is_causal
            )
            offset = chunk * torch.arange(out.shape[0], device=q.device)
        token = slot_token.masked_fill(slot_token < 0, length)  # empty slots -> dump row L
        if rounds == 1 and not self.probe.recording:  # every token in one slot: gather back
            slot = token_slots(token, length + 1)[..., :length].clamp_min(0)  # (B, nh, 1, L)
            slot = slot + total * (batch_index * heads + head)  # (B, nh, 1, L) over all planes
            slot = offset[slot // chunk] + slot % chunk  # rows of out
            rows_back = slot.view(batch, heads, length).transpose(1, 2).reshape(-1)  # (B L nh,)
            merged = out.reshape(-1, width).index_select(0, rows_back)  # (B L nh, hd)
            merged = merged.view(batch, length, heads, width)  # (B, L, nh, hd)
            if real is not None:  # padding tokens are in no slot: exact zeros
                merged = merged.masked_fill(~real[:, :, None, None], 0.0)
            return merged.transpose(1, 2)  # (B, nh, L, hd)
        slots = rounds * total
        merged, weights = merge_slots(
            out.view(batch, heads, slots, width),  # (B, nh, N, hd)
            lse.view(batch, heads, slots),  # (B, nh, N)
            token.view(batch, heads, slots),  # (B, nh, N)
            length + 1,
            single=rounds == 1,
        )
        if not self.probe.recording:
            return merged[:, :, :length]
        # dense weights of both products, times each slot's merge weight
        token, weights = token.view(-1, chunk), weights.view(-1, chunk)  # (N, m)
        parts = [
            (chunk_weights * weights[group].unsqueeze(-1), group, token[group], token[keys])
            for chunk_weights, group, keys in probed
        ]
        dense = grouped_dense_weights(parts, slots // chunk, batch * heads, length + 1)
        dense = dense.view(batch, heads, length + 1, length + 1)[:, :, :length, :length]
        dense = self.probe(dense)  # (B, nh, L, L)
        v_heads = v.transpose(1, 2)  # (B, nh, L, hd)
        return dropout(dense, p=self.dropout_p) @ v_heads if self.dropout_p > 0 else dense @ v_heads

    def _grouped_chunks(self, q_rows, v_rows, rows, filled, continues, is_causal: bool):
        """Chunk attention with weight dropout and softmax normalisers (any number of rounds).

        Every chunk attends to its own keys; the chunks that continue a bucket (their previous
        chunk holds the same bucket, and is full) also attend to the previous chunk's keys, in a
        second product merged with the first by their normalisers. The chunks that start a
        bucket (most of them) thus never compute scores they would mask entirely.

        Returns ``out (N, m, hd)``, ``lse (N, m)`` and, for the probe, ``(weights (n, m, m),
        query chunks (n,), key chunks (n,))`` of both products, normalised over both.
        """
        chunk, width = filled.shape[-1], q_rows.shape[-1]
        sq = q_rows.index_select(0, rows.view(-1)).view(-1, chunk, width)  # (N, m, hd)
        sv = v_rows.index_select(0, rows.view(-1)).view(-1, chunk, width)  # (N, m, hd)
        sk = F.normalize(sq, dim=-1)  # shared QK: unit keys
        scores = sq @ sk.transpose(-2, -1)  # (N, m, m)
        scores.diagonal(dim1=-2, dim2=-1).sub_(SELF_PENALTY)  # self only if nothing else
        keep = [filled.unsqueeze(-2)]  # (N, 1, m)
        if is_causal:  # slots follow positions inside a bucket: causal is a fixed pattern
            keep.append(torch.ones(chunk, chunk, dtype=torch.bool, device=sq.device).tril())
        out, attn, lse = attend_groups(scores, sv, keep, self.dropout_p)  # (N, m, hd)
        every = torch.arange(len(sq), device=sq.device)
        later = continues.nonzero().squeeze(1)  # (C,) chunks continuing a bucket
        if not later.numel():
            return out, lse, [(attn, every, every)]
        earlier = later - 1  # full and earlier than `later`: all of it is visible
        prev_scores = sq.index_select(0, later) @ sk.index_select(0, earlier).mT  # (C, m, m)
        prev_out, prev_attn, prev_lse = attend_groups(
            prev_scores, sv.index_select(0, earlier), (), self.dropout_p
        )
        own_lse = lse.index_select(0, later)  # (C, m)
        both = torch.logaddexp(own_lse, prev_lse)  # (C, m): finite, a chunk sees itself
        own_share, prev_share = (own_lse - both).exp(), (prev_lse - both).exp()  # (C, m)
        merged = own_share.unsqueeze(-1) * out.index_select(0, later)
        merged = merged + prev_share.unsqueeze(-1) * prev_out  # (C, m, hd)
        out, lse = out.index_copy(0, later, merged), lse.index_copy(0, later, both)
        if not self.probe.recording:
            return out, lse, []
        shares = torch.ones_like(lse).index_copy(0, later, own_share)  # (N, m)
        return (
            out,
            lse,
            [
                (attn * shares.unsqueeze(-1), every, every),
                (prev_attn * prev_share.unsqueeze(-1), later, earlier),
            ],
        )
