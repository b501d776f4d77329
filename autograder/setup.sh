#!/usr/bin/env bash
# Gradescope runs this once per autograder upload, as root, with internet access.
# It builds a virtual environment (Gradescope's own python3 must stay untouched), installs the
# pinned CPU-only torch and the rest, creates the unprivileged account that runs student code,
# and grades the starter once, so a broken install fails the build instead of every submission.
set -euo pipefail

SOURCE="${AUTOGRADER_ROOT:-/autograder}/source"
VENV="${INFKIT_VENV:-/opt/infkit-venv}"
WORKER_USER=autograder-student
DOWNLOAD_WEIGHTS="${DOWNLOAD_WEIGHTS:-0}"  # 1: also cache GPT-2's released weights (not used in grading)

echo "setup: python3 is $(python3 --version 2>&1)"
if ! python3 -m venv --help > /dev/null 2>&1 || ! python3 -c "import ensurepip" > /dev/null 2>&1; then
    apt-get install -y --no-install-recommends python3-venv
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --no-cache-dir --upgrade "pip==24.2"
"$VENV/bin/python" -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
# On Python 3.10 (Gradescope's image) every other package is held at the versions tested there.
CONSTRAINTS=()
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
    CONSTRAINTS=(-c "$SOURCE/constraints-py310.txt")
fi
"$VENV/bin/python" -m pip install --no-cache-dir ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"} -r "$SOURCE/requirements.txt"
chmod -R a+rX "$VENV"

# Verify the install: imports, the offline tokenizer, and a CPU-only torch.
cd "$SOURCE"
"$VENV/bin/python" - << 'PY'
import tiktoken, torch, transformers  # noqa: F401
from infkit import tokenizer
assert tokenizer.decode(tokenizer.encode("Call me Ishmael.")) == "Call me Ishmael."
print(f"setup: torch {torch.__version__} (cuda: {torch.cuda.is_available()}), transformers {transformers.__version__}")
PY

if ! id "$WORKER_USER" > /dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$WORKER_USER" \
        || echo "setup: could not create $WORKER_USER; the harness falls back to 'nobody'"
fi

if [ "$DOWNLOAD_WEIGHTS" = "1" ]; then
    "$VENV/bin/python" -c "from transformers import GPT2LMHeadModel as M; M.from_pretrained('gpt2')"
fi

# Grade the starter once through the real entry point: it must score 0 with a results.json.
tmp="$(mktemp -d)"
mkdir -p "$tmp/submission" "$tmp/results"
cp "$SOURCE/starter/model.py" "$tmp/submission/model.py"
AUTOGRADER_ROOT="$tmp" AUTOGRADER_SOURCE="$SOURCE" AUTOGRADER_TESTS=buffers INFKIT_VENV="$VENV" \
    bash "$SOURCE/run_autograder"
"$VENV/bin/python" -c "import json, sys; r = json.load(open(sys.argv[1])); assert r['score'] == 0 and r['tests'], r" \
    "$tmp/results/results.json"
rm -rf "$tmp"
echo "setup: done"
