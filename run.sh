#!/usr/bin/env bash
# Throughput / latency test of a model.py: naive vs KV cache vs speculative decoding.
# Creates the virtual environment on first use. Options: ./run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ]; then
    make venv
fi
exec .venv/bin/python -m infkit.bench "$@"
