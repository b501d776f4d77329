#!/usr/bin/env bash
# The throughput test and the latency test (each on its own workload): naive generate vs
# generate_kv vs generate_speculative, and the transformers baselines on the same weights.
# `./run.sh --help` lists the options and says which workload each figure comes from.
# On a fresh machine it first builds .venv from the pinned requirements (make venv).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ]; then
  echo "run.sh: setting up .venv (once)" >&2
  if command -v make > /dev/null; then
    make -s venv
  else
    python3 -m venv .venv
    .venv/bin/python -m pip install -q -r requirements.txt
    touch .venv/.installed
  fi
fi
exec .venv/bin/python -m infkit.bench "$@"
