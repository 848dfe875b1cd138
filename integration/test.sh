#!/usr/bin/env bash
# The test command: installs the real peers the integration tests start
# (Debian, PyPI and npm packages; idempotent), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash integration/peers/peers.sh install >/tmp/rme-peers-install.log 2>&1 || {
  tail -n 40 /tmp/rme-peers-install.log; echo "installing the test peers failed" >&2; exit 1; }
cargo test --all-targets -- --test-threads 4
