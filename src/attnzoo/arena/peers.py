"""Peer implementations as ``attnzoo bench speed`` baselines: the packages users run today.

Each baseline is a whole self-attention layer at the configuration of the attnzoo mechanism it
is compared with (same width, heads, window / features / landmarks / buckets; q, k, v and output
projections on both sides), built from a single-mechanism package by lucidrains or from
PyTorch itself:

- ``sdpa_fused`` vs ``mha``: one fused ``Linear(C, 3C)``, ``F.scaled_dot_product_attention``
  and ``Linear(C, C)`` — PyTorch's own fastest dense layer;
- ``peer_local`` vs ``local``: ``local_attention.LocalAttention`` (exact window ``w``, no
  rotary embedding) between four ``Linear`` projections;
- ``peer_linformer`` vs ``linformer``: ``linformer.LinformerSelfAttention`` (``k``, one E and
  one F shared by the heads);
- ``peer_performer`` vs ``performer``: ``performer_pytorch.SelfAttention`` (``nb_features``);
- ``peer_reformer`` vs ``reformer``: ``reformer_pytorch.LSHSelfAttention`` (bucket size,
  hashes);
- ``peer_nystrom`` vs ``nystrom``: ``nystrom_attention.NystromAttention`` (landmarks, 6 pinv
  iterations, conv skip of 33);
- ``peer_linear`` vs ``linear``: ``linear_attention_transformer.SelfAttention`` (its kernel is
  the softmax feature map of Shen et al., not ``elu + 1``: the same cost, another kernel);
- ``peer_sinkhorn`` vs ``sinkhorn``: ``sinkhorn_transformer.SinkhornSelfAttention``.

The packages' q, k, v projections have no bias (their output projections have one);
``attnzoo bench speed --peers`` builds the attnzoo mechanism with ``qkv_bias=False`` against
them (:attr:`Peer.qkv_bias`), so that both layers have the same projections.

The packages are optional (``pip install 'attnzoo[bench]'``; they are pure PyTorch); a
baseline whose package is missing fails its cell with the install command. Options that the
mechanism takes (``--option local:window=128``) are passed to its peer too, so both sides
always share the configuration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PEERS", "Peer", "build_peer"]


@dataclass(frozen=True)
class Peer:
    """A baseline: the attnzoo mechanism it is compared with and how to build it.

    ``qkv_bias`` says whether the peer's query, key and value projections have a bias (every
    package's output projection has one, as attnzoo's): ``attnzoo bench speed --peers`` builds
    the attnzoo side with the same, so that both layers have the same projections.
    """

    mechanism: str
    package: str | None  # PyPI distribution, None for PyTorch itself
    build: Callable[..., Any]
    qkv_bias: bool = False


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"baseline needs the {package!r} package: pip install 'attnzoo[bench]' "
            f"(or pip install --no-deps {package})"
        ) from None


def _projected(dim: int, heads: int, attend: Callable):
    """Four ``Linear`` projections around ``attend(q, k, v)`` on ``(B, nh, L, hd)`` heads."""
    import torch
    from torch import nn

    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape
            shape = (batch, length, self.heads, self.head_dim)
            q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            k = self.k_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            v = self.v_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            out = attend(q, k, v)  # (B, nh, L, hd)
            return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))  # (B, L, C)

    return Projected()


def _sdpa_fused(dim: int, heads: int, length: int, causal: bool, **options):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FusedSDPA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out_proj = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape
            qkv = self.qkv(x).view(batch, length, 3, self.heads, -1)  # (B, L, 3, nh, hd)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, L, hd)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, nh, L, hd)
            return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))  # (B, L, C)

    return FusedSDPA(**options)


def _local(dim: int, heads: int, length: int, causal: bool, *, window: int = 256):
    local_attention = _require("local_attention", "local-attention")
    attention = local_attention.LocalAttention(
        window_size=window,
        causal=causal,
        look_backward=1,
        look_forward=0 if causal else 1,
        exact_windowsize=True,  # |i - j| <= window, attnzoo's sliding_window(window)
        autopad=True,
        use_rotary_pos_emb=False,  # attnzoo's local has no rotary embedding
    )
    return _projected(dim, heads, lambda q, k, v: attention(q, k, v))


def _linformer(dim: int, heads: int, length: int, causal: bool, *, k: int = 256, **_: Any):
    linformer = _require("linformer", "linformer")
    return linformer.LinformerSelfAttention(dim, seq_len=length, k=k, heads=heads)


def _performer(dim: int, heads: int, length: int, causal: bool, *, nb_features: int = 256):
    performer_pytorch = _require("performer_pytorch", "performer-pytorch")
    return performer_pytorch.SelfAttention(
        dim, heads=heads, dim_head=dim // heads, causal=causal, nb_features=nb_features
    )


def _reformer(
    dim: int, heads: int, length: int, causal: bool, *, bucket_size: int = 64, n_hashes: int = 1
):
    reformer_pytorch = _require("reformer_pytorch", "reformer-pytorch")
    return reformer_pytorch.LSHSelfAttention(
        dim, heads=heads, bucket_size=bucket_size, n_hashes=n_hashes, causal=causal
    )


def _nystrom(
    dim: int,
    heads: int,
    length: int,
    causal: bool,
    *,
    num_landmarks: int = 64,
    pinv_iterations: int = 6,
    conv_kernel_size: int = 33,
):
    nystrom_attention = _require("nystrom_attention", "nystrom-attention")
    return nystrom_attention.NystromAttention(
        dim,
        dim_head=dim // heads,
        heads=heads,
        num_landmarks=num_landmarks,
        pinv_iterations=pinv_iterations,
        residual_conv_kernel=conv_kernel_size,
    )


def _linear(dim: int, heads: int, length: int, causal: bool, **_: Any):
    module = _require("linear_attention_transformer", "linear-attention-transformer")
    return module.linear_attention_transformer.SelfAttention(dim, heads, causal=causal)


def _sinkhorn(dim: int, heads: int, length: int, causal: bool, *, bucket_size: int = 64, **_: Any):
    sinkhorn_transformer = _require("sinkhorn_transformer", "sinkhorn-transformer")
    return sinkhorn_transformer.SinkhornSelfAttention(
        dim, bucket_size=bucket_size, max_seq_len=length, heads=heads, causal=causal
    )


PEERS: dict[str, Peer] = {
    "sdpa_fused": Peer("mha", None, _sdpa_fused, qkv_bias=True),
    "peer_local": Peer("local", "local-attention", _local, qkv_bias=True),
    "peer_linformer": Peer("linformer", "linformer", _linformer),
    "peer_performer": Peer("performer", "performer-pytorch", _performer),
    "peer_reformer": Peer("reformer", "reformer-pytorch", _reformer),
    "peer_nystrom": Peer("nystrom", "nystrom-attention", _nystrom),
    "peer_linear": Peer("linear", "linear-attention-transformer", _linear),
    "peer_sinkhorn": Peer("sinkhorn", "sinkhorn-transformer", _sinkhorn),
}


def build_peer(name: str, dim: int, heads: int, length: int, causal: bool, options: dict):
    """The baseline ``name`` as an ``nn.Module`` whose ``forward(x)`` maps ``(B, L, C)``."""
    return PEERS[name].build(dim, heads, length, causal, **options)
