# Course kit: fast GPT-2 inference. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU-only build.
TORCH_INDEX ?=

.PHONY: help venv test test-slow lint format starter check-starter bench clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## create .venv from the pinned requirements (once)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements.txt
	touch $@

test: venv  ## lint, starter drift check, and the fast test suites (what CI runs)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m infkit.starter --check
	$(PY) -m pytest -q tests

test-slow: venv  ## the slow checks too (GPT-2-sized fixtures, repeated grading)
	$(PY) -m pytest -q -m "slow or not slow" tests

lint: venv  ## ruff lint
	$(PY) -m ruff check .

format: venv  ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

starter: venv  ## regenerate starter/model.py from solution/model.py
	$(PY) -m infkit.starter

check-starter: venv  ## fail if starter/model.py is stale
	$(PY) -m infkit.starter --check

bench: venv  ## the throughput / latency test (same as ./run.sh)
	./run.sh

clean:  ## remove build outputs (keeps .venv)
	rm -rf build .pytest_cache .ruff_cache
