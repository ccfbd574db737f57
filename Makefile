# Two commands: `make demo` runs the main job (the arena), `make test` runs lint and the tests.
# Both create .venv when missing and install with the pinned versions of constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnzoo-installed
PEERS  := local-attention linformer performer-pytorch reformer-pytorch nystrom-attention \
          linear-attention-transformer sinkhorn-transformer einops axial-positional-embedding \
          product-key-memory CoLT5-attention hyper-connections

.PHONY: demo test test-all lint format catalogue bench clean docs docs-serve docs-check

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt torch
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,viz]' mlxtend scikit-learn
	@# timm is only a test oracle; its torchvision dependency has no CPU build, so no deps.
	@# vaderSentiment ships the lexicon the text tasks read; its code (and requests) is unused.
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps timm PyYAML vaderSentiment
	@# the peer packages of `attnzoo bench speed --peers` (pure PyTorch) and their pure-Python deps
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps $(PEERS)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/attnzoo arena --preset quick --out arena-results

lint: $(STAMP)
	$(BIN)/ruff check src tests examples tools conftest.py
	$(BIN)/ruff format --check src tests examples tools conftest.py

test: lint
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not gpu'

format: $(STAMP)
	$(BIN)/ruff format src tests examples tools
	$(BIN)/ruff check --fix src tests examples tools

catalogue: $(STAMP)
	$(BIN)/attnzoo catalogue --output docs/catalogue.md --readme README.md \
	    --pages docs/reference --bench docs/bench/speed.json

DOCS_STAMP := $(VENV)/.attnzoo-docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[docs]'
	@touch $(DOCS_STAMP)

# KaTeX for the site's math, from the npm registry at build time (the site works offline)
KATEX_VERSION := 0.16.22
KATEX := docs/assets/katex
$(KATEX)/VERSION: Makefile tools/fetch_katex.sh
	tools/fetch_katex.sh $(KATEX_VERSION) $(KATEX)

# the site (mkdocs + Material, en/zh): --strict, so a broken link or reference fails
docs: $(DOCS_STAMP) $(KATEX)/VERSION
	$(BIN)/attnzoo catalogue --output docs/catalogue.md --readme README.md \
	    --pages docs/reference --bench docs/bench/speed.json --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# the built site in headless Chromium (Debian's chromium and CJK fonts, installed here when
# missing): every page loads without console error, links and images resolve, no raw math,
# the language switch and the search work in both languages
docs-check: docs
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	@# CJK glyphs for the Chinese pages' screenshots
	@test -d /usr/share/fonts/opentype/noto || apt-get install -y -q fonts-noto-cjk
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt playwright
	$(BIN)/python tools/check_site.py --site site --shots site-check

docs-serve: $(DOCS_STAMP) $(KATEX)/VERSION
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) build dist site site-check .pytest_cache .ruff_cache $(KATEX)
