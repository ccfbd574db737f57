"""Sparse Sinkhorn attention (Tay et al. 2020): local blocks plus blocks sorted by a learned net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_finite, check_positive_int
from attnzoo._recompute import needs_grad, recomputed
from attnzoo.efficient._clustering import attend_groups, compute_dtype
from attnzoo.efficient._sorted_blocks import block_mask, own_and_sorted, streamed_sorted_layer
from attnzoo.functional.dropout import dropout
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["SinkhornAttention", "block_sinkhorn_attention", "sinkhorn"]

NEG_INF = float("-inf")


def _safe_lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp`` that is 0 (not ``-inf``) for an all ``-inf`` slice, with finite gradients."""
    dead = x.detach().amax(dim=dim, keepdim=True) == NEG_INF
    lse = torch.logsumexp(x.masked_fill(dead, 0.0), dim=dim, keepdim=True)
    return torch.where(dead, 0.0, lse)


def sinkhorn(log_alpha: torch.Tensor, iters: int) -> torch.Tensor:
    """Sinkhorn normalisation ``exp(T_c(T_r(...)))`` of ``(..., n, n)`` log-scores, in log space.

    Each iteration normalises rows then columns (Mena et al. 2018); the result tends to a
    doubly-stochastic matrix. Entries at ``-inf`` stay exactly 0 (no row or column may be all
    ``-inf``).
    """
    for _ in range(iters):
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-2, keepdim=True)
    return log_alpha.exp()


def block_sinkhorn_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sort: torch.Tensor,
    valid: torch.Tensor,
    *,
    is_causal: bool,
    dropout_p: float = 0.0,
    complete: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each query block attends to its own block and to its sorted block ``sum_j P_ij K_j``.

    Args:
        q: ``(B, nh, n, b, hd)`` blocked queries, already scaled.
        k: ``(B, nh, n, b, hd)`` blocked keys (zero at padding).
        v: ``(B, nh, n, b, hd)`` blocked values (zero at padding).
        sort: ``(B, nh, n, n)`` (soft) permutation; row ``i`` mixes the blocks sent to block ``i``.
        valid: Bool ``(B, 1, n, b)`` real tokens.
        is_causal: Causal inside the own block; ``sort`` must then only mix earlier blocks.
        dropout_p: Dropout on the weights.
        complete: Every slot of ``valid`` is True (no padding, ``L`` a multiple of ``b``): in a
            non-causal call the visibility masks are then skipped, as they would keep every key.

    Returns:
        ``(out (B, nh, n, b, hd), attn (B, nh, n, b, 2b), sorted_valid (B, nh, n, b))``: the
        weights are over ``[own block, sorted block]``.
    """
    batch, heads, blocks, size, width = k.shape
    flat = valid.to(sort.dtype).expand(batch, heads, blocks, size)
    sorted_k = (sort @ k.flatten(3)).view(batch, heads, blocks, size, width)  # (B, nh, n, b, hd)
    sorted_v = (sort @ v.flatten(3)).view(batch, heads, blocks, size, width)  # (B, nh, n, b, hd)
    keys = torch.cat([k, sorted_k], dim=3)  # (B, nh, n, 2b, hd)
    values = torch.cat([v, sorted_v], dim=3)  # (B, nh, n, 2b, hd)
    if complete and not is_causal:  # own keys all real; each row of P sums to 1 over real keys
        sorted_valid = torch.ones_like(flat, dtype=torch.bool)  # (B, nh, n, b)
        keep = []
    else:
        sorted_valid = (sort @ flat) > 0  # a sorted slot carries some real token
        own = valid.expand(batch, heads, blocks, size)  # (B, nh, n, b)
        keep = [torch.cat([own, sorted_valid], dim=-1).unsqueeze(-2)]  # (B, nh, n, 1, 2b)
    if is_causal:
        pattern = torch.ones(size, 2 * size, dtype=torch.bool, device=q.device)
        pattern[:, :size] = pattern[:, :size].tril()  # own block causal, sorted block all past
        keep.append(pattern)
    out, attn, _ = attend_groups(q @ keys.transpose(-2, -1), values, keep, dropout_p)
    return out, attn, sorted_valid


@EFFICIENT.register(
    "sinkhorn",
    paper=Paper(
        title="Sparse Sinkhorn Attention",
        authors="Tay, Bahri, Yang, Metzler, Juan",
        year=2020,
        url="https://arxiv.org/abs/2002.11296",
    ),
    tags=("clustering", "sorting", "self", "fixed_length"),
    complexity="O(L bucket_size d + (L / bucket_size)^2 bucket_size d)",
)
class SinkhornAttention(AttentionBase):
    r"""Sparse Sinkhorn attention: local block attention plus a learned, sorted block.

    Tay, Bahri, Yang, Metzler, Juan, "Sparse Sinkhorn Attention", ICML 2020,
    https://arxiv.org/abs/2002.11296. The sequence is cut into ``n = ceil(L / b)`` blocks of
    ``b = bucket_size``. A sorting network scores block against block,
    ``R = ReLU(s_i W + c)[:, :n]`` where ``s_i`` is the sum of the keys of block ``i`` (per
    head, as the LRA reference code), and Sinkhorn normalisation turns ``R`` into a soft
    permutation ``P = Sinkhorn((R + g) / tau)`` (``sinkhorn_iters`` row/column normalisations in
    log space; Gumbel noise ``g`` in training only). Keys **and values** are sorted with the same
    ``P`` (``K_s = P K``, ``V_s = P V`` blockwise; a popular port mixed the keys into the
    values), and every query block attends, in one softmax, to its own block and its sorted
    block::

        out_i = softmax(q_i [K_i; (PK)_i]^T / sqrt(hd)) [V_i; (PV)_i]

    Time ``O(L b d + n^2 b d)``, memory ``O(L b + n^2)``; no ``L x L`` tensor. In training the
    whole layer keeps only its input for backward and is recomputed there (the Gumbel noise and
    dropout masks replayed exactly): ``O(L d)`` activations per layer; ``recompute = False``
    (an attribute) keeps them instead.

    Defaults and deviations:

    - ``bucket_size=64``, ``sinkhorn_iters=5``, ``temperature=0.75`` (the widely used PyTorch
      port; the paper tunes them, the LRA reference code uses block 50 and 1 iteration).
    - The sort net's output size is the number of blocks, so the module is ``fixed_length``:
      ``seq_len`` sets ``ceil(seq_len / b)`` outputs; shorter inputs use the first ``n`` (as the
      LRA code's ``max_num_blocks``), longer ones raise ``ValueError``.
    - One softmax over own + sorted keys (the LRA code sums two separate softmaxes).
    - Lengths that are not multiples of ``b`` are padded internally. With a single block
      (``L <= b``) there is nothing to sort and the module is exactly dense attention; when
      ``seq_len <= b`` there is never more than one block and no sort net is created.
    - Padding (``mask``): padded keys and values are zeroed before sorting and left out of the
      block sums; a sorted slot made only of padding is masked.
    - ``is_causal=True`` (the paper's causal variant): the sort net sees, for block ``i``, the
      sum of the keys up to the first token of the block, and ``P`` mixes only earlier blocks.
      ``P`` is then a masked row softmax: the paper's causal Sinkhorn balancing also normalises
      columns, which sums over later rows and would leak future tokens into past outputs. The
      own block is causal; block 0 has no sorted block.
    - While an ``AttentionProbe`` records, the dense-equivalent weights on the original values
      (``(B, nh, L, L)``; rows sum to 1 up to the Sinkhorn residual) go through ``probe`` and
      the output is computed from them.

    Self-attention only; masks: ``(B, L)`` boolean padding masks only.

    Formula:
        $$
        \begin{gathered}
        P = \mathrm{Sinkhorn}\big((\mathrm{ReLU}(s W + c) + g) / \tau\big) \\
        \mathrm{out}_i = \mathrm{softmax}\!\left(\frac{q_i\, [K_b; (PK)_b]^\top}{\sqrt{d_h}}\right)
        [V_b; (PV)_b]
        \end{gathered}
        $$

        with $b$ the block of query $i$, $s$ the block sums of the keys and $g$ Gumbel noise
        (training).

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        seq_len: Longest input length (sets the sort net's output size).
        bucket_size: Block length ``b``.
        sinkhorn_iters: Sinkhorn normalisation rounds.
        temperature: Sinkhorn temperature ``tau > 0``.

    Shape:
        - x: ``(B, L, C)`` with ``L <= seq_len``, or unbatched ``(L, C)``;
          mask: ``(B, L)`` bool, True = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("sinkhorn", 64, num_heads=4, seq_len=64, bucket_size=8)
        >>> attn(torch.randn(2, 60, 64)).shape
        torch.Size([2, 60, 64])
    """

    backend = "sorted buckets (Sinkhorn permutation); whole blocks: fused SDPA, else block softmax"

    supports_mask = True
    supports_causal = True
    supports_cross = False
    recompute = True  # training: recompute in backward instead of keeping activations
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
        seq_len: int,
        bucket_size: int = 64,
        sinkhorn_iters: int = 5,
        temperature: float = 0.75,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.bucket_size = check_positive_int("bucket_size", bucket_size)
        self.sinkhorn_iters = check_positive_int("sinkhorn_iters", sinkhorn_iters)
        self.temperature = check_finite("temperature", temperature, positive=True)
        self.max_blocks = -(-self.seq_len // self.bucket_size)
        self.register_parameter("sort_weight", None)
        self.register_parameter("sort_bias", None)
        if self.max_blocks > 1:  # one block never needs sorting
            scale = self.head_dim**-0.5
            weight = torch.empty(self.num_heads, self.head_dim, self.max_blocks)
            self.sort_weight = nn.Parameter(nn.init.uniform_(weight, -scale, scale))
            self.sort_bias = nn.Parameter(torch.zeros(self.num_heads, 1, self.max_blocks))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, seq_len={self.seq_len}, bucket_size={self.bucket_size}, "
            f"sinkhorn_iters={self.sinkhorn_iters}, temperature={self.temperature}"
        )

    def sort_matrix(self, k: torch.Tensor, is_causal: bool) -> torch.Tensor:
        """Soft block permutation ``(B, nh, n, n)`` from blocked keys ``(B, nh, n, b, hd)``."""
        batch, heads, blocks, size, width = k.shape
        if is_causal:  # keys up to and including the first token of each block
            running = k.flatten(2, 3).cumsum(dim=2)  # (B, nh, n * b, hd)
            summary = running.view(batch, heads, blocks, size, width)[:, :, :, 0]
        else:
            summary = k.sum(dim=3)  # (B, nh, n, hd); padded keys are zero
        weight, bias = self.sort_weight[..., :blocks], self.sort_bias[..., :blocks]
        scores = F.relu(summary @ weight.to(k.dtype) + bias.to(k.dtype))  # (B, nh, n, n)
        if self.training:
            uniform = torch.rand_like(scores).clamp(1e-10, 1.0)
            scores = scores - (-uniform.log()).log()  # Gumbel noise
        scores = scores / self.temperature
        if is_causal:
            past = torch.ones(blocks, blocks, dtype=torch.bool, device=k.device).tril(-1)
            scores = scores.masked_fill(~past, NEG_INF)
            return torch.where(past, scores - _safe_lse(scores, -1), NEG_INF).exp()
        return sinkhorn(scores, self.sinkhorn_iters)

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
        if length > self.seq_len:
            raise ValueError(
                f"input length {length} exceeds seq_len={self.seq_len}, the longest length the "
                "sort net was built for; build the module with a larger seq_len"
            )
        real = self.padding_mask(mask, batch, length, length, x.dtype)  # (B, L) or None
        if self.probe.recording:
            out = self._layer(x, real, is_causal)
        else:  # in training the whole layer (projections included) is recomputed in backward
            out = recomputed(self._layer, x, real, is_causal, module=self)
        return out.squeeze(0) if unbatched else out

    def _layer(self, x: torch.Tensor, real: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
        """Projections, sort net, block attention and output projection: ``(B, L, C)``."""
        batch, length, _ = x.shape
        size = max(1, min(self.bucket_size, length))
        whole_blocks = real is None and length % size == 0 and length > size
        if whole_blocks and self.dropout_p == 0 and not self.probe.recording:
            return self._fused_layer(x, is_causal, size)  # no mask, dropout or probe: SDPA
        q, k, v = self.project(x, None)  # (B, nh, L, hd) x 3
        dtype = compute_dtype(q.dtype)
        blocks = -(-length // size)
        pad = blocks * size - length
        valid = torch.ones(batch, length, dtype=torch.bool, device=x.device)
        valid = F.pad(valid if real is None else real, (0, pad), value=False)  # (B, n * b)
        valid = valid.view(batch, 1, blocks, size)  # (B, 1, n, b)
        heads, width = self.num_heads, self.head_dim

        complete = real is None and pad == 0  # every slot holds a real token: nothing to zero

        def blocked(t: torch.Tensor) -> torch.Tensor:
            # one copy into the head-major layout (B, nh, n * b, hd), padded to whole blocks
            t = F.pad(t.to(dtype), (0, 0, 0, pad)) if pad else t.to(dtype).contiguous()
            t = t.view(batch, heads, blocks, size, width)  # (B, nh, n, b, hd)
            return t if complete else t.masked_fill(~valid.unsqueeze(-1), 0.0)

        q = blocked(q) * width**-0.5
        k, v = blocked(k), blocked(v)
        if blocks > 1:
            sort = self.sort_matrix(k, is_causal)
        else:  # a single block: its sorted block is itself, or nothing when causal
            fill = float(not is_causal)
            sort = torch.full((batch, heads, blocks, blocks), fill, dtype=dtype, device=x.device)
        out, attn, _ = block_sinkhorn_attention(
            q, k, v, sort, valid, is_causal=is_causal, dropout_p=self.dropout_p, complete=complete
        )
        if self.probe.recording:  # weights on the original tokens; none on padding
            dense = self._dense(attn, sort) * valid.flatten(2).unsqueeze(-2)  # (B, nh, nb, nb)
            dense = self.probe(dense[..., :length, :length])  # (B, nh, L, L)
            dropped = dropout(dense, p=self.dropout_p) if self.dropout_p > 0 else dense
            out = dropped @ v.flatten(2, 3)[:, :, :length]  # (B, nh, L, hd)
        else:
            out = out.flatten(2, 3)[:, :, :length]  # (B, nh, L, hd)
        return self.finish(out.to(x.dtype), False)

    def _fused_layer(self, x: torch.Tensor, is_causal: bool, size: int) -> torch.Tensor:
        """The layer on whole blocks without padding, dropout or probe, through fused SDPA.

        Every block's queries attend to ``[own block; sorted block]`` in one SDPA call whose
        batch is the blocks: the queries are read in place from the projection's token-major
        rows, and SDPA writes its output token-major, so neither is copied head-major. Without
        autograd the layer runs chunk by chunk (:func:`streamed_sorted_layer`).
        """
        batch, length, _ = x.shape
        heads, width, blocks = self.num_heads, self.head_dim, length // size
        dtype = compute_dtype(x.dtype)
        if not needs_grad(x, module=self):  # chunk by chunk, halves written in place
            return self.proj_drop(streamed_sorted_layer(self, x, size, is_causal, dtype))
        tokens = (batch, blocks, size, heads, width)
        q, k, v = (t.to(dtype).view(tokens) for t in self.project_tokens(x))  # (B, n, b, nh, hd)
        k_blocks = k.permute(0, 3, 1, 2, 4).contiguous()  # (B, nh, n, b, hd)
        v_blocks = v.permute(0, 3, 1, 2, 4).contiguous()  # (B, nh, n, b, hd)
        sort = self.sort_matrix(k_blocks, is_causal)  # (B, nh, n, n)
        keys, values = own_and_sorted(k, k_blocks, sort), own_and_sorted(v, v_blocks, sort)
        mask = None
        if is_causal:  # the same causal pattern for every batch row
            mask = block_mask(blocks, size, x.device).repeat(batch, 1, 1, 1)  # (B n, 1, b, 2b)
        out = F.scaled_dot_product_attention(
            q.flatten(0, 1).transpose(1, 2),  # (B n, nh, b, hd), read in place
            keys,
            values,
            attn_mask=mask,
            scale=width**-0.5,
        )  # (B n, nh, b, hd)
        out = out.transpose(1, 2).reshape(batch, length, heads * width)  # (B, L, C), a view
        return self.proj_drop(self.out_proj(out.to(x.dtype)))

    @staticmethod
    def _dense(attn: torch.Tensor, sort: torch.Tensor) -> torch.Tensor:
        """Weights on the original tokens: own-block part plus sorted part spread by ``P``."""
        batch, heads, blocks, size, _ = attn.shape
        own, sorted_part = attn[..., :size], attn[..., size:]
        eye = torch.eye(blocks, dtype=attn.dtype, device=attn.device)
        dense = torch.einsum("bhist,bhij->bhisjt", sorted_part, sort)  # (B, nh, n, b, n, b)
        dense = dense + torch.einsum("bhist,ij->bhisjt", own, eye)
        return dense.reshape(batch, heads, blocks * size, blocks * size)  # (B, nh, nb, nb)
