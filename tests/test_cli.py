"""The attnzoo command line: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import attnzoo
from attnzoo.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_info(capsys):
    code, out, _ = run(capsys, "list", "--family", "positional")
    assert code == 0 and "rope" in out and "mha" not in out
    code, out, _ = run(capsys, "info", "alibi")
    assert code == 0 and "https://arxiv.org/abs/2108.12409" in out and "num_heads" in out


def test_mask_draws_the_pattern(capsys):
    code, out, _ = run(
        capsys, "mask", "sliding_window", "--length", "4", "--window", "1", "--ascii"
    )
    assert code == 0
    assert out.splitlines()[:4] == ["##..", "###.", ".###", "..##"]
    code, out, _ = run(capsys, "mask", "bigbird", "--length", "32", "--block-size", "4")
    assert code == 0 and "bigbird: L=32" in out
    code, out, _ = run(
        capsys,
        "mask",
        "longformer",
        "--length",
        "6",
        "--window",
        "1",
        "--global-indices",
        "0",
        "--ascii",
    )
    assert out.splitlines()[0] == "######"


def test_list_says_when_nothing_matches(capsys):
    code, out, err = run(capsys, "list", "zzz*")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no registered name matches 'zzz*'" in err
    code, _, err = run(capsys, "list", "--family", "vision", "--tags", "no_such_tag")
    assert code == 1 and "family vision, tags no_such_tag" in err


def test_mask_options_of_every_annotation(capsys):
    code, out, _ = run(capsys, "mask", "prefix_lm", "--length", "4", "--prefix-len", "2", "--ascii")
    assert code == 0 and out.splitlines()[:4] == ["##..", "##..", "###.", "####"]
    code, out, _ = run(capsys, "mask", "prefix_lm", "--length", "3", "--prefix-len", "1,3")
    assert code == 0 and "prefix_lm: L=3" in out  # a per-sample (B,) tensor: sample 0 drawn
    code, out, _ = run(capsys, "mask", "document", "--length", "3", "--document-ids", "0,0,1")
    assert code == 0 and "5 of 9 pairs" in out
    code, out, _ = run(
        capsys, "mask", "sliding_window", "--length", "3", "--window", "1", "--causal", "--ascii"
    )
    assert code == 0 and out.splitlines()[:3] == ["#..", "##.", ".##"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["mask", "nope", "--length", "4"], "name"),
        (["mask", "bigbird", "--length", "0"], "--length"),
        (["mask", "bigbird", "--length", "8"], "--block-size"),
        (["info", "does_not_exist"], "name"),
        (["list", "--family", "audio"], "--family"),
        (["bench", "speed", "--names", "mha", "--lengths", "0"], "--lengths"),
        (["bench", "speed", "--names", "does_not_exist", "--lengths", "8"], "--names"),
        (["bench", "speed", "--names", "se", "--lengths", "8"], "--names"),
        (["bench", "speed", "--names", "mha", "--lengths", "8", "--timeout", "nan"], "--timeout"),
        (["bench", "speed", "--names", "mha", "--lengths", "8", "--heads", "-1"], "--heads"),
        (["bench", "speed", "--names", "mha", "--lengths", "8", "--option", "x"], "--option"),
        (["bench", "speed", "--names", "mha", "--lengths", "8", "--timeout", "0"], "--timeout"),
        (["bench", "speed", "--names", "mha", "--lengths", "8", "--timeout", "-1"], "--timeout"),
        (["mask", "causal", "--length", "4", "--window", "3"], "--window"),
        (
            ["mask", "sliding_window", "--length", "4", "--window", "1", "--block-size=2"],
            "--block-size",
        ),
        (["mask", "sliding_window", "--length", "4", "--window", "-1"], "--window"),
        (["mask", "prefix_lm", "--length", "4", "--prefix-len", "x"], "--prefix-len"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, flag):
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and flag in err and "Traceback" not in err


def test_catalogue_check_detects_staleness(tmp_path, capsys):
    stale = tmp_path / "catalogue.md"
    stale.write_text("old")
    code, _, err = run(capsys, "catalogue", "--output", str(stale), "--check")
    assert code == 1 and "stale" in err
    code, _, _ = run(capsys, "catalogue", "--output", str(stale))
    assert code == 0
    code, _, _ = run(capsys, "catalogue", "--output", str(stale), "--check")
    assert code == 0
    chinese = tmp_path / "catalogue.zh.md"
    assert "# 目录" in chinese.read_text(encoding="utf-8")
    chinese.write_text("old")  # a stale Chinese page is stale too
    code, _, err = run(capsys, "catalogue", "--output", str(stale), "--check")
    assert code == 1 and "catalogue.zh.md" in err


def test_bench_speed_end_to_end(tmp_path):
    output = tmp_path / "speed.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnzoo",
            "bench",
            "speed",
            "--names",
            "mha,torch_mha,local,engine_local",
            "--lengths",
            "32",
            "--dim",
            "16",
            "--heads",
            "2",
            "--repeats",
            "1",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| mha | 32 |" in proc.stdout and "| torch_mha | 32 |" in proc.stdout
    # local's default window (256) covers L = 32: it ran dense SDPA, and the output says so
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: local at L=32 ran dense SDPA")
    assert "window=256 >= max(L, S) - 1 = 31" in notes[0]
    data = json.loads(output.read_text())
    assert {r["name"] for r in data["results"]} == {"mha", "torch_mha", "local", "engine_local"}
    assert all(r["error"] is None and r["seconds"] > 0 for r in data["results"])
    assert {r["name"]: r["note"] is not None for r in data["results"]} == {
        "mha": False,
        "torch_mha": False,
        "local": True,
        "engine_local": False,  # the masked module: the block engine even when dense
    }


def test_bench_speed_exits_1_when_a_cell_fails(capsys):
    # Linformer built for 8 keys refuses 32: the cell fails, the table says so, exit status 1
    code, out, err = run(
        capsys,
        *("bench", "speed", "--names", "linformer", "--lengths", "32", "--dim", "16"),
        *("--heads", "2", "--repeats", "1", "--option", "linformer:seq_len=8"),
    )
    assert code == 1
    assert "| linformer | 32 | error: " in out and "seq_len" in out
    assert "1 of 1 cells failed: linformer L=32" in err.strip().splitlines()[-1]


def test_bench_timing_processes_fix_the_allocator_thresholds(monkeypatch):
    """Timing runs without glibc's dynamic thresholds; memory keeps its 64 KiB mmap threshold."""
    from attnzoo.arena import efficiency

    seen = {}

    def fake_worker(timeout, cfg, env):
        seen[cfg["mode"]] = env
        return {"peak_mb": 1.0} if cfg["mode"] == "memory" else {"seconds": 0.5}

    monkeypatch.setattr(efficiency, "_run_worker", fake_worker)
    config = efficiency.SpeedConfig(names=["mha"], lengths=[8], dim=16, heads=2, threads=1)
    (result,) = efficiency.run_speed(config)
    assert result.seconds == 0.5 and result.peak_mb == 1.0
    assert seen["time"]["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    assert seen["time"]["MALLOC_TRIM_THRESHOLD_"] == str(4 * 2**30)
    assert seen["memory"]["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert seen["memory"].get("MALLOC_TRIM_THRESHOLD_") != str(4 * 2**30)
    assert seen["time"]["OMP_NUM_THREADS"] == seen["memory"]["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize(
    ("name", "options", "short"),
    [
        ("local", {"window": 8}, 9),
        ("strided", {"stride": 8}, 9),
        ("sparse_transformer", {"block": 8}, 8),
        ("bigbird", {"block_size": 2}, 14),
    ],
)
def test_dense_reason_matches_the_dense_fallback(name, options, short):
    module = attnzoo.create(name, 16, num_heads=2, **options)
    assert isinstance(module.dense_reason(short, short), str)  # the note of bench speed
    assert module.dense_reason(4 * short, 4 * short) is None
    assert not hasattr(attnzoo.create("mha", 16, num_heads=2), "dense_reason")


def test_bench_vision_with_training(tmp_path, capsys):
    output = tmp_path / "vision.json"
    code, out, _ = run(
        capsys,
        "bench",
        "vision",
        "--names",
        "se,ffm",
        "--channels",
        "16",
        "--size",
        "8",
        "--repeats",
        "1",
        "--train",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--output",
        str(output),
    )
    assert code == 0
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"plain", "se", "ffm"}
    assert "n/a" in rows["ffm"]  # a two-input module cannot sit inside a ResNet
    data = json.loads(output.read_text())
    se = next(r for r in data["results"] if r["name"] == "se")
    assert se["params"] == 2 * 16 * 1 + 1 + 16  # fc1 16->1 (+bias), fc2 1->16 (+bias)
    assert 0.1 < se["accuracy"] <= 1.0 and se["flops"] > 0


def test_bench_vision_rejects_non_vision_names(capsys):
    code, _, err = run(capsys, "bench", "vision", "--names", "mha")
    assert code == 2 and "--names" in err


def test_bench_decode_and_vit(tmp_path, capsys):
    out_file = tmp_path / "decode.json"
    code, out, _ = run(
        capsys,
        *("bench", "decode", "--tokens", "6", "--dim", "32", "--heads", "4", "--layers", "1"),
        *("--repeats", "1", "--output", str(out_file)),
    )
    assert code == 0 and "same tokens: True" in out
    assert json.loads(out_file.read_text())["same_tokens"] is True
    code, _, err = run(capsys, "bench", "vit", "--model", "resnet50")
    assert code == 2 and "--model" in err
    code, _, err = run(capsys, "bench", "decode", "--attention", "nystrom")
    assert code == 2 and "supports_causal" in err


def test_bench_sparse_table_json_and_plot(tmp_path, capsys):
    output, picture = tmp_path / "density.json", tmp_path / "density.png"
    code, out, _ = run(
        capsys,
        *("bench", "sparse", "--length", "256", "--heads", "2", "--head-dim", "8"),
        *("--block-size", "32", "--densities", "0.125,0.5,1", "--repeats", "1"),
        *("--output", str(output), "--plot", str(picture)),
    )
    assert code == 0
    assert "| density | blocks | engine ms |" in out
    record = json.loads(output.read_text())
    assert [row["blocks"] for row in record["rows"]] == [8, 32, 64]  # 8 x 8 blocks of 32
    assert picture.stat().st_size > 0
    code, _, err = run(capsys, "bench", "sparse", "--densities", "0,0.5")
    assert code == 2 and "densities must be in (0, 1]" in err
