"""``attnzoo arena``: every (task, mechanism, seed) run of a preset, then the efficiency sweep.

Results go to ``--out`` (default ``arena-results/``):

- ``arena.json``: the configuration (preset and overrides) the folder belongs to;
- ``results.jsonl``: one record per run, rewritten atomically after every run;
- ``efficiency.json``: the LRA Table 2 sweep (training steps/s and peak memory per length);
- ``report.md`` and ``bubble.png`` (:mod:`attnzoo.arena.report`), refreshed after every run, so
  that Ctrl-C (which checkpoints the current run and stops) leaves a valid partial report;
- ``runs/<task>/<mechanism>/seed<k>/``: each run's checkpoints, for ``--resume``.

Under ``torchrun`` every process trains the same run data-parallel and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import attnzoo
from attnzoo.arena.io import write_json_atomic
from attnzoo.arena.presets import PRESETS, Preset, mechanism_options
from attnzoo.arena.train import RunAborted, RunSpec, train_run

__all__ = ["ArenaConfig", "ArenaError", "default_mechanisms", "plan", "run_arena"]


class ArenaError(ValueError):
    """A user error of the arena: the message names what is wrong and the fix."""


def default_mechanisms() -> list[str]:
    """Every registered sequence and efficient mechanism."""
    return attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")


@dataclass
class ArenaConfig:
    """What one ``attnzoo arena`` call does (the CLI flags)."""

    preset: str = "quick"
    out: str = "arena-results"
    tasks: list[str] | None = None
    mechanisms: list[str] | None = None
    seeds: list[int] | None = None
    steps: int | None = None
    device: str = "cpu"
    resume: bool = False
    efficiency: bool = True
    data_dir: str | None = None
    cache_dir: str | None = None
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self, preset: Preset) -> dict[str, Any]:
        """What must match for two calls to share a results folder.

        Individual runs are compared by their full spec: with ``--resume`` a finished run is
        skipped only if its recorded spec equals the planned one (a preset whose settings
        changed since re-runs the changed runs).
        """
        return {"preset": preset.name, "steps": self.steps, "data_dir": self.data_dir}


def _close(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def resolve(config: ArenaConfig) -> tuple[Preset, list[str], list[str], list[int]]:
    """The preset, tasks, mechanisms and seeds of ``config``, validated."""
    if config.preset not in PRESETS:
        raise ArenaError(
            f"unknown preset {config.preset!r}.{_close(config.preset, list(PRESETS))} "
            f"Choose one of {list(PRESETS)}."
        )
    preset = PRESETS[config.preset]()
    tasks = config.tasks or list(preset.tasks)
    for task in tasks:
        if task not in preset.tasks:
            raise ArenaError(
                f"unknown task {task!r}.{_close(task, list(preset.tasks))} "
                f"The arena's tasks are {list(preset.tasks)}."
            )
    known = default_mechanisms()
    mechanisms = (
        config.mechanisms or preset.mechanisms or [m for m in known if m not in preset.exclude]
    )
    for name in mechanisms:
        if name not in known:
            raise ArenaError(
                f"unknown mechanism {name!r}.{_close(name, known)} The arena runs sequence and "
                "efficient mechanisms: see attnzoo list --family efficient."
            )
    seeds = config.seeds or preset.seeds
    if config.steps is not None and config.steps < 1:
        raise ArenaError(f"--steps must be >= 1, got {config.steps}")
    return preset, tasks, mechanisms, seeds


def plan(config: ArenaConfig) -> list[RunSpec]:
    """Every run of ``config``, in order (task, then mechanism, then seed)."""
    preset, tasks, mechanisms, seeds = resolve(config)
    specs = []
    for task_name in tasks:
        entry = preset.tasks[task_name]
        train = entry.train if config.steps is None else replace(entry.train, steps=config.steps)
        if train.eval_every > train.steps:
            train = replace(train, eval_every=train.steps)
        length = _task_length(task_name, entry.options)
        for mechanism in mechanisms:
            options = mechanism_options(mechanism, length, paper=preset.paper_options)
            for seed in seeds:
                specs.append(
                    RunSpec(
                        task_name,
                        mechanism,
                        seed,
                        options,
                        replace(entry.model),
                        train,
                        task_options=dict(entry.options),
                    )
                )
    return specs


def _task_length(name: str, options: dict[str, Any]) -> int:
    if "max_length" in options:
        return int(options["max_length"])
    if "resolution" in options:
        return int(options["resolution"]) ** 2
    if "size" in options:
        return int(options["size"]) ** 2
    return 1024


def _git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` (one JSON object per line); a bad line is an error."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ArenaError(
                f"{path} line {number} is not a JSON record ({error.msg}); the file was edited "
                "or damaged: fix or remove that line"
            ) from None
    return records


def write_results(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite ``results.jsonl`` atomically."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
        tmp = f.name
    os.replace(tmp, path)


class _Progress:
    """One status line on stderr: run i/n, task, mechanism, step, loss, ETA."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.started = time.perf_counter()
        self.done_runs = 0
        self.label = ""
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.last = 0.0

    def start(self, index: int, spec: RunSpec) -> None:
        self.label = f"[{index}/{self.total}] {spec.task} {spec.mechanism} seed {spec.seed}"
        self.run_started = time.perf_counter()

    def step(self, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5 and info["step"] != info["steps"]:
            return
        self.last = now
        run_eta = (now - self.run_started) / info["step"] * (info["steps"] - info["step"])
        line = (
            f"{self.label}  step {info['step']}/{info['steps']}  loss {info['loss']:.3f}  "
            f"ETA run {run_eta:.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        elif info["step"] == info["steps"]:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, record: dict[str, Any], remaining: int) -> None:
        if self.tty:
            self.stream.write("\n")
        self.done_runs += 1
        accuracy = record.get("test_acc")
        shown = "—" if accuracy is None else f"{accuracy:.1%}"
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done_runs * remaining
        self.stream.write(
            f"{self.label}: {record['status']}, test {shown}  "
            f"[{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]\n"
        )
        self.stream.flush()


def _init_distributed(device: str) -> tuple[int, int, bool]:
    """``(rank, world size, whether this call created the process group)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    created = not torch.distributed.is_initialized()
    if created:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), created


def _check_folder(out: Path, config: ArenaConfig, preset: Preset) -> list[dict[str, Any]]:
    manifest = out / "arena.json"
    identity = json.loads(json.dumps(config.identity(preset)))
    records = read_results(out / "results.jsonl")
    if manifest.is_file():
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if saved.get("identity") != identity:
            theirs = saved.get("identity", {})
            raise ArenaError(
                f"{out} holds results of another configuration (preset "
                f"{theirs.get('preset')!r}, steps {theirs.get('steps')}, data_dir "
                f"{theirs.get('data_dir')!r}); use another --out, or delete the folder to "
                "start again"
            )
        if records and not config.resume:
            raise ArenaError(
                f"{out} already holds {len(records)} results of this configuration; pass "
                "--resume to skip the finished runs and continue, or use another --out"
            )
    elif config.resume:
        raise ArenaError(f"nothing to resume: {out} holds no arena run (no arena.json)")
    return records


def run_arena(config: ArenaConfig, *, stream=None) -> dict[str, Any]:
    """Run ``config``; returns ``{"records", "efficiency", "report", "interrupted"}``.

    Raises:
        ArenaError: unknown names, a folder of another configuration, nothing to resume.
    """
    from attnzoo.arena.report import write_report

    preset, _, mechanisms, _ = resolve(config)
    specs = plan(config)
    rank, world, created_group = _init_distributed(config.device)
    main = rank == 0
    out = Path(config.out)
    records = _check_folder(out, config, preset)
    if config.threads:
        torch.set_num_threads(config.threads)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"identity": config.identity(preset), "config": asdict(config)}
        write_json_atomic(out / "arena.json", manifest)
    planned = {(x.task, x.mechanism, x.seed): x.as_dict() for x in specs}
    finished = {
        (r["task"], r["mechanism"], r["seed"])
        for r in records
        if r["status"] == "done"
        and r.get("spec") == planned.get((r["task"], r["mechanism"], r["seed"]))
    }
    stop = {"flag": False}
    previous = None

    def on_sigint(signum, frame):
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True

    if main and hasattr(signal, "SIGINT"):
        previous = signal.signal(signal.SIGINT, on_sigint)
    progress = _Progress(len(specs), stream)
    task_cache: dict[str, Any] = {}
    meta = {"torch": torch.__version__, "device": config.device, "git": _git_revision()}
    try:
        for index, spec in enumerate(specs, 1):
            if stop["flag"]:
                break
            if (spec.task, spec.mechanism, spec.seed) in finished:
                continue
            if (spec.task, spec.seed) not in task_cache:
                task_cache[(spec.task, spec.seed)] = _build_task(config, preset, spec)
            task = task_cache[(spec.task, spec.seed)]
            progress.start(index, spec)
            run_dir = out / "runs" / spec.task / spec.mechanism / f"seed{spec.seed}"
            _drop_stale_checkpoints(run_dir, spec)
            started = time.perf_counter()
            try:
                record = train_run(
                    spec,
                    task,
                    run_dir=run_dir,
                    device=config.device,
                    progress=progress.step,
                    should_stop=lambda: stop["flag"],
                )
            except (RunAborted, RuntimeError, ValueError, NotImplementedError) as error:
                record = {
                    "task": spec.task,
                    "mechanism": spec.mechanism,
                    "options": spec.attention_kwargs,
                    "seed": spec.seed,
                    "status": f"failed: {type(error).__name__}: {error}".splitlines()[0],
                    "spec": spec.as_dict(),
                    "majority": task.majority("test"),
                }
            record.update(meta, preset=preset.name, wall_seconds=time.perf_counter() - started)
            record["world_size"] = world
            progress.finish(record, remaining=len(specs) - index)
            if main:
                records = [
                    r
                    for r in records
                    if (r["task"], r["mechanism"], r["seed"])
                    != (spec.task, spec.mechanism, spec.seed)
                ]
                records.append(record)
                write_results(out / "results.jsonl", records)
                write_report(out, records, _read_efficiency(out), preset)
        efficiency = _read_efficiency(out)
        if config.efficiency and preset.efficiency is not None and not stop["flag"] and main:
            efficiency = _run_efficiency(config, preset, mechanisms, out, progress.stream)
        report = write_report(out, records, efficiency, preset) if main else None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if created_group and torch.distributed.is_initialized():
            # a group we created: every rank leaves together and the gloo/NCCL threads stop
            # before the interpreter does (else a rank can abort at exit: "terminate called
            # without an active exception", about one torchrun run in four)
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    return {
        "records": records,
        "efficiency": efficiency,
        "report": report,
        "interrupted": stop["flag"],
    }


def _drop_stale_checkpoints(run_dir: Path, spec: RunSpec) -> None:
    """Remove the checkpoints of an earlier version of this run (another spec), if any."""
    from attnzoo.arena.checkpoint import CheckpointError, load_checkpoint

    last = run_dir / "last.safetensors"
    if not last.is_file():
        return
    try:
        _, meta = load_checkpoint(last)
    except CheckpointError:
        return  # reported by the run itself, with the file's name
    if meta.get("spec") != spec.as_dict():
        for name in ("last.safetensors", "best.safetensors"):
            (run_dir / name).unlink(missing_ok=True)


def _build_task(config: ArenaConfig, preset: Preset, spec: RunSpec):
    """The task object of ``spec`` with its data built (or read from the cache / data_dir)."""
    data_dir = None if config.data_dir is None else Path(config.data_dir) / spec.task
    if data_dir is not None and not data_dir.is_dir():
        raise ArenaError(
            f"--data-dir {config.data_dir!r} has no folder {spec.task!r}: put the original LRA "
            f"files of each task in <data-dir>/<task>/ (see docs/arena.md)"
        )
    try:
        task = attnzoo.create(
            spec.task,
            seed=spec.seed,
            cache_dir=config.cache_dir,
            data_dir=data_dir,
            **preset.tasks[spec.task].options,
        )
        task.splits()
    except (ValueError, TypeError, ImportError, OSError, NotImplementedError) as error:
        raise ArenaError(f"task {spec.task!r}: {error}") from None
    return task


def _read_efficiency(out: Path) -> dict[str, Any] | None:
    path = out / "efficiency.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _run_efficiency(
    config: ArenaConfig, preset: Preset, mechanisms: list[str], out: Path, stream
) -> dict[str, Any]:
    from attnzoo.arena.efficiency import TrainStepConfig, run_train_steps

    sweep = preset.efficiency
    names = ["vanilla", *[m for m in mechanisms if m != "vanilla"]]
    if "mha" not in names:
        names.insert(1, "mha")
    paper = preset.paper_options or min(sweep.lengths) >= 1024
    options = {
        name: {length: mechanism_options(name, length, paper=paper) for length in sweep.lengths}
        for name in names
    }
    step_config = TrainStepConfig(
        names=names,
        lengths=sweep.lengths,
        model=asdict(sweep.model),
        batch=sweep.batch,
        device=config.device,
        threads=config.threads or torch.get_num_threads(),
        repeats=sweep.repeats,
        warmup=sweep.warmup,
        options=options,
        isolate=sweep.isolate,
    )

    def progress(result):
        memory = "" if result.peak_mb is None else f", {result.peak_mb:.1f} MB"
        state = result.error or f"{result.seconds * 1e3:.1f} ms/step{memory}"
        stream.write(f"[efficiency] {result.name} L={result.length}: {state}\n")
        stream.flush()

    results = run_train_steps(step_config, progress=progress)
    payload = {
        "config": {**asdict(step_config), "options": {k: {} for k in names}},
        "model": asdict(sweep.model),
        "results": [asdict(r) for r in results],
        "torch": torch.__version__,
        "device": config.device,
    }
    write_json_atomic(out / "efficiency.json", payload)
    return payload
