"""The arena's report: LRA Table 1 and Table 2 layouts, the published rows, a verdict, Figure 3.

:func:`write_report` turns ``results.jsonl`` records and the efficiency sweep into
``report.md`` (always valid, also for a partial run) and ``bubble.png`` (LRA Figure 3: x speed,
y average score, bubble area peak memory; our points beside the published ones).
"""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

import attnzoo
from attnzoo.arena.published import (
    LRA_MECHANISMS,
    LRA_TABLE1,
    LRA_TABLE2,
    LRA_TABLE2_BATCH,
    LRA_TABLE2_LENGTHS,
    LRA_TASKS,
)

__all__ = ["accuracy_table", "efficiency_tables", "verdict", "write_report"]

TASK_TITLES = {
    "listops": "ListOps",
    "text": "Text",
    "retrieval": "Retrieval",
    "image": "Image",
    "pathfinder": "Pathfinder",
}
MAJORITY_MARGIN = 0.02  # within 2 points of the majority class counts as "learned nothing"
FASTER = 1.1  # "faster than mha" needs a 10% margin: same-run timings vary by a few percent


def _done(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "done" and r.get("test_acc") is not None]


def scores(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{mechanism: {task: [test accuracy per seed]}}`` of the finished runs."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in _done(records):
        table.setdefault(r["mechanism"], {}).setdefault(r["task"], []).append(r["test_acc"])
    return table


def _cell(values: list[float] | None) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    if len(values) > 1:
        return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"
    return f"{mean:.2f}"


def _average(per_task: dict[str, list[float]], tasks: list[str]) -> float | None:
    if not tasks or any(not per_task.get(t) for t in tasks):
        return None
    return statistics.fmean(100 * statistics.fmean(per_task[t]) for t in tasks)


def accuracy_table(records: list[dict[str, Any]], tasks: list[str]) -> str:
    """Markdown: our test accuracies (LRA Table 1 layout), majority class, published rows."""
    ours = scores(records)
    head = " | ".join(TASK_TITLES.get(t, t) for t in tasks)
    lines = [f"| Model | {head} | Avg |", "|---" + "|---:" * (len(tasks) + 1) + "|"]
    for mechanism in sorted(ours, key=lambda m: -(_average(ours[m], tasks) or -1)):
        cells = " | ".join(_cell(ours[mechanism].get(t)) for t in tasks)
        avg = _average(ours[mechanism], tasks)
        lines.append(f"| `{mechanism}` | {cells} | {'—' if avg is None else f'{avg:.2f}'} |")
    majority: dict[str, list[float]] = {}
    for r in records:
        if r.get("majority") is not None:
            majority.setdefault(r["task"], []).append(r["majority"])
    cells = " | ".join(_cell(majority.get(t, [])[:1]) for t in tasks)
    lines.append(f"| *majority class* | {cells} | |")
    lines += [
        "",
        "Published, LRA Table 1 (Tay et al. 2021; full lengths, TPU; averages recomputed, the "
        "paper's printed average in brackets):",
        "",
        "| Model (published) | ListOps | Text | Retrieval | Image | Pathfinder | Avg |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, (row, printed) in LRA_TABLE1.items():
        avg = statistics.fmean(row)
        cells = " | ".join(f"{v:.2f}" for v in row)
        lines.append(f"| {model} (`{LRA_MECHANISMS[model]}`) | {cells} | {avg:.2f} ({printed}) |")
    return "\n".join(lines)


def _efficiency_cells(efficiency: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["name"], r["length"]): r for r in efficiency.get("results", [])}


def efficiency_tables(efficiency: dict[str, Any] | None) -> str:
    """Markdown: training steps/s and peak memory per length (LRA Table 2 layout) + ratios."""
    if not efficiency or not efficiency.get("results"):
        return "No efficiency sweep in this run (`--no-efficiency`, or it was interrupted)."
    cells = _efficiency_cells(efficiency)
    lengths = sorted({length for _, length in cells})
    names = list(dict.fromkeys(name for name, _ in cells))
    config = efficiency.get("config", {})
    batch = config.get("batch", "?")
    head = " | ".join(f"{_k(n)}" for n in lengths)
    lines = [
        f"Training steps per second (forward + backward + AdamW) of the text-task model "
        f"({_model_text(efficiency.get('model', {}))}), batch {batch}, "
        f"{efficiency.get('device', 'cpu')}, {config.get('threads', '?')} threads; in brackets "
        "the speed-up over `vanilla` (dense attention with the scores materialised, as LRA's "
        "2020 Transformer) and, after the slash, over attnzoo's fused `mha` (SDPA):",
        "",
        f"| Model | {head} |",
        "|---" + "|---:" * len(lengths) + "|",
    ]
    for name in names:
        row = []
        for length in lengths:
            cell, base, fused = (cells.get((k, length)) for k in (name, "vanilla", "mha"))
            row.append(_speed(cell, base, fused))
        lines.append(f"| `{name}` | {' | '.join(row)} |")
    lines += [
        "",
        "Peak memory (MB above the process's resting level) and, in brackets, the ratio to "
        "`vanilla` / to `mha`:",
        "",
        f"| Model | {head} |",
        "|---" + "|---:" * len(lengths) + "|",
    ]
    for name in names:
        row = []
        for length in lengths:
            cell, base, fused = (cells.get((k, length)) for k in (name, "vanilla", "mha"))
            row.append(_memory(cell, base, fused))
        lines.append(f"| `{name}` | {' | '.join(row)} |")
    lines += [
        "",
        f"Published, LRA Table 2 (steps/s at batch {LRA_TABLE2_BATCH} on a 4x4 TPU v3, peak GB; "
        "Sparse Transformer and Longformer were not benchmarked):",
        "",
        "| Model (published) | "
        + " | ".join(_k(n) for n in LRA_TABLE2_LENGTHS)
        + " | "
        + " | ".join(f"GB {_k(n)}" for n in LRA_TABLE2_LENGTHS)
        + " |",
        "|---" + "|---:" * 8 + "|",
    ]
    base_speed = LRA_TABLE2["Transformer"][0]
    for model, (speed, memory) in LRA_TABLE2.items():
        speeds = " | ".join(f"{s} ({s / b:.1f}x)" for s, b in zip(speed, base_speed, strict=True))
        lines.append(f"| {model} | {speeds} | {' | '.join(str(m) for m in memory)} |")
    return "\n".join(lines)


def _k(length: int) -> str:
    return f"{length // 1024}K" if length % 1024 == 0 else str(length)


def _model_text(model: dict[str, Any]) -> str:
    if not model:
        return "?"
    return (
        f"{model.get('num_layers')} layers, width {model.get('dim')}, {model.get('num_heads')} "
        f"heads, FFN {model.get('ffn_dim')}"
    )


def _speed(cell, base, fused) -> str:
    if cell is None:
        return "—"
    if cell.get("error") or not cell.get("seconds"):
        return f"error: {cell.get('error', '?')}"[:60]
    rate = 1.0 / cell["seconds"]
    ratios = [
        f"{other['seconds'] / cell['seconds']:.2f}x" if other and other.get("seconds") else "—"
        for other in (base, fused)
    ]
    return f"{rate:.2f} ({ratios[0]} / {ratios[1]})"


def _memory(cell, base, fused) -> str:
    if cell is None or cell.get("peak_mb") is None or cell.get("error"):
        return "—"
    ratios = [
        f"{cell['peak_mb'] / other['peak_mb']:.2f}" if other and other.get("peak_mb") else "—"
        for other in (base, fused)
    ]
    shown = f"{cell['peak_mb']:.0f}" if cell["peak_mb"] >= 10 else f"{cell['peak_mb']:.2f}"
    return f"{shown} ({ratios[0]} / {ratios[1]})"


def verdict(
    records: list[dict[str, Any]], efficiency: dict[str, Any] | None, tasks: list[str]
) -> str:
    """A few plain sentences: who stays at majority level, who pays off from which length."""
    lines = []
    ours = scores(records)
    majority = {r["task"]: r["majority"] for r in records if r.get("majority") is not None}
    for task in tasks:
        if task not in majority:
            continue
        stuck = sorted(
            m
            for m, per in ours.items()
            if per.get(task) and statistics.fmean(per[task]) <= majority[task] + MAJORITY_MARGIN
        )
        trained = sum(1 for per in ours.values() if per.get(task))
        if not trained:
            continue
        title = TASK_TITLES.get(task, task)
        if stuck:
            lines.append(
                f"- **{title}**: {len(stuck)} of {trained} mechanisms stay at the majority-class "
                f"level ({100 * majority[task]:.1f}%, within {100 * MAJORITY_MARGIN:.0f} "
                f"points): {', '.join(f'`{m}`' for m in stuck)}."
            )
        else:
            lines.append(f"- **{title}**: every mechanism learned more than the majority class.")
        best = max(
            (m for m, per in ours.items() if per.get(task)),
            key=lambda m: statistics.fmean(ours[m][task]),
        )
        lines[-1] += f" Best: `{best}` ({100 * statistics.fmean(ours[best][task]):.1f}%)."
    if efficiency and efficiency.get("results"):
        cells = _efficiency_cells(efficiency)
        lengths = sorted({length for _, length in cells})
        names = [n for n in dict.fromkeys(n for n, _ in cells) if n not in ("vanilla", "mha")]
        pays, never = [], []
        for name in names:
            first = next(
                (
                    length
                    for length in lengths
                    if (c := cells.get((name, length)))
                    and (f := cells.get(("mha", length)))
                    and c.get("seconds")
                    and f.get("seconds")
                    and c["seconds"] * FASTER < f["seconds"]
                ),
                None,
            )
            (pays if first else never).append((name, first))
        if pays:
            text = ", ".join(f"`{n}` from {_k(first)}" for n, first in pays)
            lines.append(f"- **Faster than fused `mha` to train** (by 10% or more): {text}.")
        longest = lengths[-1]
        versus = []
        for model, (speed, memory) in LRA_TABLE2.items():
            name = LRA_MECHANISMS[model]
            cell, base = cells.get((name, longest)), cells.get(("vanilla", longest))
            if name == "mha" or not cell or not base or not cell.get("seconds"):
                continue
            ours_speed = base["seconds"] / cell["seconds"]
            lra_speed = speed[-1] / LRA_TABLE2["Transformer"][0][-1]
            text = f"`{name}` {ours_speed:.1f}x (LRA {lra_speed:.1f}x"
            if cell.get("peak_mb") and base.get("peak_mb"):
                lra_memory = memory[-1] / LRA_TABLE2["Transformer"][1][-1]
                text += f"; memory {cell['peak_mb'] / base['peak_mb']:.2f} vs {lra_memory:.2f}"
            versus.append(text + ")")
        if versus:
            lines.append(
                f"- **Against LRA's vanilla Transformer** (scores materialised) at {_k(longest)}"
                f" — training speed-up (LRA Table 2 at 4K; memory ratio ours vs LRA's): "
                + ", ".join(versus)
                + "."
            )
        lines += _memory_verdict(cells, longest)
        if never:
            lines.append(
                "- **Never faster than fused `mha` up to "
                f"{_k(lengths[-1])}**: {', '.join(f'`{n}`' for n, _ in never)} — at these "
                "lengths dense attention with a fused kernel is the better choice on this "
                "hardware."
            )
    return "\n".join(lines) if lines else "No finished runs yet."


def _memory_verdict(cells: dict, length: int) -> list[str]:
    """Which memory ratios to ``vanilla`` are no worse than LRA Table 2's, and the floor.

    The floor is the lowest ratio of a mechanism without attention scores (registry tag
    ``attention_free``, e.g. ``fnet``): embeddings, feed-forward activations and optimiser
    state alone. A published ratio under it cannot be reached by any mechanism on this model.
    """
    base = cells.get(("vanilla", length))
    if not base or not base.get("peak_mb"):
        return []
    attention_free = set(attnzoo.list_names(tags=("attention_free",)))
    free = [
        (cell["peak_mb"] / base["peak_mb"], name)
        for (name, at), cell in cells.items()
        if at == length and cell.get("peak_mb") and name in attention_free
    ]
    floor = min(free) if free else None
    within, above, below = [], [], []
    for model, (_, memory) in LRA_TABLE2.items():
        name = LRA_MECHANISMS[model]
        cell = cells.get((name, length))
        if name == "mha" or not cell or not cell.get("peak_mb"):
            continue
        ours = cell["peak_mb"] / base["peak_mb"]
        lra = memory[-1] / LRA_TABLE2["Transformer"][1][-1]
        text = f"`{name}` {ours:.2f} vs {lra:.2f}"
        if ours <= lra + 0.005:
            within.append(text)
        elif floor is not None and lra < floor[0]:
            below.append(text)
        else:
            above.append(text)
    lines = [f"- **Memory against LRA's ratios** at {_k(length)} (ours vs LRA's, to `vanilla`):"]
    lines[0] += f" no worse for {', '.join(within) or 'none'}"
    if above:
        lines[0] += f"; worse for {', '.join(above)} (the activations they keep for backward)"
    if below and floor is not None:
        lines[0] += (
            f"; out of reach for {', '.join(below)}: LRA's ratio is under this model's floor, "
            f"{floor[0]:.2f} — the memory of `{floor[1]}`, which computes no attention scores "
            "at all (embeddings, feed-forward activations and optimiser state)"
        )
    lines[0] += "."
    return lines


def _machine() -> str:
    import torch

    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cpus} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def write_report(
    out: str | os.PathLike,
    records: list[dict[str, Any]],
    efficiency: dict[str, Any] | None,
    preset: Any,
) -> Path:
    """Write ``report.md`` (and ``bubble.png`` when matplotlib is installed); returns the path."""
    from attnzoo.arena.io import write_text_atomic

    out = Path(out)
    tasks = [t for t in LRA_TASKS if t in {r["task"] for r in records}] or list(LRA_TASKS)
    finished = len(_done(records))
    failed = [r for r in records if str(r.get("status", "")).startswith("failed")]
    sizes = []
    for name, entry in getattr(preset, "tasks", {}).items():
        if name in tasks:
            shown = {k: v for k, v in entry.options.items() if not k.startswith("n_")}
            sizes.append(
                f"`{name}` {shown}, {entry.options.get('n_train')} train / "
                f"{entry.options.get('n_test')} test, {entry.train.steps} steps of "
                f"{entry.train.batch_size}, model width {entry.model.dim} x "
                f"{entry.model.num_layers} layers"
            )
    text = [
        f"# Arena report — preset `{getattr(preset, 'name', '?')}`",
        "",
        f"{finished} finished runs, {len(failed)} failed, of {len(records)} recorded. "
        f"Machine: {_machine()}.",
        "",
        "Tasks of this run (reduced from LRA's where the preset says so):",
        "",
        *[f"- {s}" for s in sizes],
        "",
        *[
            f"Not in this preset's default selection: `{name}` — {why}."
            for name, why in getattr(preset, "exclude", {}).items()
            if name not in {r["mechanism"] for r in records}
        ],
        "",
        "## Verdict",
        "",
        verdict(records, efficiency, tasks),
        "",
        "## Accuracy (LRA Table 1 layout, test accuracy %, best-validation checkpoint)",
        "",
        accuracy_table(records, tasks),
        "",
        "## Efficiency (LRA Table 2 layout)",
        "",
        efficiency_tables(efficiency),
        "",
    ]
    if failed:
        text += ["## Failed runs", ""]
        text += [f"- {r['task']} / `{r['mechanism']}`: {r['status']}" for r in failed]
        text += [""]
    chart = _bubble(out, records, efficiency, tasks)
    if chart is not None:
        text += ["## Score, speed and memory (LRA Figure 3)", "", f"![bubble chart]({chart})", ""]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(text))
    return path


def _bubble(out: Path, records, efficiency, tasks) -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from attnzoo.arena.bubble import draw_bubble

    ours = scores(records)
    points = []
    cells = _efficiency_cells(efficiency or {})
    lengths = sorted({length for _, length in cells})
    batch = (efficiency or {}).get("config", {}).get("batch", 1)
    for mechanism, per in ours.items():
        avg = _average(per, tasks)
        cell = cells.get((mechanism, lengths[-1])) if lengths else None
        if avg is None or not cell or not cell.get("seconds"):
            continue
        points.append((mechanism, batch / cell["seconds"], avg, cell.get("peak_mb") or 0.0))
    published = []
    for model, (speed, memory) in LRA_TABLE2.items():
        row, _ = LRA_TABLE1[model]
        published.append(
            (
                LRA_MECHANISMS[model],
                speed[-1] * LRA_TABLE2_BATCH,
                statistics.fmean(row),
                memory[-1] * 1024,
            )
        )
    if not points and not published:
        return None
    draw_bubble(
        points,
        published,
        out / "bubble.png",
        length=_k(lengths[-1]) if lengths else "?",
    )
    return "bubble.png"
