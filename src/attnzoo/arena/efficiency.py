"""Speed and peak-memory benchmark of token mixers, one fresh subprocess per measurement.

``attnzoo bench speed`` calls :func:`run_speed`. Each ``(name, L)`` cell runs in a new Python
process so that allocator caches and peak-memory counters start clean:

- time: median of ``repeats`` calls after ``warmup`` calls (forward under ``torch.no_grad()`` in
  ``eval()``; with ``backward`` forward + backward in ``train()`` mode). CPU timing processes
  run with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 32 MiB (its largest value) and
  ``MALLOC_TRIM_THRESHOLD_`` at 4 GiB (:data:`TIMING_MALLOC`): with glibc's default dynamic
  thresholds a process either reuses its freed tensor memory or hands it back and takes page
  faults on every call, depending on the order of its first frees (a 4K layer ran at 40 or at
  60 ms, decided per process). Fixed, every process reuses memory below 32 MiB, so a cell
  no longer depends on which of the two a process fell into; tensors from 32 MiB up are
  mapped and faulted afresh on every call, as before;
- memory, in a second fresh process: peak resident memory of one call (after a warm-up call
  that compiles and fills caches) above the resident memory just before it. CPU: ``VmHWM``
  reset through ``/proc/self/clear_refs``, with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed so
  that freed tensors are returned to the system and the peak is that of live tensors, not of
  the allocator's history; CUDA: ``max_memory_allocated``.

Besides registry names, ``torch_mha`` benchmarks ``torch.nn.MultiheadAttention`` (batch-first,
``need_weights=False``, which takes PyTorch's fused fast path in eval) as the baseline, and
``flex_local`` the same four projections around ``torch.compile(flex_attention)`` with a
``create_block_mask`` of ``attnzoo.masks.sliding_window(window)`` (``--option
flex_local:window=256``, default 256; causal with ``--causal``), and ``engine_local`` the
registered ``masked`` module with the same mask function, i.e. the block-sparse engine
(:func:`attnzoo.functional.block_sparse_attention`) on a sliding window (``--option
engine_local:window=256``, ``engine_local:block_size=64``). The compiling first call is the
memory measurement and never timed. The peer packages (``sdpa_fused``, ``peer_local``, ...) are
the baselines of :mod:`attnzoo.arena.peers`; :func:`format_peer_table` compares each with its
attnzoo counterpart.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.arena.io import write_json_atomic
from attnzoo.arena.peers import PEERS, build_peer

__all__ = [
    "BASELINES",
    "SpeedConfig",
    "SpeedResult",
    "TrainStepConfig",
    "dense_notes",
    "failed_cells",
    "format_peer_table",
    "format_table",
    "run_speed",
    "run_train_steps",
    "write_json",
]

BASELINES = ("torch_mha", "flex_local", "engine_local", *PEERS)


@dataclass
class SpeedConfig:
    """What one benchmark sweep measures."""

    names: list[str]
    lengths: list[int]
    batch: int = 1
    dim: int = 512
    heads: int = 8
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 2
    backward: bool = False
    causal: bool = False
    repeats: int = 3
    warmup: int = 1
    timeout: float = 600.0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SpeedResult:
    """One ``(name, L)`` cell: median seconds, peak MB above baseline, or the error.

    ``note`` says why a pattern mechanism ran plain dense SDPA at this length (its
    ``dense_reason``, e.g. a ``local`` window covering the whole sequence), else None.
    """

    name: str
    length: int
    seconds: float | None
    peak_mb: float | None
    error: str | None = None
    note: str | None = None


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{key}:\s+(\d+)", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _build(cfg: dict[str, Any], length: int):
    import torch
    from torch import nn

    import attnzoo

    dtype = getattr(torch, cfg["dtype"])
    name, dim, heads = cfg["name"], cfg["dim"], cfg["heads"]
    options = dict(cfg.get("options", {}))
    if name == "torch_mha":
        module = nn.MultiheadAttention(dim, heads, batch_first=True, **options)
        mask = None
        if cfg["causal"]:
            mask = nn.Transformer.generate_square_subsequent_mask(length, dtype=dtype)

        def call(x):
            return module(x, x, x, need_weights=False, attn_mask=mask, is_causal=cfg["causal"])[0]

    elif name == "flex_local":
        module = _flex_local(dim, heads, causal=cfg["causal"], **options)

        def call(x):
            return module(x)

    elif name == "engine_local":
        window = options.pop("window", 256)
        mod = attnzoo.masks.sliding_window(window)
        module = attnzoo.create("masked", dim, num_heads=heads, mask_mod=mod, **options)

        def call(x):
            return module(x, is_causal=cfg["causal"])

    elif name in PEERS:
        module = build_peer(name, dim, heads, length, cfg["causal"], options)

        def call(x):
            return module(x)

    else:
        entry = attnzoo.info(name)
        if getattr(entry.obj, "fixed_length", False):
            options.setdefault("seq_len", length)  # fixed-length mechanisms are built for L
        if entry.family in ("sequence", "efficient"):
            module = entry.obj(dim, num_heads=heads, **options)
        else:
            raise ValueError(f"{name!r} is a {entry.family} entry; bench speed takes token mixers")

        def call(x):
            return module(x, is_causal=cfg["causal"])

    module = module.to(device=cfg["device"], dtype=dtype)
    return module, call


def _flex_local(dim: int, heads: int, *, causal: bool, window: int = 256):
    """Projections + compiled FlexAttention with a sliding-window block mask (a baseline)."""
    import torch
    from torch import nn
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from attnzoo import masks

    class FlexLocal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.flex = torch.compile(flex_attention)
            self.block_masks: dict[tuple, Any] = {}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape
            key = (length, str(x.device))
            if key not in self.block_masks:
                mod = masks.sliding_window(window, causal=causal)
                self.block_masks[key] = create_block_mask(
                    mod, None, None, length, length, device=x.device
                )

            shape = (batch, length, self.heads, self.head_dim)
            q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            k = self.k_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            v = self.v_proj(x).view(shape).transpose(1, 2)  # (B, nh, L, hd)
            out = self.flex(q, k, v, block_mask=self.block_masks[key])  # (B, nh, L, hd)
            return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))  # (B, L, C)

    return FlexLocal()


def _mixer_step(cfg: dict[str, Any]):
    """``(once, note)`` of a token-mixer measurement (forward, or forward + backward).

    ``note``: why the mechanism runs plain dense SDPA at this length (``dense_reason``), or None.
    """
    import torch

    length = cfg["length"]
    module, call = _build(cfg, length)
    dense_reason = getattr(module, "dense_reason", None)
    note = None if dense_reason is None else dense_reason(length, length)
    device, dtype = cfg["device"], getattr(torch, cfg["dtype"])
    x = torch.randn(cfg["batch"], length, cfg["dim"], device=device, dtype=dtype)

    def once() -> None:
        if cfg["backward"]:
            x.grad = None
            call(x).float().square().mean().backward()
        else:
            with torch.no_grad():
                call(x)

    module.train(cfg["backward"])
    if cfg["backward"]:
        x.requires_grad_(True)
    return once, note


def _train_step(cfg: dict[str, Any]):
    """``once()`` of one optimiser step of the LRA text model (forward + backward + AdamW).

    ``vanilla`` is the dense Transformer as LRA measured it in 2020: ``mha`` on its reference
    path, which materialises the ``L x S`` scores and weights (attnzoo's probe flag forces it).
    """
    import torch
    import torch.nn.functional as F

    import attnzoo
    from attnzoo.layers.probe import AttentionProbe

    name, length = cfg["name"], cfg["length"]
    mechanism = "mha" if name == "vanilla" else name
    model = attnzoo.create_model(
        "encoder_classifier",
        vocab_size=257,
        num_classes=2,
        max_len=length,
        attention=mechanism,
        attention_kwargs=cfg.get("options", {}),
        **cfg["model"],
    ).to(cfg["device"])
    if name == "vanilla":
        for module in model.modules():
            if isinstance(module, AttentionProbe):
                module.recording = True  # the reference path: scores materialised
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(1, 257, (cfg["batch"], length), device=cfg["device"])
    labels = torch.randint(0, 2, (cfg["batch"],), device=cfg["device"])
    model.train()

    def once() -> None:
        loss = F.cross_entropy(model(tokens), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return once


def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``mode`` is ``"memory"`` or ``"time"``."""
    import gc

    import torch

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    note = None
    if cfg.get("kind") == "train_step":
        step = _train_step(cfg)
    else:
        step, note = _mixer_step(cfg)
    cuda = cfg["device"].startswith("cuda")

    def once() -> None:
        step()
        if cuda:
            torch.cuda.synchronize()

    once()  # warm-up: compilation, plan caches, lazy buffers
    if cfg["mode"] == "memory":
        gc.collect()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            once()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            before = _status_kb("VmRSS") * 1024
            have_reset = _reset_peak()
            once()
            peak = _status_kb("VmHWM") * 1024 - before if have_reset else float("nan")
        return {"peak_mb": max(peak, 0) / 2**20, "note": note}
    for _ in range(max(cfg["warmup"] - 1, 0)):
        once()
    times = []
    for _ in range(cfg["repeats"]):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "note": note}


def _run_worker(timeout: float, cfg: dict[str, Any], env: dict[str, str]):
    """Run one worker subprocess; returns its JSON result or an error string."""
    command = [sys.executable, "-m", "attnzoo.arena.efficiency", json.dumps(cfg)]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:g} s"
    if proc.returncode != 0:
        if proc.returncode < 0:
            return f"killed by signal {-proc.returncode} (out of memory?)"
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: glibc tunables of every timing process (see the module docstring): no dynamic thresholds.
TIMING_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
}


def _measure(config: SpeedConfig, name: str, length: int) -> SpeedResult:
    cfg = {**asdict(config), "name": name, "length": length}
    cfg["options"] = config.options.get(name, {})
    return _measure_cfg(config.timeout, config.threads, cfg, name, length)


def _measure_cfg(
    timeout: float, threads: int, cfg: dict[str, Any], name: str, length: int
) -> SpeedResult:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    # Memory: a fixed glibc mmap threshold makes every large tensor its own mapping, returned
    # on free, so resident memory tracks live tensors instead of the allocator's history. It
    # slows allocation (page faults), so time is measured in another process without it.
    memory = _run_worker(
        timeout, {**cfg, "mode": "memory"}, {**env, "MALLOC_MMAP_THRESHOLD_": "65536"}
    )
    if isinstance(memory, str):
        return SpeedResult(name, length, None, None, memory)
    timing = _run_worker(timeout, {**cfg, "mode": "time"}, {**env, **TIMING_MALLOC})
    if isinstance(timing, str):
        return SpeedResult(name, length, None, memory["peak_mb"], timing)
    return SpeedResult(name, length, timing["seconds"], memory["peak_mb"], note=timing.get("note"))


@dataclass
class TrainStepConfig:
    """The LRA Table 2 sweep: optimiser steps of the text-task model per mechanism and length."""

    names: list[str]
    lengths: list[int]
    model: dict[str, Any]
    batch: int = 1
    device: str = "cpu"
    threads: int = 2
    repeats: int = 3
    warmup: int = 1
    timeout: float = 900.0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    isolate: bool = True  # fresh processes (time and memory); False: time only, in-process


def run_train_steps(config: TrainStepConfig, progress=None) -> list[SpeedResult]:
    """Seconds per training step and peak memory of every ``(name, length)``, fresh processes.

    ``names`` are mechanisms plus the baseline ``vanilla`` (dense with materialised scores);
    ``options[name][length]`` (or ``options[name]``) are the mechanism's constructor options.
    """
    results = []
    for length in config.lengths:
        for name in config.names:
            options = config.options.get(name, {})
            options = options.get(length, options) if isinstance(options, dict) else {}
            cfg = {
                "kind": "train_step",
                "name": name,
                "length": length,
                "model": config.model,
                "batch": config.batch,
                "device": config.device,
                "threads": config.threads,
                "repeats": config.repeats,
                "warmup": config.warmup,
                "options": options,
                "dtype": "float32",
            }
            if config.isolate:
                result = _measure_cfg(config.timeout, config.threads, cfg, name, length)
            else:  # quick look (the smoke preset): no fresh process, so no memory figure
                seconds = _worker({**cfg, "mode": "time"})["seconds"]
                result = SpeedResult(name, length, seconds, None)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def run_speed(config: SpeedConfig, progress=None) -> list[SpeedResult]:
    """Measure every ``(name, length)`` of ``config``, each in a fresh subprocess."""
    results = []
    for length in config.lengths:
        for name in config.names:
            result = _measure(config, name, length)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or math.isnan(value) else format(value, spec)


def format_table(results: list[SpeedResult], reference: str = "mha") -> str:
    """Markdown table with time and memory ratios to ``reference`` at the same length."""
    by_cell = {(r.name, r.length): r for r in results}
    rows = [
        "| name | L | time (ms) | time / "
        + reference
        + " | peak MB | memory / "
        + reference
        + " |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref = by_cell.get((reference, r.length))
        time_ratio = mem_ratio = None
        if ref is not None and r.seconds is not None and ref.seconds:
            time_ratio = r.seconds / ref.seconds
        if ref is not None and r.peak_mb is not None and ref.peak_mb:
            mem_ratio = r.peak_mb / ref.peak_mb
        if r.error:
            rows.append(f"| {r.name} | {r.length} | error: {r.error} | | | |")
            continue
        rows.append(
            f"| {r.name} | {r.length} | {_fmt(r.seconds and r.seconds * 1e3, '.1f')} | "
            f"{_fmt(time_ratio, '.2f')} | {_fmt(r.peak_mb, '.1f')} | {_fmt(mem_ratio, '.2f')} |"
        )
    return "\n".join(rows)


def format_peer_table(results: list[SpeedResult]) -> str:
    """Markdown table: each peer baseline beside its attnzoo mechanism, with the speed-up."""
    by_cell = {(r.name, r.length): r for r in results}
    rows = [
        "| attnzoo | peer | L | attnzoo ms | peer ms | speed-up | attnzoo MB | peer MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.name not in PEERS:
            continue
        ours = by_cell.get((PEERS[r.name].mechanism, r.length))
        if ours is None:
            continue
        speedup = None
        if ours.seconds and r.seconds:
            speedup = r.seconds / ours.seconds
        peer_ms = f"error: {r.error}" if r.error else _fmt(r.seconds and r.seconds * 1e3, ".1f")
        rows.append(
            f"| {ours.name} | {r.name} | {r.length} | "
            f"{_fmt(ours.seconds and ours.seconds * 1e3, '.1f')} | {peer_ms} | "
            f"{_fmt(speedup, '.2f')}x | {_fmt(ours.peak_mb, '.1f')} | {_fmt(r.peak_mb, '.1f')} |"
        )
    return "\n".join(rows)


def dense_notes(results: list[SpeedResult]) -> list[str]:
    """One line per cell that ran plain dense SDPA instead of its pattern (see ``note``)."""
    return [
        f"note: {r.name} at L={r.length} ran dense SDPA, not its sparse pattern ({r.note}): "
        "its time and memory are those of dense attention"
        for r in results
        if r.note
    ]


def failed_cells(results: list[SpeedResult]) -> list[str]:
    """``"name L=..: error"`` for every cell that failed; ``bench speed`` exits 1 if any."""
    return [f"{r.name} L={r.length}: {r.error}" for r in results if r.error]


def write_json(path: str | Path, config: SpeedConfig, results: list[SpeedResult]) -> None:
    """Write config and results atomically (temporary file, then rename)."""
    payload = {"config": asdict(config), "results": [asdict(r) for r in results]}
    write_json_atomic(path, payload)


if __name__ == "__main__":  # worker entry point: one measurement, JSON on the last line
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
