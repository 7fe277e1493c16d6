#!/usr/bin/env bash
# The whole test suite: Rust unit tests, then the integration tests that start the real
# `ruststack` binary and drive it with boto3, the AWS CLI and awslambdaric.
# Docker tests run too; opt out explicitly with RUSTSTACK_SKIP_DOCKER=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt

cargo build --locked
# Lints from Cargo.toml's [lints] (and clippy.toml); any warning fails the suite.
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# The Rust custom-runtime fixture (the official lambda_runtime crate), cached in target/fixtures.
cargo build --release --manifest-path tests/fixtures/rust-runtime/Cargo.toml --target-dir target/fixtures

if [ "${RUSTSTACK_SKIP_DOCKER:-0}" != "1" ] && [ -f images/build.sh ]; then
  bash images/build.sh
fi
# tests/test_remote_docker.py reaches the engine over ssh through an sshd of its own.
if [ "${RUSTSTACK_SKIP_DOCKER:-0}" != "1" ] && [ ! -x /usr/sbin/sshd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null
fi

export RUSTSTACK_BIN="$PWD/target/debug/ruststack"
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
