# fileops-daemon developer entry points. Everything installs itself on first use.
include mk/emulators.mk
include mk/bench.mk

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help run demo-local test lint fmt clean venv install dist

help:
	@echo "make run    - emulators + daemon on ./run/projects; the seed plan as a dry run, then applied"
	@echo "             (state kept between runs; RESET=1 starts afresh, APPROVAL=1 holds plans for approval)"
	@echo "make demo-local - the local CLI only: plan, apply, undo on ./run/projects"
	@echo "make test   - lint + the whole test suite (installs what it needs)"
	@echo "make lint   - ruff, mypy (strict on the package) and the import layers (import-linter)"
	@echo "make bench  - benchmarks: figures and ratios against baselines measured in the same run"
	@echo "make install - on a VM, as root: venv under /opt/fileops, units, env file, user"
	@echo "make dist   - the wheel (extras agent, mcp) into dist/, to pip install or upload to an index"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@# bytecode now: with PYTHONDONTWRITEBYTECODE every run would compile the package again
	$(BIN)/python -m compileall -q fileops_daemon
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check fileops_daemon tests scripts bench
	$(BIN)/ruff format --check fileops_daemon tests scripts bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format fileops_daemon tests scripts bench
	$(BIN)/ruff check --fix fileops_daemon tests scripts bench

test: lint system-deps
	$(BIN)/pytest

# The wheel an agent machine installs: pip install 'dist/fileops_daemon-VERSION-py3-none-any.whl[agent]'
# (or upload it to a private index; docs/agents.md). DIST=elsewhere puts it elsewhere.
DIST ?= dist
dist: $(STAMP)
	rm -rf $(DIST)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	@ls $(DIST)/*.whl

# Onto a GCE VM, as root: FILEOPS_PROJECTS_BUCKET=my-bucket make install (see docs/deploy-gce.md).
install:
	bash scripts/install.sh

# make run RESET=1: start from an empty ./run; make run APPROVAL=1: applied plans wait for an
# operator's `fileops approve` (a key is made into ./run and exported in run/env.sh).
TRUTHY := 1 yes true on
RUN_ARGS = $(strip $(if $(filter $(TRUTHY),$(RESET)),--reset) \
	$(if $(filter $(TRUTHY),$(APPROVAL)),--approval))
run: $(STAMP) emulators
	$(BIN)/python scripts/run_stack.py $(RUN_ARGS)

demo-local: $(STAMP)
	bash scripts/demo-local.sh

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
