"""Copy the committed arena report into the arena guide, in both languages.

``docs/arena.md`` and ``docs/arena.zh.md`` each hold the tables of the committed standard run
between the lines ``<!-- report:start ... -->`` and ``<!-- report:end -->``. This script writes
that region from ``docs/arena-standard/report.md`` (what ``attnzoo arena`` wrote): the report
without its title, its headings one level down, the bubble chart from ``docs/images/``.
``--check`` only compares (exit 1 when a page is stale; a test runs it).

Usage: ``python tools/arena_page.py [--check]``
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "arena-standard" / "report.md"
PAGES = [ROOT / "docs" / "arena.md", ROOT / "docs" / "arena.zh.md"]
START = (
    "<!-- report:start (written by tools/arena_page.py from docs/arena-standard/report.md; "
    "do not edit) -->"
)
END = "<!-- report:end -->"
REGION = re.compile(r"^<!-- report:start.*?-->\n.*?^<!-- report:end -->$", re.S | re.M)


def region(report: str) -> str:
    """The page region for ``report``: no title, headings one level down, the chart's path."""
    lines = report.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    body = re.sub(r"^(#{2,5}) ", r"#\1 ", body, flags=re.M)
    body = body.replace("](bubble.png)", "](images/arena-standard-bubble.png)")
    return f"{START}\n{body}\n{END}"


def update(page: Path, report: str, check: bool) -> bool:
    """Write (or compare) the region of ``page``; True when it was stale."""
    text = page.read_text(encoding="utf-8")
    if not REGION.search(text):
        raise SystemExit(f"{page}: no `<!-- report:start -->` ... `{END}` region")
    new = REGION.sub(lambda _: region(report), text, count=1)
    if new != text and not check:
        page.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """Update both pages, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    report = REPORT.read_text(encoding="utf-8")
    stale = [p for p in PAGES if p.is_file() and update(p, report, args.check)]
    for page in stale:
        print(f"{page.relative_to(ROOT)}: {'stale' if args.check else 'updated'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
