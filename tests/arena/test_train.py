"""The arena's training runner: records, bit-exact resume, damaged checkpoints, non-finite."""

from __future__ import annotations

import itertools

import pytest
import torch
from toy import ToyTask

from attnzoo.arena import train as train_module
from attnzoo.arena.checkpoint import CheckpointError, load_checkpoint
from attnzoo.arena.train import ModelConfig, RunAborted, RunSpec, TrainConfig, train_run

MODEL = ModelConfig(dim=16, num_heads=2, num_layers=1, ffn_dim=32, dropout=0.1)


def spec(steps=24, mechanism="mha", **train):
    options = {"batch_size": 8, "lr": 3e-3, "warmup": 4, "eval_every": 8, **train}
    config = TrainConfig(steps=steps, **options)
    return RunSpec(task="toy", mechanism=mechanism, seed=1, model=MODEL, train=config)


@pytest.fixture
def task(tmp_path):
    return ToyTask(seed=0, n_train=96, n_val=32, n_test=32, cache_dir=tmp_path / "cache")


def test_a_run_trains_evaluates_and_tests(task, tmp_path):
    record = train_run(spec(), task, run_dir=tmp_path / "run")
    assert record["status"] == "done" and record["steps"] == 24
    assert 0.0 <= record["test_acc"] <= 1.0 and record["best_step"] in (8, 16, 24)
    assert [h["step"] for h in record["history"]] == [8, 16, 24]
    assert record["parameters"] > 0 and record["train_steps_per_s"] > 0
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert record["majority"] >= 0.5


def test_resume_continues_bit_exactly(task, tmp_path):
    whole = train_run(spec(), task, run_dir=tmp_path / "whole")
    calls = {"n": 0}

    def stop_after_ten():
        calls["n"] += 1
        return calls["n"] > 10

    part = train_run(spec(), task, run_dir=tmp_path / "split", should_stop=stop_after_ten)
    assert part["status"] == "interrupted" and part["steps"] == 10 and part["test_acc"] is None
    resumed = train_run(spec(), task, run_dir=tmp_path / "split")
    assert resumed["status"] == "done" and resumed["steps"] == 24
    a, _ = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # parameters, Adam moments, RNG
    assert resumed["test_acc"] == whole["test_acc"]
    assert resumed["history"] == whole["history"]


def test_a_damaged_checkpoint_is_one_clear_error(task, tmp_path):
    run = tmp_path / "run"
    train_run(spec(steps=8), task, run_dir=run)
    path = run / "last.safetensors"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match=r"last\.safetensors.*truncated or damaged"):
        train_run(spec(steps=16), task, run_dir=run)


def test_a_checkpoint_of_another_configuration_is_refused(task, tmp_path):
    run = tmp_path / "run"
    train_run(spec(steps=8), task, run_dir=run)
    with pytest.raises(ValueError, match="another configuration"):
        train_run(spec(steps=8, lr=1e-4), task, run_dir=run)


def test_non_finite_losses_skip_steps_then_abort(task, tmp_path, monkeypatch):
    real = train_module.F.cross_entropy
    state = {"calls": 0}

    def sometimes_nan(logits, labels):
        state["calls"] += 1
        loss = real(logits, labels)
        return loss * float("nan") if state["calls"] in (3, 5) else loss

    monkeypatch.setattr(train_module.F, "cross_entropy", sometimes_nan)
    record = train_run(spec(steps=8), task, run_dir=tmp_path / "a")
    assert record["nonfinite_skips"] == 2 and record["status"] == "done"
    _, meta = load_checkpoint(tmp_path / "a" / "last.safetensors")
    assert meta["nonfinite"] == 2

    monkeypatch.setattr(
        train_module.F, "cross_entropy", lambda logits, labels: real(logits, labels) * float("nan")
    )
    with pytest.raises(RunAborted, match="non-finite losses"):
        train_run(spec(steps=8, max_nonfinite=3), task, run_dir=tmp_path / "b")
    assert not (tmp_path / "b" / "last.safetensors").exists()


def test_a_fixed_length_mechanism_shorter_than_the_task_is_refused(task):
    short = RunSpec(
        task="toy",
        mechanism="linformer",
        attention_kwargs={"seq_len": 6, "k": 4},
        model=MODEL,
        train=TrainConfig(steps=2),
    )
    with pytest.raises(ValueError, match="seq_len=6, shorter than task 'toy'"):
        train_run(short, task)


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, lr=1.0, warmup=10, schedule="linear")
    rates = [train_module.learning_rate(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[-1] < 0.02
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))
