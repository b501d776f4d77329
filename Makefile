# Course kit: fast GPT-2 inference. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU-only build.
TORCH_INDEX ?=

.PHONY: help venv lock-py310 test test-grading test-slow lint format starter check-starter bench clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## create .venv from the pinned requirements (once)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements.txt
	touch $@

PYTHON310 ?= python3.10
lock-py310:  ## regenerate autograder/constraints-py310.txt (Gradescope's Python 3.10; PYTHON310=path if not on PATH)
	mkdir -p build && rm -rf build/venv310 && $(PYTHON310) -m venv build/venv310
	grep -v '^torch' autograder/requirements.txt > build/requirements-no-torch.txt
	$(PY) -c "import importlib.metadata as m; print(*[r for r in m.requires('torch') if 'extra ==' not in r], sep='\n')" >> build/requirements-no-torch.txt
	build/venv310/bin/python -m pip install -q -r build/requirements-no-torch.txt
	{ grep '^#' autograder/constraints-py310.txt; build/venv310/bin/python -m pip freeze --all --exclude pip; } > build/constraints.txt
	mv build/constraints.txt autograder/constraints-py310.txt

test: venv  ## lint, starter drift check, and the fast tests (CI runs it first, then test-grading)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m staff.starter --check
	$(PY) -m pytest -q -m "not slow and not grading" tests

test-grading: venv  ## the complete gradings (solution, starter, speed verdicts, cheats, a class export)
	$(PY) -m pytest -q -m "grading and not slow" tests

test-slow: venv  ## every test: the fast ones, the gradings and the slow checks (GPT-2-sized fixtures, repeated grading)
	$(PY) -m pytest -q -m "slow or not slow" tests

lint: venv  ## ruff lint
	$(PY) -m ruff check .

format: venv  ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

starter: venv  ## regenerate starter/model.py from solution/model.py
	$(PY) -m staff.starter

check-starter: venv  ## fail if starter/model.py is stale
	$(PY) -m staff.starter --check

bench: venv  ## the throughput / latency test (same as ./run.sh)
	./run.sh

# The Colab notebook: notebooks/inference.py is its source (jupytext percent format),
# staff/build_notebook.py writes the .ipynb, staff/execute_notebook.py runs it in a kernel.
.PHONY: notebook notebook-build notebook-starter

notebook-build: venv  ## regenerate notebooks/inference.ipynb from notebooks/inference.py
	$(PY) -m staff.build_notebook

notebook: venv  ## run the notebook headless against the solution (offline stand-ins); fails on any cell error
	INFKIT_MODEL=$(CURDIR)/solution/model.py $(PY) -m staff.execute_notebook

notebook-starter: venv  ## run it against the starter: must stop at the first stub with a short message
	$(PY) -m staff.execute_notebook --starter

# The written part: the calculator writes the answers, TeX builds both PDFs (needs pdflatex).
.PHONY: written
GPU ?= t4

written: venv  ## build/written/: template.pdf, key.pdf (staff), answers.json; GPU=t4|a100|h100
	$(PY) -m staff.inference_math --gpu $(GPU) --out build/written
	written/build.sh build/written

# The Gradescope autograder (autograder/) and the student handout.
.PHONY: autograder grade grade-under-load handout
SUBMISSION ?= starter/model.py
RESULTS ?= build/results.json

autograder: venv check-starter  ## build build/autograder.zip (upload it to Gradescope)
	$(PY) -m staff.build autograder

grade-under-load: venv  ## grade the solution RUNS times beside HOGS busy processes [QUOTA=0.5 of a core] (load never costs points)
	$(PY) -m staff.under_load --runs $(or $(RUNS),10) --hogs $(or $(HOGS),2) $(if $(QUOTA),--cpu-quota $(QUOTA))

grade: venv  ## grade one upload as Gradescope would: make grade SUBMISSION=path/model.py [RESULTS=...] [ROW="KV 5/5"]
	$(PY) -m staff.local $(SUBMISSION) --results $(RESULTS) $(if $(ROW),--row "$(ROW)")

# A whole class through the same flow: grades.csv, results/, report.html (staff/grade_all.py).
.PHONY: grade-all
OUT ?= build/grades
JOBS ?= 0

grade-all: venv  ## grade a class: make grade-all SUBMISSIONS=folder-or-export.zip [OUT=build/grades] [JOBS=n] [AGAINST=old/grades.csv]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade-all SUBMISSIONS=folder-or-export.zip [OUT=...] [JOBS=n]"; exit 2; }
	$(PY) -m staff.grade_all "$(SUBMISSIONS)" --out "$(OUT)" --jobs $(JOBS) $(if $(AGAINST),--against "$(AGAINST)")

handout: venv check-starter  ## build build/handout.zip for students (stops on the YOUR-ORG placeholder; ALLOW_PLACEHOLDER=1 for a local try)
	$(PY) -m staff.build handout

clean:  ## remove build outputs (keeps .venv)
	rm -rf build .pytest_cache .ruff_cache
