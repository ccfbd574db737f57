r"""Check the built documentation site in headless Chromium (``make docs-check``).

Serves ``site/`` on a local port and, with Playwright driving Debian's ``/usr/bin/chromium``:

- loads every page: no console error, no failed same-origin request, every image decoded;
- every internal link points to a file of the site;
- no raw ``$...$`` or ``\\(...\\)`` left in the text outside code, every formula rendered by
  KaTeX and none with a KaTeX error;
- the language switch of a mechanism page reaches the Chinese page of the same mechanism;
- the search box finds a mechanism by name on the English and the Chinese site;
- every public name (``__all__``) of the API modules has its section on its API page, in both
  languages;
- writes screenshots of the home page, a mechanism page and a guide in both languages.

Exit status 1 with one line per problem when anything fails.

Usage: ``python tools/check_site.py [--site site] [--shots site-check]``
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

CHROMIUM = "/usr/bin/chromium"
RAW_MATH = re.compile(r"(?<![\w$])\$[^$\s][^$\n]*\$(?![\w$])|\\\(|\\\[")
# API page (under api/) -> the module whose every public name it documents
API_PAGES = {
    "attnzoo": "attnzoo",
    "functional": "attnzoo.functional",
    "masks": "attnzoo.masks",
    "registry": "attnzoo.registry",
    "layers": "attnzoo.layers",
    "viz": "attnzoo.viz",
    "interop": "attnzoo.sequence.interop",
}
SHOTS = {
    "home": "",
    "mechanism": "reference/efficient/local/",
    "guide": "attention/",
}


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` on a free local port in a thread; returns the server and its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no line per request
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # a closed tab: not an error
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def site_file(root: Path, base: str, url: str) -> Path | None:
    """The file of ``root`` that ``url`` (same origin) resolves to, or None if it has none."""
    path = unquote(urlparse(url).path)[len(urlparse(base).path) :]
    target = root / path
    if target.is_dir() or path.endswith("/") or path == "":
        target = target / "index.html"
    return target if target.is_file() else None


def check_pages(page, root: Path, base: str, problems: list[str]) -> None:
    """Load every page: console errors, failed requests, images, internal links, raw math."""
    pages = sorted(p for p in root.rglob("*.html") if p.name != "404.html")
    current: dict[str, list[str]] = {"errors": [], "failed": []}

    def on_console(message) -> None:
        if message.type == "error":
            current["errors"].append(message.text)

    def on_response(response) -> None:
        if response.url.startswith(base) and response.status >= 400:
            current["failed"].append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: current["errors"].append(str(error)))
    page.on("response", on_response)
    for html in pages:
        current["errors"], current["failed"] = [], []
        url = base + str(html.relative_to(root)).removesuffix("index.html")
        page.goto(url, wait_until="load")
        where = url[len(base) :] or "/"
        problems += [f"{where}: console error: {e}" for e in current["errors"]]
        problems += [f"{where}: failed request {f}" for f in current["failed"]]
        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        problems += [f"{where}: image does not load: {src}" for src in broken]
        for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
            if href.startswith(base) and site_file(root, base, href.split("#")[0]) is None:
                problems.append(f"{where}: broken internal link {href}")
        text = page.evaluate(
            """() => { const body = document.querySelector('article') || document.body;
                       const copy = body.cloneNode(true);
                       copy.querySelectorAll('pre, code, script, style, .katex-mathml')
                           .forEach(e => e.remove());
                       return copy.innerText; }"""
        )
        math = page.evaluate(
            """() => ({
                 errors: [...document.querySelectorAll('.katex-error')]
                     .map(e => e.title || e.textContent),
                 unrendered: [...document.querySelectorAll('.arithmatex')]
                     .filter(e => !e.querySelector('.katex')).map(e => e.textContent),
               })"""
        )
        problems += [f"{where}: KaTeX error: {e[:80]}" for e in math["errors"]]
        problems += [f"{where}: math left unrendered: {e[:40]!r}" for e in math["unrendered"]]
        for match in RAW_MATH.finditer(text):
            problems.append(f"{where}: unrendered math {match.group(0)[:40]!r}")
    print(f"checked {len(pages)} pages")


def check_language_switch(page, base: str, problems: list[str]) -> None:
    """The language switch of ``local``'s page leads to the Chinese page of ``local``."""
    page.goto(base + "reference/efficient/local/")
    target = page.eval_on_selector_all(
        "a[hreflang='zh'], a[lang='zh']", "as => as.map(a => a.href)"
    )
    if not target:
        problems.append("language switch: no link to Chinese on reference/efficient/local/")
        return
    page.goto(target[0])
    if not page.url.rstrip("/").endswith("zh/reference/efficient/local"):
        problems.append(f"language switch: reached {page.url}, not the Chinese page of local")
    elif "局部" not in page.inner_text("article"):
        problems.append("language switch: the Chinese page of local has no Chinese summary")


def check_search(page, base: str, problems: list[str]) -> None:
    """The search box finds ``performer`` on the English and on the Chinese site."""
    english = "a[href*='/reference/efficient/performer/']:not([href*='/zh/'])"
    chinese = "a[href*='/zh/reference/efficient/performer/']"
    for prefix, expect in (("", english), ("zh/", chinese)):
        page.goto(base + prefix)
        box = page.locator("input[data-md-component='search-query']")
        box.click()
        for _ in range(4):  # the first query may run before the worker has its index
            box.fill("")
            box.type("performer", delay=50)
            try:
                page.wait_for_selector(f".md-search-result {expect}", timeout=10000)
                break
            except Exception:  # a timeout: try again, report after the last try
                continue
        else:
            problems.append(f"search on /{prefix}: no result matching {expect}")


def check_api(root: Path, problems: list[str]) -> None:
    """Every public, non-module name of each API module has an anchor on its page."""
    import importlib
    import inspect

    for slug, module_name in API_PAGES.items():
        module = importlib.import_module(module_name)
        for lang in ("", "zh/"):
            page = root / lang / "api" / slug / "index.html"
            if not page.is_file():
                problems.append(f"/{lang}api/{slug}/: missing (the API of {module_name})")
                continue
            anchors = set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
            for name in module.__all__:
                obj = getattr(module, name)
                if inspect.ismodule(obj) or name.startswith("__"):
                    continue
                # a function that shares its name with its submodule is documented by full path
                home = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
                if not {f"{module_name}.{name}", home} & anchors:
                    problems.append(f"/{lang}api/{slug}/: no section for {module_name}.{name}")


def main(argv: list[str] | None = None) -> int:
    """Run every check; 1 when any fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="site")
    parser.add_argument("--shots", default="site-check")
    args = parser.parse_args(argv)
    root = Path(args.site).resolve()
    if not (root / "index.html").is_file():
        print(f"no built site in {root}: run `make docs` first", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    server, base = serve(root)
    problems: list[str] = []
    check_api(root, problems)
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            check_pages(page, root, base, problems)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            check_language_switch(page, base, problems)
            check_search(page, base, problems)
            for lang in ("", "zh/"):
                for name, path in SHOTS.items():
                    page.goto(urljoin(base, lang + path))
                    page.screenshot(path=str(shots / f"{name}-{lang.strip('/') or 'en'}.png"))
            browser.close()
    finally:
        server.shutdown()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s); screenshots in {shots}/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
