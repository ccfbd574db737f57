"""The training examples reach the accuracy their docstrings promise (slow: minutes on CPU).

Run with ``make test-all`` (``pytest -m slow``). The default suite runs every example tiny
(tests/test_examples.py); these run the real configuration and check the number.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_main(name: str, tmp_path: Path, *args: str) -> dict[str, float]:
    module = runpy.run_path(str(EXAMPLES / name), run_name=name.removesuffix(".py"))
    return module["main"](["--out-dir", str(tmp_path), *args])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_transformer_writes_held_out_numbers_in_words(tmp_path):
    result = run_main("translate_numbers.py", tmp_path)
    assert result["accuracy"] >= 0.95
    assert (tmp_path / "translate_numbers_cross_attention.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_vit_reads_held_out_mnist_digits(tmp_path):
    result = run_main("vit_digits.py", tmp_path)
    assert result["accuracy"] >= 0.95
    assert (tmp_path / "vit_digits_attention_distance.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_cnn_learns_the_arena_pathfinder_images(tmp_path):
    """The generator's labels are in the pixels: a small CNN leaves chance on easy contours."""
    result = run_main("pathfinder_cnn.py", tmp_path)
    assert result["accuracy"] >= 0.70 > result["majority"] + 0.1
    assert (tmp_path / "pathfinder_cnn_examples.png").stat().st_size > 1000
