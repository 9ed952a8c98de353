# fileops-daemon developer entry points. Everything installs itself on first use.
include mk/emulators.mk

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help run test lint unit fmt clean

help:
	@echo "make run    - local demo: sample projects folder, a plan as dry run, then applied, then undone"
	@echo "make test   - lint + the whole test suite (installs what it needs)"
	@echo "make lint   - ruff and mypy (strict on the package)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check fileops_daemon tests
	$(BIN)/ruff format --check fileops_daemon tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format fileops_daemon tests
	$(BIN)/ruff check --fix fileops_daemon tests

test: lint
	$(BIN)/pytest

run: $(STAMP)
	bash scripts/demo-local.sh

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
