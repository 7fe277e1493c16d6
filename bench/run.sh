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
{ [ -x .venv/bin/cargo-lambda ] && .venv/bin/python -c "import awslambdaric" 2>/dev/null; } || .venv/bin/pip install -q -r bench/requirements.txt
# AWS's Runtime Interface Emulator, the side-by-side peer: a binary inside the aws-sam-cli wheel
# (pinned; bench.py's RIE_VERSION names the same one), cached under target/rie/.
RIE_VERSION=1.170.0
RIE_DIR=target/rie/$RIE_VERSION
if [ ! -x "$RIE_DIR/aws-lambda-rie-x86_64" ]; then
    mkdir -p "$RIE_DIR"
    .venv/bin/pip download -q --no-deps -d "$RIE_DIR" "aws-sam-cli==$RIE_VERSION"
    .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("samcli/local/rapid/aws-lambda-rie-x86_64", sys.argv[2])' \
        "$RIE_DIR/aws_sam_cli-$RIE_VERSION-py3-none-any.whl" "$RIE_DIR/x"
    mv "$RIE_DIR/x/samcli/local/rapid/aws-lambda-rie-x86_64" "$RIE_DIR/" && rm -rf "$RIE_DIR/x"
    chmod +x "$RIE_DIR/aws-lambda-rie-x86_64"
fi
cargo build --release --bin ruststack --example bench_client
exec .venv/bin/python bench/bench.py "$@"
