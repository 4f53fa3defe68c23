# The two commands that do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP_RUN)

## make run: install, create the development PKI, start the gateway with the simulators (sandbox)
run: $(STAMP_RUN)
	$(BIN)/gateway serve --sandbox

## make test: install dev extras, make sure a Redis answers, lint, type-check, run every test
test: $(STAMP_DEV)
	@scripts/install-system-deps.sh || echo "(continuing: the tests that need them say so)"
	scripts/with-redis.sh $(MAKE) --no-print-directory lint pytest

pytest: $(STAMP_DEV)
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP_DEV)
	$(BIN)/ruff check gateway adapters signing tests bench
	$(BIN)/ruff format --check gateway adapters signing
	$(BIN)/mypy

## make bench: every benchmark, each printing a comparison table
bench: $(STAMP_DEV)
	scripts/with-redis.sh sh -c 'for b in bench/[a-z]*.py; do echo "== $$b"; $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done'

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
