"""docs/gallery.md shows every kind, with the command that draws each committed image."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from attnzoo.viz import KINDS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gallery.md"
TEXT = DOC.read_text(encoding="utf-8")
IMAGES = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TEXT)
COMMANDS = [line for line in TEXT.splitlines() if line.startswith("attnzoo plot ")]
# pictures of trained models come from the examples: python examples/NAME.py --out-dir DIR
EXAMPLES = [line for line in TEXT.splitlines() if line.startswith("python examples/")]


def example_outputs() -> dict[str, str]:
    """``{example stem: output folder}`` of the example commands of the gallery."""
    outputs = {}
    for command in EXAMPLES:
        words = shlex.split(command)
        outputs[Path(words[1]).stem] = words[words.index("--out-dir") + 1]
    return outputs


def test_every_kind_has_a_command():
    drawn = {shlex.split(command)[2] for command in COMMANDS}
    assert drawn == set(KINDS)


def test_every_referenced_image_exists_is_small_and_drawn_by_a_command():
    assert IMAGES
    outputs = {shlex.split(c)[shlex.split(c).index("--out") + 1] for c in COMMANDS}
    for image in IMAGES:
        path = DOC.parent / image
        assert path.is_file(), f"{image} is referenced but missing"
        assert 1000 < path.stat().st_size < 150_000, f"{image} is {path.stat().st_size} bytes"
        by_example = any(
            f"docs/{image}".startswith(f"{folder}/{stem}")
            for stem, folder in example_outputs().items()
        )
        assert f"docs/{image}" in outputs or by_example, f"nothing in the gallery draws {image}"


def test_example_commands_name_existing_examples():
    for stem in example_outputs():
        assert (ROOT / "examples" / f"{stem}.py").is_file(), stem


def test_every_command_output_is_shown():
    for command in COMMANDS:
        out = shlex.split(command)[shlex.split(command).index("--out") + 1]
        assert out.removeprefix("docs/") in IMAGES, f"{out} is drawn but not shown"
