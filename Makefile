# Two set-up commands for a fresh machine: `make demo` and `make test`.
# `make test` installs Debian's chromium with apt-get when it is missing (for the report's
# browser test): that needs root, so as another user install it first (`sudo apt-get install
# chromium`) or the apt-get line fails; without chromium the browser test is skipped.
# Every target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test docs lint bench compat zoo-demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pinned first so nothing later can resolve torch to another build. torch 2.14.1 +
	# torchvision 0.29.1 lie on this machine's disk (torchvision fails to import beside 2.13.0);
	# the model-source extras (torchvision, timm, transformers) are dev-only, never required.
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/netxray demo

# ruff, the docs site (strict), then pytest. The apt-get line runs only when chromium is
# missing and needs root (see the top of this file).
test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

# the docs site (mkdocs.yml: Markdown pages under docs/ + the API reference from the docstrings)
# into site/, warnings are errors; `$(BIN)/mkdocs serve` previews it while you edit
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# every torchvision classification model, Hugging Face BERT/RoBERTa/GPT-2/Llama/ViT from small
# configs and a dozen timm models through every lens; writes docs/compat.md (resumable: delete
# runs/compat.jsonl to measure again; `python benchmarks/compat.py --only m1,m2` re-measures those
# models and rewrites their rows; a second `make compat` beside the first shares the work)
compat: $(STAMP)
	$(BIN)/python benchmarks/compat.py --out docs/compat.md --jsonl runs/compat.jsonl

zoo-demo: $(STAMP)
	$(BIN)/netxray zoo demo --out runs/zoo-demo --workers 2

bench: $(STAMP)
	# the side-by-side spectral benchmark needs weightwatcher (the bench extra; torch stays)
	$(BIN)/pip install --quiet -e ".[bench]"
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done
	# the transformer-size goals of issue 12: BERT-base signature / forward, ViT-B/16 scan / forward
	@echo "== benchmarks/bench_report.py --bert"; $(BIN)/python benchmarks/bench_report.py --bert
	@echo "== benchmarks/bench_report.py --vit-b16"; $(BIN)/python benchmarks/bench_report.py --vit-b16

clean:
	rm -rf $(VENV) .pytest_cache build site src/*.egg-info
