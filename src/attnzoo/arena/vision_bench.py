"""``attnzoo bench vision``: parameters, FLOPs, latency and (optionally) accuracy of vision modules.

- parameters: ``sum(p.numel())`` of the module built with its defaults at ``channels``;
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one forward (it counts matrix products
  and convolutions, a multiply-add being 2 FLOPs; element-wise work is not counted);
- latency: median of ``repeats`` forward calls in ``eval()`` under ``torch.no_grad()`` on a
  ``(batch, channels, size, size)`` map, after one warm-up call;
- accuracy (``train=True``): a small CIFAR-style ResNet (``resnet_cifar``, one block per stage)
  with the module placed where its paper puts it, trained for a fixed budget on scikit-learn's
  bundled 8x8 handwritten digits (1,797 real images, no download), test accuracy averaged over
  seeds next to the plain network.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["VisionBenchConfig", "VisionResult", "format_vision_table", "run_vision"]


@dataclass
class VisionBenchConfig:
    """What ``bench vision`` measures."""

    names: list[str]
    channels: int = 256
    size: int = 56
    batch: int = 1
    threads: int = 2
    repeats: int = 5
    train: bool = False
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 8


@dataclass
class VisionResult:
    """One module: counts, timing, accuracy (mean, std over seeds) or the reason it is missing."""

    name: str
    params: int | None = None
    flops: int | None = None
    seconds: float | None = None
    accuracy: float | None = None
    accuracy_std: float | None = None
    error: str | None = None
    train_error: str | None = None


def _inputs(module, batch: int, size: int) -> tuple[torch.Tensor, ...]:
    widths = getattr(module, "input_channels", (module.channels,))
    return tuple(torch.randn(batch, c, size, size) for c in widths)


def profile(name: str, config: VisionBenchConfig) -> VisionResult:
    """Parameters, FLOPs and median latency of ``name`` at the configured size."""
    from torch.utils.flop_counter import FlopCounterMode

    import attnzoo

    module = attnzoo.create(name, config.channels).eval()
    inputs = _inputs(module, config.batch, config.size)
    params = sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            module(*inputs)
        times = []
        for _ in range(config.repeats):
            start = time.perf_counter()
            module(*inputs)
            times.append(time.perf_counter() - start)
    return VisionResult(name, params, counter.get_total_flops(), statistics.median(times))


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - sklearn is in the dev extra
        raise RuntimeError(
            "bench vision --train needs scikit-learn (pip install scikit-learn)"
        ) from error
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    split = int(0.7 * len(labels))
    train_idx, test_idx = order[:split], order[split:]
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def train_accuracy(name: str | None, seed: int, epochs: int, data=None) -> float:
    """Test accuracy of ``resnet_cifar`` (one block per stage) with ``name`` after ``epochs``."""
    import attnzoo

    x_train, y_train, x_test, y_test = data or _digits()
    torch.manual_seed(seed)
    model = attnzoo.create_model(
        "resnet_cifar", attention=name, in_chans=1, num_classes=10, depths=(1, 1, 1)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y_train), generator=shuffle).split(64):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(x_test).argmax(dim=1)
    return (predictions == y_test).float().mean().item()


def run_vision(config: VisionBenchConfig, progress=None) -> list[VisionResult]:
    """Profile (and optionally train) every module of ``config``; ``"plain"`` is the baseline."""
    torch.set_num_threads(config.threads)
    data = _digits() if config.train else None
    results = []
    names = (["plain"] if config.train else []) + list(config.names)
    for name in names:
        if name == "plain":
            result = VisionResult("plain")
        else:
            try:
                result = profile(name, config)
            except (ValueError, TypeError, NotImplementedError, RuntimeError) as error:
                result = VisionResult(name, error=f"{type(error).__name__}: {error}")
        if config.train:
            try:
                scores = [
                    train_accuracy(None if name == "plain" else name, seed, config.epochs, data)
                    for seed in config.seeds
                ]
                result.accuracy = statistics.mean(scores)
                result.accuracy_std = statistics.pstdev(scores)
            except (ValueError, TypeError, NotImplementedError, RuntimeError) as error:
                result.train_error = f"{type(error).__name__}: {error}".splitlines()[0]
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def format_vision_table(results: list[VisionResult], config: VisionBenchConfig) -> str:
    """Markdown table; accuracy columns only when trained."""
    plain = next((r for r in results if r.name == "plain"), None)
    head = "| module | params | MFLOPs | latency (ms) |"
    rule = "|---|---:|---:|---:|"
    if config.train:
        head += " accuracy (%) | vs plain |"
        rule += "---:|---:|"
    rows = [head, rule]
    for r in results:
        if r.error:
            rows.append(f"| {r.name} | error: {r.error} |" + " |" * (3 + 2 * config.train))
            continue
        cells = [r.name, "—", "—", "—"]
        if r.params is not None:
            cells = [r.name, f"{r.params:,}", f"{r.flops / 1e6:.3f}", f"{r.seconds * 1e3:.2f}"]
        if config.train:
            if r.accuracy is None:
                cells += [f"n/a ({r.train_error})", ""]
            else:
                delta = (
                    ""
                    if plain is None or plain.accuracy is None or r is plain
                    else (f"{100 * (r.accuracy - plain.accuracy):+.1f}")
                )
                cells += [f"{100 * r.accuracy:.1f} ± {100 * r.accuracy_std:.1f}", delta]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def as_dict(config: VisionBenchConfig, results: list[VisionResult]) -> dict[str, Any]:
    """JSON-ready payload."""
    return {"config": asdict(config), "results": [asdict(r) for r in results]}
