"""Generate the documentation site's page of every registered name, in English and Chinese.

``attnzoo catalogue --pages docs/reference`` writes ``<family>/<name>.md`` and
``<family>/<name>.zh.md`` for every entry of the registry, and one index per family: the
summary (Chinese from :mod:`attnzoo._zh`), paper, tags, complexity, backend, the formula of the
docstring's ``Formula:`` section (rendered by KaTeX), capability flags, what the docstring says it
computes, the constructor signature, the docstring's runnable example,
the mask drawing of pattern mechanisms, the measured time and memory at each recorded length
(``docs/bench/speed.json``, written by ``attnzoo bench speed --output``) and the API reference
(mkdocstrings). Both languages are rendered from the same entry, so they cannot drift; a test
fails when a committed page is stale.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any

from attnzoo import _zh
from attnzoo.catalogue import FLAGS
from attnzoo.registry import FAMILIES, Entry, all_entries

__all__ = ["PATTERN_DRAWINGS", "formula", "render_page", "write_pages"]

# small options under which each pattern mechanism's mask is drawn (32 tokens)
PATTERN_DRAWINGS: dict[str, dict[str, Any]] = {
    "local": {"window": 3},
    "strided": {"stride": 4},
    "sparse_transformer": {"block": 8, "num_summary": 2},
    "global": {"num_global": 2},
    "longformer": {"window": 3, "num_global": 1},
    "bigbird": {"block_size": 4, "num_random_blocks": 1},
}
DRAW_LENGTH = 32
_SECTIONS = re.compile(
    r"^(Args|Shape|Example|Examples|Returns|Raises|Attributes|Formula):\s*$", re.M
)


def _markdown(text: str) -> str:
    """ReStructuredText inline literals and roles (``x``, :func:`~a.b`) as Markdown `x`."""
    text = re.sub(r":(?:func|class|mod|meth|data|attr):`~?([^`]+)`", r"``\1``", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _doc_parts(obj: object) -> tuple[str, str]:
    """``(description, example)`` of an object's docstring (either may be empty)."""
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    body = "\n".join(lines[1:]).strip()  # the first line is the registry summary
    match = _SECTIONS.search(body)
    description = body[: match.start()].strip() if match else body
    example = ""
    found = re.search(r"^Examples?:\s*$", body, re.M)
    if found:
        rest = body[found.end() :].splitlines()
        block = []
        for line in rest:
            if line and not line.startswith(" "):
                break
            block.append(line[4:] if line.startswith("    ") else line.strip())
        example = "\n".join(block).strip()
    return _markdown(description), example


def formula(obj: object) -> str:
    """The LaTeX display math of the docstring's ``Formula:`` section (``$$ ... $$``), or ``""``.

    The section is indented under its title, as every Google-style section; on the API page
    mkdocstrings shows it as a "Formula" box and KaTeX renders it.
    """
    doc = inspect.getdoc(obj) or ""
    found = re.search(r"^Formula:\s*$", doc, re.M)
    if not found:  # a factory function (``vit_base_patch16_224``): the class it returns
        built = None
        if inspect.isfunction(obj):
            try:
                built = typing.get_type_hints(obj).get("return")
            except (NameError, TypeError):
                built = None
        return formula(built) if inspect.isclass(built) else ""
    block = []
    for line in doc[found.end() :].splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        block.append(line[4:])
    return "\n".join(block).strip()


def _signature(entry: Entry) -> str:
    try:
        return f"{entry.name}{inspect.signature(entry.obj)}"
    except (TypeError, ValueError):
        return entry.name


def _drawing(entry: Entry) -> str | None:
    options = PATTERN_DRAWINGS.get(entry.name)
    if options is None:
        return None
    from attnzoo import masks

    module = entry.obj(16, num_heads=2, **options)
    return masks.to_string(module.pattern(DRAW_LENGTH, DRAW_LENGTH), DRAW_LENGTH)


def _measured(entry: Entry, bench: dict[str, Any] | None, label) -> list[str]:
    if bench is None:
        return []
    rows = [r for r in bench["results"] if r["name"] == entry.name]
    if not rows:
        return []
    base = {r["length"]: r for r in bench["results"] if r["name"] == "mha"}
    cfg = bench["config"]
    lines = [
        f"## {label('Measured cost')}",
        "",
        f"`attnzoo bench speed`: B={cfg['batch']}, dim {cfg['dim']}, {cfg['heads']} heads, "
        f"{cfg['dtype']}, {cfg['device']}, {cfg['threads']} threads, forward "
        "(`docs/bench/speed.json`)."
        + (f" {cfg['note'][:1].upper()}{cfg['note'][1:]}." if cfg.get("note") else ""),
        "",
        f"| L | {label('time (ms)')} | {label('time / mha')} | {label('peak MB')} | "
        f"{label('memory / mha')} |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: r["length"]):
        ref = base.get(row["length"])
        if row["error"] or row["seconds"] is None:
            lines.append(f"| {row['length']} | {label('not measured')} | | | |")
            continue
        t_ratio = f"{row['seconds'] / ref['seconds']:.2f}" if ref and ref["seconds"] else ""
        peak = row.get("peak_mb")
        m_ratio = f"{peak / ref['peak_mb']:.2f}" if ref and peak and ref.get("peak_mb") else ""
        peak_text = f"{peak:.1f}" if peak else ""
        lines.append(
            f"| {row['length']} | {1e3 * row['seconds']:.1f} | {t_ratio} | {peak_text} | "
            f"{m_ratio} |"
        )
    return [*lines, ""]


def render_page(entry: Entry, lang: str, bench: dict[str, Any] | None = None) -> str:
    """The Markdown page of one registry entry in ``lang`` (``"en"`` or ``"zh"``)."""
    zh = lang == "zh"

    def label(text: str) -> str:
        return _zh.LABELS.get(text, text) if zh else text

    obj = entry.obj
    summary = _zh.SUMMARY[entry.name] if zh else _markdown(entry.summary)
    paper = entry.paper
    family = _zh.FAMILY[entry.family] if zh else entry.family
    lines = [f"# `{entry.name}`", "", f"> {summary}", ""]
    lines += [
        f"- **{label('Paper')}:** [{paper.title}]({paper.url}) — {paper.authors}, {paper.year}"
    ]
    lines += [f"- **{label('Family')}:** {family}"]
    lines += [f"- **{label('Tags')}:** {', '.join(entry.tags)}"]
    lines += [f"- **{label('Complexity')}:** {_markdown(entry.complexity)}"]
    backend = getattr(obj, "backend", None)
    if backend:
        lines += [f"- **{label('Backend')}:** {backend}"]
    lines.append("")
    description, example = _doc_parts(obj)
    math = formula(obj)
    if math:
        lines += [f"## {label('Formula')}", "", math, ""]
    if description:
        lines += [f"## {label('What it computes')}", ""]
        if zh:
            lines += [label("The docstring, as written in the code (English)."), ""]
        lines += [description, ""]
    if inspect.isclass(obj) and any(hasattr(obj, f) for f in FLAGS):
        yes, no = label("yes"), label("no")
        lines += [f"## {label('Capabilities')}", "", "| " + " | ".join(FLAGS) + " |"]
        lines += ["|" + "---|" * len(FLAGS)]
        lines += ["| " + " | ".join(yes if getattr(obj, f, False) else no for f in FLAGS) + " |"]
        lines.append("")
    lines += [f"## {label('Constructor')}", "", "```python", _signature(entry), "```", ""]
    if example:
        lines += [f"## {label('Example')}", "", "```pycon", example, "```", ""]
    drawing = _drawing(entry)
    if drawing is not None:
        options = ", ".join(f"{k}={v}" for k, v in PATTERN_DRAWINGS[entry.name].items())
        lines += [f"## {label('Pattern')}", ""]
        lines += [f"L = {DRAW_LENGTH}, {options} ({label('query')} ↓, {label('key')} →):", ""]
        lines += ["```text", drawing, "```", ""]
    lines += _measured(entry, bench, label)
    lines += [f"## {label('API')}", "", f"::: {obj.__module__}.{obj.__qualname__}", ""]
    return "\n".join(lines)


def _index(family: str, entries: list[Entry], lang: str) -> str:
    zh = lang == "zh"
    title = _zh.FAMILY[family] if zh else family
    name, summary = ("名称", "简介") if zh else ("name", "summary")
    lines = [f"# {title} ({len(entries)})", "", f"| {name} | {summary} |", "|---|---|"]
    for e in entries:
        text = _zh.SUMMARY[e.name] if zh else _markdown(e.summary)
        lines.append(f"| [`{e.name}`]({e.name}.md) | {text} |")
    return "\n".join([*lines, ""])


def write_pages(
    out: str | Path, bench: str | Path | None = None, check: bool = False
) -> list[Path]:
    """Write (or with ``check`` only compare) every page; returns the stale or changed paths."""
    out = Path(out)
    data = None
    if bench is not None and Path(bench).is_file():
        data = json.loads(Path(bench).read_text(encoding="utf-8"))
    wanted: dict[Path, str] = {}
    entries = all_entries()
    for family in FAMILIES:
        members = [e for e in entries if e.family == family]
        if not members:
            continue
        for lang, suffix in (("en", ".md"), ("zh", ".zh.md")):
            wanted[out / family / f"index{suffix}"] = _index(family, members, lang)
            for entry in members:
                wanted[out / family / f"{entry.name}{suffix}"] = render_page(entry, lang, data)
    changed = []
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    known = set(wanted)
    changed += [p for p in sorted(out.rglob("*.md")) if p not in known] if out.is_dir() else []
    return changed
