"""The documentation site: generated pages fresh, in both languages, nav complete."""

from __future__ import annotations

import re
from pathlib import Path

import attnzoo
from attnzoo import _zh
from attnzoo.registry import all_entries
from attnzoo.sitepages import render_page, write_pages

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


def test_the_code_of_the_foundations_guide_runs_in_both_languages():
    for name in ("foundations.md", "foundations.zh.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        blocks = re.findall(r"```python\n(.*?)```", text, re.S)
        assert len(blocks) == 5
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, name, "exec"), namespace)
