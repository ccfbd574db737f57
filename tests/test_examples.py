"""Every script in examples/ runs (tiny, with ``--smoke``) and prints what it did.

Convention: a script that trains or draws takes ``--smoke`` (a run of a few seconds, for this
test) and ``--out-dir DIR`` (where its pictures go); scripts without options ignore them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [str(path), "--smoke", "--out-dir", str(tmp_path)])
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
    if "--out-dir" in path.read_text(encoding="utf-8"):
        pictures = list(tmp_path.glob("*.png"))
        assert pictures, f"{path.name} takes --out-dir but drew nothing"
        assert all(p.stat().st_size > 1000 for p in pictures)


def test_examples_exist():
    assert len(EXAMPLES) >= 3
