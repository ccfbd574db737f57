"""Routing attention (Roy, Saffar, Vaswani, Grangier 2021): attention in online k-means clusters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo._checks import check_positive_int, type_name
from attnzoo.efficient._clustering import (
    attend_groups,
    bucket_layout,
    compute_dtype,
    dense_weights,
    gather_flags,
    gather_rows,
    merge_slots,
)
from attnzoo.functional.dropout import dropout
from attnzoo.layers.attention_base import AttentionBase
from attnzoo.registry import EFFICIENT, Paper

__all__ = ["RoutingAttention"]


@EFFICIENT.register(
    "routing",
    paper=Paper(
        title="Efficient Content-Based Sparse Attention with Routing Transformers",
        authors="Roy, Saffar, Vaswani, Grangier",
        year=2021,
        url="https://arxiv.org/abs/2003.05997",
    ),
    tags=("clustering", "kmeans", "self", "cross"),
    complexity="O(L S d / num_clusters) time and memory",
)
class RoutingAttention(AttentionBase):
    r"""Routing attention: queries attend to the keys routed to the same k-means cluster.

    Roy, Saffar, Vaswani, Grangier, "Efficient Content-Based Sparse Attention with Routing
    Transformers", TACL 2021, https://arxiv.org/abs/2003.05997. Queries and keys are
    layer-normalised without scale or shift (``q^ = LN(q)``, ``k^ = LN(k)``, as the official
    code) and routed with ``num_clusters`` shared centroids ``mu`` by the score ``x . mu_c``.
    Balanced routing (the paper's and official code's top-k): cluster ``c`` takes the
    ``w_q = ceil(L / k)`` queries and ``w_k = ceil(S / k)`` keys closest to ``mu_c``, and::

        out_i = softmax_{j in K_c} (q^_i . k^_j / sqrt(hd)) v_j    for i in Q_c

    A query in several clusters merges them with their softmax normalisers (one softmax over
    the union of the keys it saw); a query in none gets zeros. Centroids (buffer ``centroids``,
    ``(nh, k, hd)``, layer-normalised Gaussians at init) move by an exponential moving average
    of the normalised queries and keys assigned to them (nearest centroid), in training only.
    Time and memory ``O(L S d / k)``; no ``L x S`` tensor (``O(L^1.5 d)`` with
    ``k = sqrt(L)``, the paper's choice).

    Defaults and deviations:

    - ``num_clusters=16`` (the official enwik8 and PG-19 8K configs: 16 clusters of 512);
      ``decay=0.999`` (official). Update: ``mu_c <- decay mu_c + (1 - decay) mean(x)`` over the
      normalised queries and keys nearest to ``mu_c`` (the paper writes sums of queries and keys
      with weight ``(1 - decay) / 2``; the official code averages). Padding is left out.
    - The auxiliary commitment loss of the official code (``beta = 1e-4``) is not returned; the
      centroids learn only by the moving average. Under data parallelism each replica updates its
      own centroids (the official TPU code sums the statistics over replicas).
    - Separate ``q_proj`` and ``k_proj`` (the official encoder setting); the official decoders
      share them. Scores use the usual ``1 / sqrt(hd)`` scale.
    - The official code averages a token's clusters with ``sum / (count + 0.01)``; here they
      are merged exactly by their softmax normalisers.
    - ``is_causal=True``: top-k membership depends on the whole sequence (whether query ``i`` is
      among a cluster's top ``w_q`` depends on later tokens), so top-k routing is not causal.
      Causal routing instead sends every query and key to its nearest centroid; the queries of a
      cluster, in position order, form chunks of ``w_q``, and a chunk starting at position
      ``a`` sees the ``2 w_k`` keys of its cluster around ``a`` (the ``w_k`` last at or before
      ``a``, the ``w_k`` next after it), each query only the ones not after it (bottom-right
      aligned when ``L != S``). Everything a query sees depends on the past only.
    - With ``num_clusters=1`` (or ``num_clusters >= L`` for tiny inputs) routing keeps every
      token: one cluster is exactly dense attention of ``q^`` and ``k^``.
    - While an ``AttentionProbe`` records, the dense-equivalent ``(B, nh, L, S)`` weights go
      through ``probe`` and the output is computed from them.

    Masks: ``(B, S)`` boolean padding masks (padded keys are never routed; in self-attention
    padded queries are not routed either and get zero outputs).

    Formula:
        $$
        \mathrm{out}_i = \sum_{j \in K_c} \mathrm{softmax}_{j \in K_c}\!\left(
        \frac{\hat q_i \hat k_j^\top}{\sqrt{d_h}}\right) v_j \quad \text{for } i \in Q_c, \qquad
        \hat x = \mathrm{LN}(x)
        $$

        with $Q_c, K_c$ the queries and keys nearest to centroid $\mu_c$ (balanced top-k routing).

    Args:
        dim: Model width ``C``.
        num_heads: Heads ``nh``.
        head_dim: Per-head width, default ``dim // num_heads``.
        qkv_bias: Bias in ``q_proj``, ``k_proj``, ``v_proj``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after ``out_proj`` (training only).
        num_clusters: Number of k-means centroids ``k`` per head.
        decay: Moving-average decay of the centroids, in ``[0, 1)``.

    Shape:
        - x: ``(B, L, C)`` or unbatched ``(L, C)``; context: ``(B, S, C)``;
          mask: ``(B, S)`` bool, True = real token
        - output: ``(B, L, C)``

    Example:
        >>> attn = attnzoo.create("routing", 64, num_heads=4, num_clusters=4)
        >>> attn(torch.randn(2, 40, 64), is_causal=True).shape
        torch.Size([2, 40, 64])
    """

    backend = "k-means clusters sorted into chunks, chunked softmax per cluster"

    supports_mask = True
    supports_causal = True
    supports_cross = True
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
        num_clusters: int = 16,
        decay: float = 0.999,
    ) -> None:
        super().__init__(
            dim,
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.num_clusters = check_positive_int("num_clusters", num_clusters)
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a float in [0, 1), got {type_name(decay)}")
        self.decay = float(decay)
        centroids = torch.randn(self.num_heads, self.num_clusters, self.head_dim)
        self.register_buffer("centroids", F.layer_norm(centroids, (self.head_dim,)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_clusters={self.num_clusters}, decay={self.decay}"

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
        kv_len = length if context is None else context.shape[1]
        real = self.padding_mask(mask, batch, length, kv_len, x.dtype)  # (B, S) or None
        q, k, v = self.project(x, context)  # (B, nh, L, hd), (B, nh, S, hd) x 2
        if 0 in (batch, length, kv_len):  # nothing to route: empty, or queries without keys
            return self.attend_nothing(q, v, unbatched)
        dtype = compute_dtype(q.dtype)
        q = F.layer_norm(q.to(dtype), (self.head_dim,))
        k = F.layer_norm(k.to(dtype), (self.head_dim,))
        v = v.to(dtype)
        key_ok = torch.ones(batch, kv_len, dtype=torch.bool, device=x.device)
        key_ok = key_ok if real is None else real
        query_ok = key_ok if context is None else torch.ones_like(key_ok[:, :1]).expand(-1, length)
        if real is not None:  # padding never enters: not even NaN stored there
            k = k.masked_fill(~real[:, None, :, None], 0.0)
            v = v.masked_fill(~real[:, None, :, None], 0.0)
            q = q.masked_fill(~query_ok[:, None, :, None], 0.0)
        centroids = self.centroids.to(dtype)
        with torch.no_grad():
            q_score = torch.einsum("bhld,hcd->bhcl", q, centroids)  # (B, nh, k, L)
            k_score = torch.einsum("bhsd,hcd->bhcs", k, centroids)  # (B, nh, k, S)
            q_score = q_score.masked_fill(~query_ok[:, None, None, :], float("-inf"))
            k_score = k_score.masked_fill(~key_ok[:, None, None, :], float("-inf"))
            route = self._causal_groups if is_causal else self._top_k_groups
            q_index, q_filled, k_index, k_filled = route(q_score, k_score, length, kv_len)
        if self.training:
            self._update_centroids(q, k, q_score, k_score)
        offset = kv_len - length  # bottom-right causal alignment
        # unused slots point at an extra all-zero row (L or S), dropped at the end
        k_valid = k_filled & gather_flags(key_ok[:, None], k_index)  # (B, nh, G, wk)
        k_index = k_index.masked_fill(~k_valid, kv_len)
        q_index = q_index.masked_fill(~q_filled, length)
        keep = [k_valid.unsqueeze(-2)]
        if is_causal:
            keep.append(k_index.unsqueeze(-2) <= q_index.unsqueeze(-1) + offset)
        gq = gather_rows(
            F.pad(q * self.head_dim**-0.5, (0, 0, 0, 1)), q_index
        )  # (B, nh, G, wq, hd)
        gk = gather_rows(F.pad(k, (0, 0, 0, 1)), k_index)  # (B, nh, G, wk, hd)
        gv = gather_rows(F.pad(v, (0, 0, 0, 1)), k_index)  # (B, nh, G, wk, hd)
        out, attn, lse = attend_groups(gq @ gk.transpose(-2, -1), gv, keep, self.dropout_p)
        heads, slots = self.num_heads, q_index.shape[2] * q_index.shape[3]
        merged, weights = merge_slots(
            out.view(batch, heads, slots, self.head_dim),  # (B, nh, N, hd)
            lse.view(batch, heads, slots),  # (B, nh, N)
            q_index.view(batch, heads, slots),  # (B, nh, N)
            length + 1,
            single=is_causal,  # causal routing puts every query in exactly one chunk
        )
        merged = merged[:, :, :length]
        if self.probe.recording:
            dense = dense_weights(
                attn, weights.view_as(q_index), q_index, k_index, length + 1, kv_len + 1
            )
            dense = self.probe(dense[:, :, :length, :kv_len])  # (B, nh, L, S)
            merged = dropout(dense, p=self.dropout_p) @ v if self.dropout_p > 0 else dense @ v
        return self.finish(merged.to(x.dtype), unbatched)

    def _top_k_groups(
        self, q_score: torch.Tensor, k_score: torch.Tensor, length: int, kv_len: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Balanced routing: each cluster takes its ``ceil(L / k)`` closest queries and keys."""
        clusters = self.num_clusters
        q_top = q_score.topk(-(-length // clusters), dim=-1)  # (B, nh, k, wq)
        k_top = k_score.topk(-(-kv_len // clusters), dim=-1)  # (B, nh, k, wk)
        q_index, q_order = q_top.indices.sort(dim=-1)  # position order inside a cluster
        k_index, k_order = k_top.indices.sort(dim=-1)
        q_filled = q_top.values.gather(-1, q_order) > float("-inf")
        k_filled = k_top.values.gather(-1, k_order) > float("-inf")
        return q_index, q_filled, k_index, k_filled

    def _causal_groups(
        self, q_score: torch.Tensor, k_score: torch.Tensor, length: int, kv_len: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Causal routing: nearest centroid, query chunks and a key window around each chunk."""
        clusters = self.num_clusters
        q_width, k_width = -(-length // clusters), -(-kv_len // clusters)
        q_cluster = q_score.argmax(dim=2).masked_fill(q_score[:, :, 0] == float("-inf"), -1)
        k_cluster = k_score.argmax(dim=2).masked_fill(k_score[:, :, 0] == float("-inf"), clusters)
        slot_token, slot_cluster = bucket_layout(q_cluster.unsqueeze(2), q_width, clusters)
        batch, heads = slot_token.shape[:2]
        q_index = slot_token.view(batch, heads, -1, q_width)  # (B, nh, G, wq)
        chunk_cluster = slot_cluster.view(batch, heads, -1, q_width)[..., 0]  # (B, nh, G)
        chunk_start = q_index[..., 0]  # first (earliest) query of each chunk
        # keys sorted by (cluster, position); a chunk of cluster c starting at a sees the keys
        # of c ranked [n - w_k, n + w_k), n = number of keys of c at or before a (+ S - L)
        positions = torch.arange(kv_len, device=k_score.device)
        sort_key, order = (k_cluster * kv_len + positions).sort(dim=-1)  # (B, nh, S)
        counts = torch.zeros(batch, heads, clusters + 1, dtype=torch.long, device=order.device)
        counts = counts.scatter_add_(-1, k_cluster, torch.ones_like(k_cluster))
        first = counts.cumsum(-1) - counts  # (B, nh, k + 1)
        cluster = chunk_cluster.clamp_min(0)
        probe = cluster * kv_len + (chunk_start + kv_len - length).clamp(-1, kv_len - 1)
        seen = torch.searchsorted(sort_key, probe, right=True)  # (B, nh, G)
        lo, hi = first.gather(-1, cluster), (first + counts).gather(-1, cluster)
        window = torch.arange(-k_width, k_width, device=order.device)
        rank = seen.unsqueeze(-1) + window  # (B, nh, G, 2 wk)
        k_filled = (rank >= lo.unsqueeze(-1)) & (rank < hi.unsqueeze(-1))
        k_filled = k_filled & (chunk_cluster >= 0).unsqueeze(-1)
        k_index = order.gather(-1, rank.clamp(0, kv_len - 1).flatten(2))  # (B, nh, G * 2 wk)
        k_index = k_index.view_as(rank)  # (B, nh, G, 2 wk)
        q_filled = q_index >= 0
        return q_index.clamp_min(0), q_filled, k_index, k_filled

    @torch.no_grad()
    def _update_centroids(
        self, q: torch.Tensor, k: torch.Tensor, q_score: torch.Tensor, k_score: torch.Tensor
    ) -> None:
        """``mu_c <- decay mu_c + (1 - decay) mean`` of the real queries and keys nearest to it."""
        total = torch.zeros_like(self.centroids, dtype=q.dtype)  # (nh, k, hd)
        count = q.new_zeros(self.num_heads, self.num_clusters)  # (nh, k)
        for vectors, score in ((q, q_score), (k, k_score)):
            real = (score[:, :, 0] > float("-inf")).to(q.dtype)  # (B, nh, L)
            nearest = F.one_hot(score.argmax(dim=2), self.num_clusters).to(q.dtype)
            nearest = nearest * real.unsqueeze(-1)  # (B, nh, L, k)
            total += torch.einsum("bhlc,bhld->hcd", nearest, vectors)
            count += nearest.sum(dim=(0, 2))
        mean = total / count.clamp_min(1).unsqueeze(-1)
        moved = self.decay * self.centroids + (1 - self.decay) * mean.to(self.centroids.dtype)
        self.centroids.copy_(torch.where((count > 0).unsqueeze(-1), moved, self.centroids))
