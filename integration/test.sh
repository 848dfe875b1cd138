#!/usr/bin/env bash
# The test command: installs the real peers the integration tests start
# (Debian, PyPI and npm packages; idempotent), then runs every test and ends
# with one "N passed, N failed" line summing all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash integration/peers/peers.sh install >/tmp/rme-peers-install.log 2>&1 || {
  tail -n 40 /tmp/rme-peers-install.log; echo "installing the test peers failed" >&2; exit 1; }
out=$(mktemp)
status=0
cargo test --lib --bins --test integration -- --test-threads 4 2>&1 | tee "$out" || status=$?
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
rm -f "$out"
exit "$status"
