#!/usr/bin/env bash
# Gradescope runs this once per autograder upload, as root, with internet access.
# It builds a virtual environment (Gradescope's own python3 must stay untouched), installs the
# pinned CPU-only torch and the rest (every package held by the lock on Python 3.10), creates
# the unprivileged account that runs student code, and proves the build can grade
# (python -m autograder.selfcheck: a CPU torch, the account can run the worker, and the starter
# graded through run_autograder gets "not implemented yet" from a worker that imported torch and
# the kit under the real limits). Any failure stops the build here, not on every submission.
set -euo pipefail

SOURCE="${AUTOGRADER_ROOT:-/autograder}/source"
VENV="${INFKIT_VENV:-/opt/infkit-venv}"
WORKER_USER=autograder-student
DOWNLOAD_WEIGHTS="${DOWNLOAD_WEIGHTS:-0}"  # 1: also cache GPT-2's released weights (not used in grading)

echo "setup: python3 is $(python3 --version 2>&1)"
if ! python3 -m venv --help > /dev/null 2>&1 || ! python3 -c "import ensurepip" > /dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends python3-venv
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --no-cache-dir --upgrade "pip==24.2"
# torch alone from the PyTorch CPU index (PyPI's Linux torch is the CUDA build, gigabytes that
# cannot load under a worker's memory cap); its dependencies and everything else from PyPI. On
# Python 3.10 (Gradescope's image) every one of them is held at the version tested there.
"$VENV/bin/python" -m pip install --no-cache-dir --no-deps --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
CONSTRAINTS=()
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
    CONSTRAINTS=(-c "$SOURCE/autograder/constraints-py310.txt")
fi
"$VENV/bin/python" -m pip install --no-cache-dir ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"} -r "$SOURCE/autograder/requirements.txt"
chmod -R a+rX "$VENV"

if ! id "$WORKER_USER" > /dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$WORKER_USER" \
        || echo "setup: could not create $WORKER_USER; the harness falls back to 'nobody'"
fi

if [ "$DOWNLOAD_WEIGHTS" = "1" ]; then
    "$VENV/bin/python" -c "from transformers import GPT2LMHeadModel as M; M.from_pretrained('gpt2')"
fi

# The build proves itself: see autograder/selfcheck.py for what is checked.
cd "$SOURCE"
if ! PYTHONPATH="$SOURCE" "$VENV/bin/python" -m autograder.selfcheck; then
    echo "setup: FAILED: the autograder cannot grade on this build (see selfcheck's message above)" >&2
    exit 1
fi
echo "setup: done"
