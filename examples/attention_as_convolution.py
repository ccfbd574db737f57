"""Self-attention can express convolution: a 9-head ``mha`` that equals a 3x3 ``nn.Conv2d``.

Cordonnier, Loukas and Jaggi, "On the Relationship between Self-Attention and Convolutional
Layers", ICLR 2020, https://arxiv.org/abs/1911.03584. Their constructive proof (Lemma 1,
Theorem 1): give a multi-head self-attention layer ``N_h = K^2`` heads, zero query/key weights
and the *quadratic* relative positional encoding

    score_h(q, k) = v_h . r_delta,   v_h = -alpha (1, -2 D_h1, -2 D_h2),
    r_delta = (|delta|^2, delta_1, delta_2),   delta = position(k) - position(q),

which is ``-alpha (|delta - D_h|^2 - |D_h|^2)``: as ``alpha`` grows, head ``h`` puts all its
weight on the single pixel ``q + D_h``. With one shift ``D_h in {-1, 0, 1}^2`` per head, the
value/output projections then apply the kernel slice ``W[:, :, D_h + 1]`` to that pixel, and the
sum over heads (the output projection) is the convolution.

Here the layer is attnzoo's own ``mha`` (``dim = C``, ``num_heads = 9``, ``head_dim = C``) and
the relative scores are its additive float ``mask`` of shape ``(1, 9, L, S)``. The script prints
the error against ``nn.Conv2d`` for the ``alpha`` chosen from the softmax bound and for smaller
``alpha`` (exact only in the limit), and draws what the nine heads look at.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
from attnzoo.viz import record_attention

# Head h looks at q + SHIFTS[h] (row, col). The order is the kernel's taps in row-major order,
# so head h = 3 (D_1 + 1) + (D_2 + 1) carries the slice W[:, :, D_1 + 1, D_2 + 1].
SHIFTS = tuple((d1, d2) for d1 in (-1, 0, 1) for d2 in (-1, 0, 1))
NUM_HEADS = len(SHIFTS)


def alpha_for(num_keys: int, *, leak: float = 1e-10) -> float:
    """The ``alpha`` at which the softmax bound leaves at most ``leak`` weight off-target.

    Keys sit on an integer grid, so every key but the target ``q + D_h`` is at squared distance
    ``>= 1`` from it; its score is lower by ``>= alpha`` and its weight ``<= e^-alpha``. All
    ``num_keys - 1`` of them together get ``< num_keys e^-alpha``, which is ``leak`` at
    ``alpha = log(num_keys / leak)``. The default ``leak = 1e-10`` is far below the 1e-5
    tolerance (and below float32 round-off, so the layer is then exact to round-off).
    """
    return math.log(num_keys / leak)


def relative_scores(
    height: int,
    width: int,
    *,
    alpha: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The nine heads' quadratic relative-position scores ``v_h . r_delta`` on an image grid.

    Returns:
        ``(9, P, P)`` with ``P = height * width`` pixels in row-major order; entry
        ``[h, q, k]`` is ``-alpha (|delta|^2 - 2 D_h . delta)``, ``delta = pos(k) - pos(q)``.
    """
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (H, W, 2)
    pos = grid.reshape(height * width, 2)  # (P, 2): (row, col) of each pixel
    delta = pos[None, :, :] - pos[:, None, :]  # (P_q, P_k, 2): position(k) - position(q)
    r_delta = torch.cat([delta.pow(2).sum(-1, keepdim=True), delta], dim=-1)  # (P_q, P_k, 3)
    shifts = torch.tensor(SHIFTS, dtype=torch.float64)  # (9, 2)
    v = -alpha * torch.cat([torch.ones(NUM_HEADS, 1, dtype=torch.float64), -2 * shifts], -1)
    # v: (9, 3); built in float64 so the large scores of far keys carry no round-off into the
    # small ones that matter, then cast.
    scores = torch.einsum("hc,qkc->hqk", v, r_delta)  # (9, P_q, P_k)
    return scores.to(dtype=dtype, device=device)


def conv_as_attention(
    conv: nn.Conv2d, height: int, width: int, *, alpha: float
) -> tuple[nn.Module, torch.Tensor]:
    """An attnzoo ``mha`` and float mask that together compute ``conv`` on ``height x width``.

    The layer runs self-attention over the image zero-padded by one pixel, ``P = (H+2)(W+2)``
    tokens of width ``C``: ``q_proj = k_proj = 0`` (content plays no part, only position),
    ``v_proj`` is nine stacked identities (head ``h``'s value is the pixel itself), ``out_proj``
    holds the kernel slices as its ``C x C`` blocks and the conv bias as its bias.

    Args:
        conv: ``nn.Conv2d(C, C, 3, padding=1)``, stride 1, no dilation or groups, zero padding.
        height: Image height ``H``.
        width: Image width ``W``.
        alpha: Sharpness of the positional scores; exact as ``alpha -> inf`` (see
            :func:`alpha_for`).

    Returns:
        ``(mha, mask)``: the module and its additive mask ``(1, 9, P, P)``.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    layout = (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups)
    if layout != ((3, 3), (1, 1), (1, 1), (1, 1), 1) or conv.padding_mode != "zeros":
        raise ValueError(
            "conv must be nn.Conv2d(C, C, 3, padding=1) with stride 1, dilation 1, groups 1 and "
            f"zero padding; got kernel_size {conv.kernel_size}, stride {conv.stride}, padding "
            f"{conv.padding}, dilation {conv.dilation}, groups {conv.groups}, padding_mode "
            f"{conv.padding_mode!r}"
        )
    if conv.in_channels != conv.out_channels:
        raise ValueError(
            "mha maps C channels to C channels, so conv needs in_channels == out_channels; got "
            f"{conv.in_channels} -> {conv.out_channels}"
        )
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite positive float, got {alpha!r}")
    channels = conv.in_channels
    weight = conv.weight.detach()  # (C_out, C_in, 3, 3)
    mha = attnzoo.create("mha", channels, num_heads=NUM_HEADS, head_dim=channels)
    mha = mha.to(device=weight.device, dtype=weight.dtype).eval()
    with torch.no_grad():
        for proj in (mha.q_proj, mha.k_proj):  # W_qry = W_key = 0
            proj.weight.zero_()
            proj.bias.zero_()
        eye = torch.eye(channels, dtype=weight.dtype, device=weight.device)  # (C, C)
        mha.v_proj.weight.copy_(eye.repeat(NUM_HEADS, 1))  # (9 C, C): head h's value = pixel
        mha.v_proj.bias.zero_()  # so that padded (zero) pixels have exactly zero values
        # Heads are merged as (B, L, 9 * C) with column h * C + c_in, h = 3 (D_1+1) + (D_2+1).
        blocks = weight.permute(0, 2, 3, 1)  # (C_out, 3, 3, C_in)
        mha.out_proj.weight.copy_(blocks.reshape(channels, NUM_HEADS * channels))  # (C, 9 C)
        if conv.bias is None:
            mha.out_proj.bias.zero_()
        else:
            mha.out_proj.bias.copy_(conv.bias.detach())
    scores = relative_scores(
        height + 2, width + 2, alpha=alpha, dtype=weight.dtype, device=weight.device
    )  # (9, P, P)
    return mha, scores[None]  # (1, 9, P, P)


def attention_conv(image: torch.Tensor, mha: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """Run the layer of :func:`conv_as_attention` on ``image (B, C, H, W)``; returns the same shape.

    Borders: the image is zero-padded by one pixel and the whole ``(H+2) x (W+2)`` grid is both
    queries and keys (plain self-attention), but only the ``H x W`` interior queries are kept.
    For an interior query every target ``q + D_h`` is on the padded grid, so each head finds its
    pixel; where that pixel is padding its value is ``v_proj(0) = 0`` (no ``v_proj`` bias), which
    is exactly what zero padding contributes to the convolution, and the conv bias comes from
    ``out_proj``'s bias at every pixel, padded neighbours or not. A query *on* the padded border
    would need a target off the grid: its softmax would renormalise onto the nearest existing
    pixel instead, which is wrong, so those outputs are discarded. Keeping them as keys costs a
    little compute but keeps the layer an ordinary self-attention layer over one token set.
    """
    batch, channels, height, width = image.shape
    num_pixels = (height + 2) * (width + 2)
    if tuple(mask.shape) != (1, NUM_HEADS, num_pixels, num_pixels):
        raise ValueError(
            f"mask must be (1, {NUM_HEADS}, P, P) with P = (H + 2)(W + 2) = {num_pixels} for a "
            f"{height}x{width} image; got {tuple(mask.shape)}. Build it with "
            f"conv_as_attention(conv, {height}, {width}, alpha=...)."
        )
    padded = F.pad(image, (1, 1, 1, 1))  # (B, C, H + 2, W + 2), zero border
    tokens = padded.flatten(2).transpose(1, 2)  # (B, P, C), pixels in row-major order
    out = mha(tokens, mask=mask)  # (B, P, C)
    grid = out.transpose(1, 2).reshape(batch, channels, height + 2, width + 2)  # (B, C, H+2, W+2)
    return grid[:, :, 1:-1, 1:-1]  # (B, C, H, W): interior queries only


def max_error(conv: nn.Conv2d, image: torch.Tensor, alpha: float) -> float:
    """Max absolute difference between the attention layer and ``conv`` on ``image``."""
    mha, mask = conv_as_attention(conv, image.shape[2], image.shape[3], alpha=alpha)
    with torch.no_grad():
        return (attention_conv(image, mha, mask) - conv(image)).abs().max().item()


def head_maps(conv: nn.Conv2d, image: torch.Tensor, alpha: float, radius: int = 2) -> torch.Tensor:
    """The nine heads' weights for the centre query, ``(9, 2r+1, 2r+1)`` around that query."""
    height, width = image.shape[2:]
    mha, mask = conv_as_attention(conv, height, width, alpha=alpha)
    with record_attention(mha) as maps, torch.no_grad():
        attention_conv(image, mha, mask)
    weights = maps[""][0]  # (9, P, P)
    row, col = height // 2 + 1, width // 2 + 1  # centre pixel, in padded-grid coordinates
    query = row * (width + 2) + col
    per_key = weights[:, query].reshape(NUM_HEADS, height + 2, width + 2)  # (9, H+2, W+2)
    return per_key[:, row - radius : row + radius + 1, col - radius : col + radius + 1]


def draw(panels: dict[str, torch.Tensor], path: Path) -> None:
    """Each panel: the nine heads as a 3x3 grid of small maps around the centre query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.2 * len(panels), 4.6), layout="constrained")
    for sub, (title, maps) in zip(fig.subfigures(1, len(panels)), panels.items(), strict=True):
        axes = sub.subplots(3, 3)
        radius = maps.shape[-1] // 2
        for ax, head_map, (d1, d2) in zip(axes.flat, maps, SHIFTS, strict=True):
            image = ax.imshow(head_map.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.plot(radius, radius, marker="+", color="white", markersize=8)  # the query
            ax.set_title(rf"$\Delta$ = ({d1:+d}, {d2:+d})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        sub.suptitle(title, fontsize=10)
        sub.colorbar(image, ax=axes, shrink=0.7, label="weight")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a smaller image (for the tests)")
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="where the picture goes")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    batch, channels = 2, 4
    height, width = (6, 5) if args.smoke else (12, 12)
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    image = torch.randn(batch, channels, height, width)
    num_keys = (height + 2) * (width + 2)
    alpha = alpha_for(num_keys)

    print(
        f"mha(dim={channels}, num_heads={NUM_HEADS}, head_dim={channels}) vs "
        f"nn.Conv2d({channels}, {channels}, 3, padding=1) on a {batch}x{channels}x{height}x{width} "
        f"image ({num_keys} tokens with the zero border)"
    )
    print(
        f"alpha = log(N / 1e-10) = {alpha:.2f}: "
        f"bound N e^-alpha = {num_keys * math.exp(-alpha):.1e}"
    )
    print(f"max |attention - conv| = {max_error(conv, image, alpha):.2e}")
    print("smaller alpha (exact only in the limit alpha -> inf):")
    for small in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        print(
            f"  alpha = {small:5.1f}: max error {max_error(conv, image, small):.2e}"
            f"  (bound N e^-alpha = {num_keys * math.exp(-small):.1e})"
        )

    panels = {
        f"alpha = {alpha:.1f}: one pixel per head": head_maps(conv, image, alpha),
        "alpha = 1: blurred": head_maps(conv, image, 1.0),
    }
    path = args.out_dir / "attention_as_convolution.png"
    draw(panels, path)
    print(f"heads' attention maps for the centre query -> {path}")


if __name__ == "__main__":
    main()
