"""Meta tests: layering, file sizes, docstrings, papers, no asserts, shape comments, catalogue."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import attnzoo
from attnzoo.catalogue import catalogue_markdown, update_readme
from attnzoo.registry import all_entries

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "attnzoo"
LAYERS = ["functional", "layers", "positional", "sequence", "efficient", "vision", "models"]
# Allowed imports between subpackages (docs/design.md section 2): each may import those listed.
ALLOWED = {
    "functional": set(),
    "layers": {"functional"},
    "positional": {"functional", "layers"},
    "sequence": {"functional", "layers", "positional"},
    "efficient": {"functional", "layers", "positional", "sequence"},
    "vision": {"functional", "layers"},
    "models": {"functional", "layers", "positional", "sequence", "efficient", "vision"},
}
TOP_LEVEL_LEAVES = {"_checks", "_recompute", "registry", "papers", "masks"}
MECHANISM_DIRS = ["functional", "positional", "sequence", "efficient", "vision", "models"]
SOURCES = sorted(SRC.rglob("*.py"))


def attnzoo_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnzoo"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("attnzoo"))
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path):
    rel = path.relative_to(SRC).parts
    package = rel[0] if len(rel) > 1 else None
    for module in attnzoo_imports(ast.parse(path.read_text())):
        parts = module.split(".")
        target = parts[1] if len(parts) > 1 else None
        if package in ("arena", "viz") or path.name in ("cli.py", "__main__.py", "catalogue.py"):
            continue  # the top of the stack may import anything below it
        assert target not in ("arena", "viz", "cli"), f"{path} imports {module}"
        if package in ALLOWED and target in LAYERS and target != package:
            assert target in ALLOWED[package], f"{path} ({package}) must not import {module}"
        if package in ALLOWED and target is not None and target not in LAYERS:
            assert target in TOP_LEVEL_LEAVES, f"{path} imports {module}"


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if p.relative_to(SRC).parts[0] in MECHANISM_DIRS],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_mechanism_files_are_short(path):
    assert len(path.read_text().splitlines()) <= 420, f"{path} is over ~400 lines: split it"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_assert_and_no_magic_fill(path):
    text = path.read_text()
    tree = ast.parse(text)
    asserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    assert not asserts, f"{path} uses assert on lines {asserts}: raise ValueError/TypeError"
    assert not re.search(r"-1e9|-1e4|-1e\+09|-10000\.0|-65504", text), f"{path} has a magic fill"


RESHAPES = re.compile(r"\.(view|reshape|flatten|unflatten|permute)\(")


def string_lines(tree: ast.AST) -> set[int]:
    """Line numbers covered by string literals (docstrings), which are not code."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_every_reshape_has_a_shape_comment(path):
    text = path.read_text()
    skip = string_lines(ast.parse(text))
    lines = text.splitlines()
    missing = []
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        if number in skip or not RESHAPES.search(code):
            continue
        # the comment may close a statement spread over several lines
        window = " ".join(lines[number - 1 : number + 3])
        if not re.search(r"#\s*\(", window):
            missing.append(number)
    assert not missing, f"{path}: reshape without '# (shape)' comment on lines {missing}"


@pytest.mark.parametrize("entry", all_entries(), ids=lambda e: e.name)
def test_every_entry_has_paper_and_documented_docstring(entry):
    paper = entry.paper
    assert paper.title and paper.authors and 1900 < paper.year < 2100
    assert paper.url.startswith("https://")
    doc = inspect.getdoc(entry.obj) or ""
    for section in ("Args:", "Shape:", "Example:"):
        assert section in doc, f"{entry.name}: docstring lacks {section}"
    assert str(paper.year) in doc, f"{entry.name}: docstring should cite the paper (year)"
    assert entry.complexity, f"{entry.name}: missing complexity"
    assert entry.tags, f"{entry.name}: missing tags"


def test_catalogue_is_not_stale():
    current = (ROOT / "docs" / "catalogue.md").read_text(encoding="utf-8")
    assert current == catalogue_markdown() + "\n", "docs/catalogue.md is stale: run make catalogue"
    chinese = (ROOT / "docs" / "catalogue.zh.md").read_text(encoding="utf-8")
    assert chinese == catalogue_markdown("zh") + "\n", "catalogue.zh.md is stale: make catalogue"


def test_readme_table_is_not_stale_and_opens_with_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == update_readme(readme), "README table is stale: run make catalogue"
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[:2]]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_public_api():
    for name in ("create", "create_model", "list_names", "info", "KVCache", "__version__"):
        assert hasattr(attnzoo, name)


# ----------------------------------------------------------------------------- the design document
OUTSIDE = re.compile(r"\.\./shared|/work/|DESIGN\.md|reliability\.md|\blra\.md|vision-modules\.md")
REPO_TEXT = sorted(
    list(ROOT.glob("src/**/*.py"))
    + list(ROOT.glob("tests/**/*.py"))
    + list(ROOT.glob("examples/*.py"))
    + list(ROOT.glob("docs/**/*.md"))
    + [ROOT / name for name in ("README.md", "CHANGELOG.md", "Makefile", "pyproject.toml")]
)


def test_nothing_refers_to_a_path_outside_the_repository():
    this = Path(__file__).resolve()
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in REPO_TEXT
        if path.resolve() != this
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_references_to_the_design_document_exist():
    design = (ROOT / "docs" / "design.md").read_text()
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", design, re.MULTILINE)}
    modes = {int(n) for n in re.findall(r"^(\d+)\. ", design.split("## 10.")[1], re.MULTILINE)}
    assert sections == set(range(1, 12)) and modes == set(range(1, 41))
    for path in REPO_TEXT:
        text = path.read_text()
        for number in re.findall(r"design\.md\s+sections?\s+(\d+)", text):
            assert int(number) in sections, f"{path}: docs/design.md section {number}"
        for number in re.findall(r"failure modes? (\d+)", text):
            assert int(number) in modes, f"{path}: failure mode {number}"
