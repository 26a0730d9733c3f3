# Two commands do everything on a fresh machine: `make demo` and `make test` (both install on first use).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PYTEST_ARGS ?= -n 2
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# Installed packages with their bytecode compiled: where PYTHONDONTWRITEBYTECODE is set, every process start would
# otherwise compile every module it imports (about 1 s per plugin process; scripts/meltano_plugins.py).
export UV_COMPILE_BYTECODE := 1

.PHONY: install lint typecheck unit test demo bench matrix dist clean

# .venv from uv.lock, then `meltano install` of every plugin in meltano.yml (skipped while nothing it installs changed),
# then this checkout's editable sources compiled.
install: $(VENV)/.installed
	@$(BIN)/python -m scripts.meltano_plugins

$(VENV)/.installed: pyproject.toml uv.lock $(wildcard */pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv sync --frozen --quiet
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# The whole fault and crash matrices (every fault kind alone, every crash point, more seeds); `make test` runs a subset.
matrix: install
	MKTDYN_FULL_MATRIX=1 $(BIN)/pytest $(PYTEST_ARGS) --durations=0 tests/target/test_fault_matrix.py \
		tests/target/test_crash_matrix.py tests/target/test_crash_recovery.py tests/target/test_convergence.py

demo: install
	$(BIN)/python -m scripts.demo

bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# Wheels of every package into dist/, for `pip install --find-links dist tap-marketo-leads` on another machine.
# MKTDYN_REQUIRE_BY_NAME set (empty) makes the plugins require each other by name, not by this checkout's path.
dist: install
	rm -rf dist
	MKTDYN_REQUIRE_BY_NAME= $(BIN)/uv build --all-packages --wheel --out-dir dist --quiet
	@ls dist

clean:
	rm -rf $(VENV) .mktdyn .meltano output dist .pytest_cache .mypy_cache .ruff_cache
