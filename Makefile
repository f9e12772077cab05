# kagent — every developer and CI entry point. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements.txt runner/requirements.txt requirements-dev.txt

.PHONY: install test test-fast lint typecheck demo bench clean

install: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

## test: lint, types and the whole suite (slow end-to-end tests included), as CI runs it
test: lint typecheck
	$(PY) -m pytest -n 2

## test-fast: the suite without the slow end-to-end tests
test-fast: install
	$(PY) -m pytest -m "not slow" -n 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local out
