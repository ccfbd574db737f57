"""The documentation site: generated pages fresh, in both languages, nav complete."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import attnzoo
from attnzoo import _zh
from attnzoo.registry import all_entries
from attnzoo.sitepages import formula, render_page, write_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_every_registered_name_has_its_chinese_summary():
    names = {e.name for e in all_entries()}
    assert names - set(_zh.SUMMARY) == set(), "add the Chinese summary to attnzoo/_zh.py"
    assert set(_zh.SUMMARY) - names == set(), "a Chinese summary of a name that is not registered"
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in _zh.SUMMARY.values())


def test_generated_pages_are_fresh_and_in_both_languages():
    stale = write_pages(DOCS / "reference", DOCS / "bench" / "speed.json", check=True)
    assert stale == [], f"stale pages, run `make catalogue`: {stale[:3]}"
    for entry in all_entries():
        for suffix in (".md", ".zh.md"):
            assert (DOCS / "reference" / entry.family / f"{entry.name}{suffix}").is_file()


def test_a_page_carries_the_facts_of_its_entry():
    entry = attnzoo.info("local")
    english, chinese = render_page(entry, "en"), render_page(entry, "zh")
    for page in (english, chinese):
        assert entry.paper.url in page and entry.obj.backend in page
        assert "::: attnzoo.efficient.local.LocalAttention" in page
        drawing = attnzoo.masks.to_string(entry.obj(16, num_heads=2, window=3).pattern(32, 32), 32)
        assert drawing in page
    assert _zh.SUMMARY["local"] in chinese and "## 计算内容" in chinese
    assert "## What it computes" in english


def test_every_page_of_the_nav_exists():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert nav and all((DOCS / page).is_file() for page in nav), nav


def _guides() -> list[Path]:
    """Every hand-written English page of the site (the generated reference pages excluded)."""
    skip = {DOCS / "catalogue.md", DOCS / "arena-standard" / "report.md"}
    pages = [p for p in DOCS.rglob("*.md") if not p.name.endswith(".zh.md") and p not in skip]
    return sorted(p for p in pages if "reference" not in p.relative_to(DOCS).parts)


def test_every_page_is_in_both_languages():
    english = {p.relative_to(DOCS) for p in DOCS.rglob("*.md") if not p.name.endswith(".zh.md")}
    chinese = {p.relative_to(DOCS) for p in DOCS.rglob("*.zh.md")}
    english.discard(Path("arena-standard/report.md"))  # the arena's own output, not a page
    missing = {str(p) for p in english if p.with_suffix(".zh.md") not in chinese}
    orphans = sorted(str(p) for p in chinese if p.with_suffix("").with_suffix(".md") not in english)
    assert sorted(missing) == [], "pages without their Chinese page"
    assert orphans == [], f"Chinese pages without an English page: {orphans}"


@pytest.mark.parametrize("guide", _guides(), ids=lambda p: str(p.relative_to(DOCS)))
def test_the_code_of_every_guide_runs_in_both_languages(guide):
    counts = []
    for page in (guide, guide.with_suffix(".zh.md")):
        if not page.is_file():
            continue  # reported by test_every_page_is_in_both_languages
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
        counts.append(len(blocks))
        namespace: dict = {"__name__": "__guide__"}
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)
    assert len(set(counts)) <= 1, f"{guide.name}: python blocks per language {counts}"


def test_the_foundations_guide_keeps_its_examples():
    text = (DOCS / "foundations.md").read_text(encoding="utf-8")
    assert len(re.findall(r"^```python\n", text, re.M)) == 5


@pytest.mark.parametrize("family", ["sequence", "efficient", "positional", "vision", "models"])
def test_every_mechanism_states_its_formula(family):
    missing = [e.name for e in all_entries() if e.family == family and not formula(e.obj)]
    assert missing == [], f"add a `Formula:` section to the docstring of {missing}"
    for entry in all_entries():
        math = formula(entry.obj)
        if math:
            assert math.startswith("$$") and math.count("$$") % 2 == 0, entry.name
            assert "\n$$\n\n" in math + "\n\n" or math.endswith("$$"), entry.name


def test_the_arena_guide_shows_the_committed_report():
    spec = importlib.util.spec_from_file_location("arena_page", ROOT / "tools" / "arena_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run `python tools/arena_page.py`"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_api_module_has_its_page_in_both_languages():
    """The built site's check (make docs-check) then finds a section for every public name."""
    pages = _tool("check_site").API_PAGES
    assert {"attnzoo.functional", "attnzoo.masks", "attnzoo.registry"} <= set(pages.values())
    nav = (ROOT / "mkdocs.yml").read_text()
    for slug, module in pages.items():
        for suffix in (".md", ".zh.md"):
            text = (DOCS / "api" / f"{slug}{suffix}").read_text()
            assert f"::: {module}\n" in text, (slug, suffix)
        assert f"api/{slug}.md" in nav


@pytest.mark.parametrize(
    "guide",
    [
        "models",
        "efficient/patterns",
        "efficient/clustering",
        "efficient/low_rank",
        "efficient/kernel",
        "efficient/attention_free",
        "attention",
        "foundations",
    ],
)
def test_every_guide_shows_pictures_and_links_its_code(guide):
    for suffix in (".md", ".zh.md"):
        text = (DOCS / f"{guide}{suffix}").read_text()
        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        assert images, f"{guide}{suffix} shows no picture"
        for image in images:
            assert ((DOCS / guide).parent / image).resolve().is_file(), image
        assert "reference/" in text, f"{guide}{suffix} links no reference page"
