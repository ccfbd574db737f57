"""One arena run: train an ``encoder_classifier`` with one mechanism on one task, then test it.

AdamW with linear warm-up and decay, gradient clipping, evaluation on the validation split every
``eval_every`` steps, the best-validation weights tested at the end. Everything that determines
the run is a function of its configuration and seed — the data order of step ``s`` is a seeded
permutation of its epoch, the learning rate a function of ``s`` — so a run resumed from its
checkpoint continues bit-exactly (same parameters, optimiser state, schedule, RNG and data order
as an uninterrupted run). A non-finite loss skips the step; more than ``max_nonfinite`` of them
abort the run with a clear message; a non-finite checkpoint is never written.

Several processes (``torchrun``) train data-parallel with PyTorch's DDP (gloo on CPU, NCCL on
GPU): each rank takes its slice of every global batch, gradients are averaged, evaluation counts
are summed, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.arena.checkpoint import load_checkpoint, save_checkpoint
from attnzoo.arena.tasks.base import Split, Task

__all__ = ["ModelConfig", "RunAborted", "RunSpec", "TrainConfig", "train_run"]

SCHEDULES = ("cosine", "linear", "rsqrt", "constant")


@dataclass
class ModelConfig:
    """The ``encoder_classifier`` of a run (defaults: the small LRA re-implementation model)."""

    dim: int = 64
    num_heads: int = 2
    num_layers: int = 2
    ffn_dim: int = 128
    pooling: str = "mean"
    pos_encoding: str = "learned"
    dropout: float = 0.1
    attn_dropout: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation of a run."""

    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    schedule: str = "cosine"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    clip: float = 1.0
    eval_every: int = 100
    eval_examples: int | None = None
    max_nonfinite: int = 10


@dataclass
class RunSpec:
    """Everything that defines one run (its record names these fields)."""

    task: str
    mechanism: str
    seed: int = 0
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # the task's constructor options: part of a run's identity (other data, another run)
    task_options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """A readable identifier, unique within one arena configuration."""
        return f"{self.task}/{self.mechanism}/seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        """The spec as JSON-compatible data (tuples become lists, as after a JSON round trip)."""
        return json.loads(json.dumps(asdict(self)))


class RunAborted(RuntimeError):
    """A run stopped for a reason worth reporting (too many non-finite losses)."""


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of (0-based) ``step``: linear warm-up, then the configured decay."""
    warm = max(config.warmup, 1)
    if step < config.warmup:
        return config.lr * (step + 1) / warm
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "rsqrt":
        return config.lr * math.sqrt(warm / (step + 1))
    progress = (step - config.warmup) / max(config.steps - config.warmup, 1)
    if config.schedule == "linear":
        return config.lr * max(0.0, 1.0 - progress)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def batch_indices(step: int, count: int, batch: int, seed: int) -> torch.Tensor:
    """Example indices of ``step``: a seeded permutation per epoch, whole batches only."""
    per_epoch = max(count // batch, 1)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch : (position + 1) * batch]


def build_model(spec: RunSpec, task: Task) -> torch.nn.Module:
    """The ``encoder_classifier`` of ``spec`` for ``task`` (refuses mechanisms that do not fit)."""
    cls = attnzoo.info(spec.mechanism).obj
    options = dict(spec.attention_kwargs)
    prefix = 1 if spec.model.pooling == "cls" else 0
    limit = options.get("seq_len")
    if getattr(cls, "fixed_length", False) and limit is not None and limit < task.max_len + prefix:
        raise ValueError(
            f"mechanism {spec.mechanism!r} is fixed-length with seq_len={limit}, shorter than "
            f"task {task.name!r}'s {task.max_len + prefix} tokens; raise seq_len or drop it"
        )
    return attnzoo.create_model(
        "encoder_classifier",
        vocab_size=task.vocab_size,
        num_classes=task.num_classes,
        max_len=task.max_len,
        dual=task.dual,
        pad_id=task.pad_id,
        attention=spec.mechanism,
        attention_kwargs=options,
        **asdict(spec.model),
    )


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist() -> _Dist:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return _Dist(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return _Dist()


def _forward(model, split: Split, index: torch.Tensor, pad_id: int, device) -> tuple:
    inputs, labels, second = split.batch(index, pad_id)
    inputs, labels = inputs.to(device), labels.to(device)
    logits = model(inputs) if second is None else model(inputs, second.to(device))
    return logits, labels


@torch.no_grad()
def evaluate(model, split: Split, *, pad_id: int, batch: int, device, limit=None) -> float:
    """Accuracy on ``split`` (its first ``limit`` examples); summed over ranks under DDP."""
    dist = _dist()
    was = model.training
    model.eval()
    count = len(split) if limit is None else min(limit, len(split))
    mine = torch.arange(dist.rank, count, dist.world)
    correct = torch.zeros((), dtype=torch.long)
    for chunk in mine.split(batch):
        logits, labels = _forward(model, split, chunk, pad_id, device)
        correct += (logits.argmax(-1) == labels).sum().cpu()
    if dist.world > 1:
        torch.distributed.all_reduce(correct)
    model.train(was)
    return correct.item() / max(count, 1)


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _state(model, optimizer, meta: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    packed = optimizer.state_dict()
    for index, state in packed["state"].items():
        for name, value in state.items():
            tensors[f"optim/{index}/{name}"] = torch.as_tensor(value)
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {**meta, "param_groups": packed["param_groups"]}
    return tensors, meta


def _restore(model, optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])


def train_run(
    spec: RunSpec,
    task: Task,
    *,
    run_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    resume: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train and test one run; returns its record (see the module docstring).

    Args:
        spec: The run.
        task: The task object (its splits are built or read from the cache).
        run_dir: Folder of the run's checkpoints (``last.safetensors``, ``best.safetensors``);
            None keeps nothing on disk and cannot resume.
        device: ``"cpu"`` or ``"cuda[:i]"``.
        resume: Continue from ``run_dir/last.safetensors`` when it exists.
        progress: Called after every step with ``{"step", "steps", "loss", "lr"}``.
        should_stop: Polled between steps; True saves a checkpoint and returns a record with
            ``status="interrupted"`` (Ctrl-C in the arena).

    Returns:
        The run's record: configuration, accuracies, speed, memory, status.
    """
    dist = _dist()
    splits = task.splits()
    train, val, test = splits["train"], splits["val"], splits["test"]
    config = spec.train
    torch.manual_seed(spec.seed)
    model = build_model(spec, task).to(device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "pos" not in n]
    other = [p for n, p in model.named_parameters() if p.dim() <= 1 or "pos" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=tuple(config.betas),
        eps=config.eps,
    )
    run_dir = None if run_dir is None else Path(run_dir)
    last = None if run_dir is None else run_dir / "last.safetensors"
    best_path = None if run_dir is None else run_dir / "best.safetensors"
    meta: dict[str, Any] = {
        "spec": spec.as_dict(),
        "step": 0,
        "best_val": -1.0,
        "best_step": 0,
        "nonfinite": 0,
        "train_seconds": 0.0,
        "history": [],
    }
    if resume and last is not None and last.is_file():
        tensors, saved = load_checkpoint(last)
        if saved.get("spec") != spec.as_dict():
            raise ValueError(
                f"checkpoint {str(last)!r} belongs to another configuration of "
                f"{spec.key()}; delete {str(run_dir)!r} or use another --out"
            )
        _restore(model, optimizer, tensors, saved)
        meta = {k: v for k, v in saved.items() if k != "param_groups"}

    def checkpoint() -> None:
        if last is not None and dist.main:
            tensors, payload = _state(model, optimizer, meta)
            save_checkpoint(last, tensors, payload)

    best: dict[str, torch.Tensor] | None = None  # best-validation weights of this process
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    local = config.batch_size // dist.world
    net.train()
    status = "done"
    started = time.perf_counter()
    while meta["step"] < config.steps:
        if should_stop is not None and should_stop():
            status = "interrupted"
            break
        step = meta["step"]
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = batch_indices(step, len(train), config.batch_size, spec.seed)
        index = index[dist.rank * local : (dist.rank + 1) * local]
        logits, labels = _forward(net, train, index, task.pad_id, device)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        finite = torch.isfinite(loss.detach())
        if dist.world > 1:
            flag = finite.float()
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag > 0
        if bool(finite):
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
        else:
            meta["nonfinite"] += 1
            if meta["nonfinite"] > config.max_nonfinite:
                raise RunAborted(
                    f"{spec.key()}: {meta['nonfinite']} non-finite losses (more than "
                    f"max_nonfinite={config.max_nonfinite}) by step {step}; lower the learning "
                    "rate or check the mechanism's numerics"
                )
        meta["step"] = step + 1
        if progress is not None and dist.main:
            progress({"step": step + 1, "steps": config.steps, "loss": loss.item(), "lr": lr})
        if meta["step"] % config.eval_every == 0 or meta["step"] == config.steps:
            meta["train_seconds"] += time.perf_counter() - started
            accuracy = evaluate(
                model,
                val,
                pad_id=task.pad_id,
                batch=config.batch_size,
                device=device,
                limit=config.eval_examples,
            )
            meta["history"].append({"step": meta["step"], "val": accuracy, "loss": loss.item()})
            if accuracy > meta["best_val"]:  # the same decision on every rank (summed counts)
                meta["best_val"], meta["best_step"] = accuracy, meta["step"]
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if best_path is not None and dist.main:
                    weights = {f"model/{k}": v for k, v in best.items()}
                    save_checkpoint(best_path, weights, {"step": meta["step"], "val": accuracy})
            checkpoint()
            started = time.perf_counter()
    else:
        meta["train_seconds"] += time.perf_counter() - started
    if status == "interrupted":
        meta["train_seconds"] += time.perf_counter() - started
        checkpoint()
    steps_done = meta["step"]
    record: dict[str, Any] = {
        "task": spec.task,
        "mechanism": spec.mechanism,
        "options": spec.attention_kwargs,
        "seed": spec.seed,
        "steps": steps_done,
        "best_val_acc": meta["best_val"] if meta["best_val"] >= 0 else None,
        "best_step": meta["best_step"],
        "test_acc": None,
        "train_steps_per_s": steps_done / meta["train_seconds"] if meta["train_seconds"] else None,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20
        if str(device).startswith("cuda")
        else _peak_rss_mb(),
        "parameters": params,
        "nonfinite_skips": meta["nonfinite"],
        "majority": task.majority("test"),
        "status": status,
        "history": meta["history"],
        "spec": spec.as_dict(),
    }
    if status == "done":
        if best is None and best_path is not None and best_path.is_file():  # resumed run
            weights, _ = load_checkpoint(best_path)
            best = {k[6:]: v for k, v in weights.items()}
        if best is not None:
            model.load_state_dict(best)
        record["test_acc"] = evaluate(
            model, test, pad_id=task.pad_id, batch=config.batch_size, device=device
        )
    return record


def with_overrides(spec: RunSpec, **train: Any) -> RunSpec:
    """``spec`` with some :class:`TrainConfig` fields replaced (``--steps`` ...)."""
    return replace(spec, train=replace(spec.train, **train))
