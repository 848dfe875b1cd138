#!/usr/bin/env bash
# A seeded chaos soak of `rme push` against the real receivers at once
# (VictoriaMetrics via remote-write, rotel via OTLP/HTTP, Etsy statsd over TCP
# → carbon), with every fault kind; see examples/soak.py for what each does.
#
# usage: examples/soak.sh [--seed N] [--duration SECS] [--faults kind,kind|all] [--rme PATH] [--rate N]
#                         [--own-peers] [--no-statsd-probe] [--keep]
#        (or SEED=, DURATION=, FAULTS=, RME=, RATE= in the environment)
#
#   examples/soak.sh --duration 200                         # every fault kind, a random seed
#   examples/soak.sh --seed 7 --duration 200                # replays seed 7's fault plan
#   examples/soak.sh --seed 7 --duration 200 --faults kill9,sighup   # narrows it down
#
# Fault kinds: rotate_create copytruncate outage kill9 sigterm sighup once diskfull
# slow http5xx http429. diskfull mounts a small tmpfs on the state_dir (root only).
# It prints the seed and the fault plan first (a failure can be replayed), then per sink:
# delivered, lost, counted twice, repeated samples, counter decreases, OTLP start-time
# changes. Exit status 1 when remote_write or OTLP lost or doubled anything, went backwards,
# or stored more bodies twice than there were kill -9s (one each may repeat: at least once).
# Uses integration/peers/peers.sh (run `peers.sh install` once); set PEERS_DIR and the
# *_PORT variables to keep it apart from other runs, or pass --own-peers (private peers on free
# ports, stopped at the end). Without it, it leaves the peers it started running
# (`peers.sh stop all` ends them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RME:-}" ] && ! printf '%s\n' "$@" | grep -q -- '^--rme'; then
  cargo build --quiet --bin rme
fi
exec python3 examples/soak.py "$@"
