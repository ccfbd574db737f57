"""``attnzoo arena`` orchestration: results, report, Ctrl-C, --resume, folder checks."""

from __future__ import annotations

import json
import os
import signal

import pytest
from toy import ToyTask

import attnzoo
from attnzoo.arena import runner
from attnzoo.arena.presets import EfficiencyPreset, Preset, TaskPreset
from attnzoo.arena.runner import ArenaConfig, ArenaError, run_arena
from attnzoo.arena.train import ModelConfig, TrainConfig

MODEL = ModelConfig(dim=16, num_heads=2, num_layers=1, ffn_dim=32, dropout=0.1)


def toy_preset(efficiency=False):
    train = TrainConfig(steps=12, batch_size=8, lr=3e-3, warmup=2, eval_every=4)
    sweep = EfficiencyPreset(lengths=[32], batch=1, model=MODEL, repeats=1)
    return Preset(
        "toy",
        {"toy": TaskPreset({"n_train": 64, "n_val": 16, "n_test": 16}, MODEL, train)},
        mechanisms=["mha", "linear"],
        efficiency=sweep if efficiency else None,
    )


@pytest.fixture
def toy_arena(monkeypatch, tmp_path):
    monkeypatch.setitem(runner.PRESETS, "toy", toy_preset)
    monkeypatch.setitem(runner.PRESETS, "toy_eff", lambda: toy_preset(efficiency=True))
    real = attnzoo.create

    def create(name, *args, **kwargs):
        if name == "toy":
            kwargs.pop("data_dir", None)
            return ToyTask(**kwargs)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(attnzoo, "create", create)
    return tmp_path


def config(tmp, name="out", **kwargs):
    kwargs = {"preset": "toy", **kwargs}
    return ArenaConfig(out=str(tmp / name), cache_dir=str(tmp / "cache"), **kwargs)


def test_results_and_report(toy_arena, capsys):
    result = run_arena(config(toy_arena, preset="toy_eff"))
    out = toy_arena / "out"
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["task"], r["mechanism"], r["status"]) for r in records] == [
        ("toy", "mha", "done"),
        ("toy", "linear", "done"),
    ]
    for key in (
        "best_val_acc",
        "test_acc",
        "train_steps_per_s",
        "peak_memory_mb",
        "parameters",
        "torch",
        "device",
        "git",
        "options",
        "seed",
        "steps",
    ):
        assert key in records[0], key
    report = (out / "report.md").read_text()
    assert "LRA Table 1 layout" in report and "LRA Table 2 layout" in report
    assert "Published, LRA Table 1" in report and "| `mha` |" in report
    assert "## Verdict" in report and "majority" in report
    assert (out / "bubble.png").stat().st_size > 1000
    efficiency = json.loads((out / "efficiency.json").read_text())
    assert {r["name"] for r in efficiency["results"]} == {"vanilla", "mha", "linear"}
    assert result["interrupted"] is False


def test_ctrl_c_leaves_a_partial_report_and_resume_finishes_it(toy_arena, monkeypatch):
    clean = run_arena(config(toy_arena, name="clean"))["records"]
    real_step = runner._Progress.step
    calls = {"n": 0}

    def interrupting(self, info):
        calls["n"] += 1
        if calls["n"] == 17:  # run 2 (linear), step 5
            os.kill(os.getpid(), signal.SIGINT)
        real_step(self, info)

    monkeypatch.setattr(runner._Progress, "step", interrupting)
    first = run_arena(config(toy_arena))
    assert first["interrupted"]
    statuses = [r["status"] for r in first["records"]]
    assert statuses == ["done", "interrupted"]
    assert "## Accuracy" in (toy_arena / "out" / "report.md").read_text()
    monkeypatch.setattr(runner._Progress, "step", real_step)
    with pytest.raises(ArenaError, match="--resume"):
        run_arena(config(toy_arena))
    second = run_arena(config(toy_arena, resume=True))
    assert [r["status"] for r in second["records"]] == ["done", "done"]
    by_mechanism = {r["mechanism"]: r["test_acc"] for r in second["records"]}
    assert by_mechanism == {r["mechanism"]: r["test_acc"] for r in clean}  # bit-exact resume


def test_folder_and_name_errors(toy_arena):
    with pytest.raises(ArenaError, match="nothing to resume"):
        run_arena(config(toy_arena, resume=True))
    run_arena(config(toy_arena, mechanisms=["mha"]))
    with pytest.raises(ArenaError, match="another configuration"):
        run_arena(config(toy_arena, steps=3, resume=True))
    with pytest.raises(ArenaError, match=r"unknown mechanism 'mhaa'.*'mha'"):
        run_arena(config(toy_arena, name="x", mechanisms=["mhaa"]))
    with pytest.raises(ArenaError, match=r"unknown task 'toi'.*'toy'"):
        run_arena(config(toy_arena, name="x", tasks=["toi"]))
    with pytest.raises(ArenaError, match="unknown preset"):
        run_arena(ArenaConfig(preset="quik", out=str(toy_arena / "y")))
    (toy_arena / "out" / "results.jsonl").write_text("{not json\n")
    with pytest.raises(ArenaError, match="line 1 is not a JSON record"):
        run_arena(config(toy_arena, resume=True))


def test_a_failing_mechanism_is_recorded_and_the_arena_goes_on(toy_arena, monkeypatch):
    from attnzoo.arena import train as train_module

    real = train_module.build_model

    def broken(spec, task):
        if spec.mechanism == "linear":
            raise RuntimeError("simulated failure")
        return real(spec, task)

    monkeypatch.setattr(train_module, "build_model", broken)
    records = run_arena(config(toy_arena))["records"]
    assert records[0]["status"] == "done"
    assert records[1]["status"].startswith("failed: RuntimeError: simulated failure")
    assert "## Failed runs" in (toy_arena / "out" / "report.md").read_text()
