#!/usr/bin/env bash
# The test command: installs the real peers the integration tests start
# (Debian, PyPI and npm packages; idempotent), then runs every test and ends
# with one "N passed, N failed" line summing all test binaries. Arguments go to
# the test binaries (e.g. `--skip audit::`, or a name filter).
# When it ends (passed, failed or interrupted) it stops every peer the tests
# started and every process left under it; peers running before it are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=integration/peers/peers.sh
bash "$peers" install >/tmp/rme-peers-install.log 2>&1 || {
  tail -n 40 /tmp/rme-peers-install.log; echo "installing the test peers failed" >&2; exit 1; }

before=$(bash "$peers" running)
out=$(mktemp); rc_file=$(mktemp)

kill_tree() { # pid: stop it, end its descendants, then it
  local c
  kill -STOP "$1" 2>/dev/null || return 0
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -TERM "$1" 2>/dev/null || true; kill -CONT "$1" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM HUP
  local c started
  for c in $(ps -o pid= --ppid $$ 2>/dev/null); do kill_tree "$c"; done
  started=$(bash "$peers" running | grep -vxF -e "" -f <(printf '%s\n' "$before") || true)
  if [ -n "$started" ]; then
    # shellcheck disable=SC2086 # one word per peer name
    bash "$peers" stop $started 2>&1 | sed 's/^/test.sh: /' >&2 || true
  fi
  rm -f "$out" "$rc_file"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# In the background, so that a signal is handled at once (bash runs traps only between commands).
{ cargo test --lib --bins --test integration -- --test-threads 4 "$@" 2>&1; echo $? > "$rc_file"; } | tee "$out" &
wait $! || true
status=$(cat "$rc_file"); status=${status:-1}
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
exit "$status"
