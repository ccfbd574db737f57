"""``attnzoo arena`` end to end on the real tasks (smoke preset), errors, and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from attnzoo.cli import main


def arena(capsys, tmp_path, *extra, out="out"):
    argv = ["arena", "--preset", "smoke", "--out", str(tmp_path / out)]
    argv += ["--cache-dir", str(tmp_path / "cache"), *extra]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smoke_preset_writes_results_report_and_chart(capsys, tmp_path):
    code, out, err = arena(capsys, tmp_path, "--mechanisms", "mha,linear")
    assert code == 0, err
    assert f"arena report: {tmp_path / 'out' / 'report.md'}" in out
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").open()]
    assert len(records) == 10  # 5 tasks x 2 mechanisms
    assert {r["task"] for r in records} == {"listops", "text", "retrieval", "image", "pathfinder"}
    assert all(r["status"] == "done" and 0 <= r["test_acc"] <= 1 for r in records)
    report = (tmp_path / "out" / "report.md").read_text()
    for title in ("ListOps", "Text", "Retrieval", "Image", "Pathfinder"):
        assert title in report
    assert (tmp_path / "out" / "bubble.png").stat().st_size > 1000
    assert "[1/10] listops mha seed 0" in err  # the progress line names task and mechanism


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--tasks", "listop"), "unknown task 'listop'. Did you mean 'listops'"),
        (("--mechanisms", "performr"), "unknown mechanism 'performr'. Did you mean 'performer'"),
        (("--preset", "fast"), "unknown preset 'fast'"),
        (("--resume",), "nothing to resume"),
        (("--data-dir", "/nonexistent"), "--data-dir"),
    ],
)
def test_bad_arguments_are_one_line_errors(capsys, tmp_path, extra, needle):
    code, _, err = arena(capsys, tmp_path, "--tasks", "listops", "--mechanisms", "mha", *extra)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_torchrun_data_parallel_gives_the_same_report(tmp_path, capsys):
    common = ["--preset", "smoke", "--tasks", "listops", "--mechanisms", "mha", "--no-efficiency"]
    common += ["--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    assert main(["arena", *common, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "attnzoo", "arena", *common]
    command += ["--out", str(tmp_path / "two")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = [json.loads(x) for x in (tmp_path / "one" / "results.jsonl").open()]
    two = [json.loads(x) for x in (tmp_path / "two" / "results.jsonl").open()]
    assert len(two) == 1 and two[0]["world_size"] == 2 and one[0]["world_size"] == 1
    # the same global batches, split over two ranks: the same model up to float rounding
    assert abs(one[0]["test_acc"] - two[0]["test_acc"]) <= 1 / 16
    assert [h["step"] for h in one[0]["history"]] == [h["step"] for h in two[0]["history"]]
    assert (tmp_path / "two" / "report.md").is_file()
