"""``attnzoo bench sparse``: the block-sparse engine's cost against the density of its mask.

For each density ``p`` the mask is :func:`attnzoo.masks.random_blocks` with
``round(p * nk)`` key blocks per query-block row (at least one), so exactly that fraction of the
block pairs is computed; the engine (:func:`attnzoo.functional.block_sparse_attention`) is
timed on it, and dense SDPA with no mask (the cost of density 100% without any block
machinery) is timed in the same run, alternating with the engine so that both see the same
machine state. The cost of a computed block is the time divided by the number of non-empty
blocks: flat across densities when the cost is proportional to the blocks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SparseBenchConfig", "format_sparse_table", "plot_density", "run_sparse"]

DENSITIES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


@dataclass
class SparseBenchConfig:
    """One density sweep."""

    length: int = 16384
    heads: int = 8
    head_dim: int = 64
    batch: int = 1
    block_size: int | None = None
    densities: list[float] = field(default_factory=lambda: list(DENSITIES))
    repeats: int = 3
    backward: bool = False
    threads: int = 2


def _timer(config: SparseBenchConfig, call: Callable[..., Any]) -> Callable[[], float]:
    import torch

    shape = (config.batch, config.heads, config.length, config.head_dim)

    def once() -> float:
        q, k, v = (torch.randn(shape, requires_grad=config.backward) for _ in range(3))
        start = time.perf_counter()
        if config.backward:
            call(q, k, v).sum().backward()
        else:
            with torch.no_grad():
                call(q, k, v)
        return time.perf_counter() - start

    return once


def run_sparse(
    config: SparseBenchConfig, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Time the engine at every density and dense SDPA; returns a JSON-compatible record."""
    import torch
    import torch.nn.functional as F

    from attnzoo import masks
    from attnzoo.functional import block_sparse_attention, create_block_mask
    from attnzoo.functional.block_mask import check_block_size

    for p in config.densities:
        if not 0 < p <= 1:
            raise ValueError(f"densities must be in (0, 1], got {p}")
    torch.set_num_threads(config.threads)
    block = check_block_size(config.block_size)[0]
    rows = -(-config.length // block)
    dense = _timer(config, F.scaled_dot_product_attention)
    dense()  # warm-up
    results = []
    for density in config.densities:
        per_row = max(1, round(density * rows))
        mod = masks.random_blocks(block, per_row, q_len=config.length)
        bm = create_block_mask(mod, None, None, config.length, block_size=block)
        engine = _timer(config, lambda q, k, v, bm=bm: block_sparse_attention(q, k, v, bm))
        engine()  # warm-up (builds the chunk plan)
        engine_times, dense_times = [], []
        for _ in range(config.repeats):
            engine_times.append(engine())
            dense_times.append(dense())
        empty, full, partial = bm.counts()
        seconds = statistics.median(engine_times)
        row = {
            "density": (full + partial) / (empty + full + partial),
            "blocks": full + partial,
            "engine_ms": 1e3 * seconds,
            "sdpa_ms": 1e3 * statistics.median(dense_times),
            "us_per_block": 1e6 * seconds / (full + partial),
        }
        results.append(row)
        if progress is not None:
            progress(row)
    return {
        "config": asdict(config),
        "block_size": block,
        "torch": torch.__version__,
        "rows": results,
    }


def format_sparse_table(record: dict[str, Any]) -> str:
    """Markdown table of :func:`run_sparse`'s record."""
    lines = [
        "| density | blocks | engine ms | dense SDPA ms | engine / SDPA | us per block |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['density']:.3f} | {row['blocks']} | {row['engine_ms']:.1f} | "
            f"{row['sdpa_ms']:.1f} | {row['engine_ms'] / row['sdpa_ms']:.2f} | "
            f"{row['us_per_block']:.1f} |"
        )
    return "\n".join(lines)


def plot_density(record: dict[str, Any], path: str) -> None:
    """Log-log picture of :func:`run_sparse`'s record: engine time, proportional line, SDPA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    per_block = statistics.median(row["us_per_block"] for row in rows)
    config = record["config"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    densities = [row["density"] for row in rows]
    ax.loglog(densities, [row["engine_ms"] for row in rows], "o-", label="block-sparse engine")
    ax.loglog(
        densities,
        [per_block * row["blocks"] / 1e3 for row in rows],
        "--",
        color="gray",
        label=f"{per_block:.0f} us x non-empty blocks",
    )
    sdpa = statistics.median(row["sdpa_ms"] for row in rows)
    ax.axhline(sdpa, color="C3", label="dense SDPA (no mask)")
    block = record["block_size"]
    ax.set_xlabel(f"fraction of {block}x{block} block pairs computed")
    ax.set_ylabel("forward + backward time (ms)" if config["backward"] else "forward time (ms)")
    ax.set_title(
        f"L = {config['length']}, {config['heads']} heads, head dim {config['head_dim']}, "
        f"{config['threads']} CPU threads",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
