#!/usr/bin/env bash
# Benchmarks: builds the release binary and the bench client, then prints the table.
#   bench/run.sh                 # everything (about 5 minutes)
#   bench/run.sh --only warm,cold --n 5000
# Extra arguments go to bench/bench.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -c 'import boto3' 2>/dev/null || .venv/bin/pip install -q -r tests/requirements.txt
# The peer (cargo lambda watch) ships as a PyPI package.
[ -x .venv/bin/cargo-lambda ] || .venv/bin/pip install -q -r bench/requirements.txt
cargo build --release --bin ruststack --example bench_client
exec .venv/bin/python bench/bench.py "$@"
