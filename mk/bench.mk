# `make bench`: the benchmark suite (bench/run.py), included by the top-level Makefile.
# Prints a table of fileops vs its baselines (medians, ratios) and writes the same to
# bench-results/latest.json (the pyinstrument profile and the logs go beside it).
# About 6 minutes on 2 cores. Pass options with BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--only core local"      (see .venv/bin/python bench/run.py --help)
# Needs: the venv, the emulators and gcsfuse (mk/emulators.mk), rclone and fuse3
# (scripts/install-system-deps.sh), pyinstrument in the venv (installed here if missing).

# Keep the including Makefile's default goal even if it includes this file at its top.
BENCH_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

# Defaults for use before (or without) the top-level Makefile's definitions; same values.
VENV ?= .venv
BIN ?= $(VENV)/bin
STAMP ?= $(VENV)/.installed
BENCH_ARGS ?=

.PHONY: bench bench-tools

bench: $(STAMP) emulators gcsfuse bench-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# rclone is the local-move baseline, fuse3 (fusermount3) lets gcsfuse mount; the script
# installs whichever is missing (apt-get, needs root or sudo) and is a no-op otherwise.
bench-tools: $(STAMP)
	@if ! command -v rclone >/dev/null 2>&1 || ! command -v fusermount3 >/dev/null 2>&1; then \
		bash scripts/install-system-deps.sh; \
	fi
	@$(BIN)/python -c 'import pyinstrument' 2>/dev/null || $(BIN)/pip install --quiet pyinstrument \
		|| echo "bench: could not install pyinstrument; the profile section will fail alone" >&2

.DEFAULT_GOAL := $(BENCH_SAVED_DEFAULT_GOAL)
