#!/usr/bin/env bash
# Benchmarks (not tests): each prints a figure measured in this run.
#   1. `rme push --once` over a generated 1 GiB fail2ban log (stdout sink to /dev/null)
#      against `wc -l` on the same file: both times and the ratio.
#   2. Peak RSS of a process holding 100k series (examples/bench_series.rs, /usr/bin/time -v).
#   3. Idle CPU of `rme push` over 60 s (interval 10 s, a log nobody writes), from /proc/PID/stat.
#   4. Series, RSS and lines/s of a 100k-attacker reaction log, top + geoip vs no label rules
#      (examples/bench_attackers.sh).
# Parser lines/s against mtail: examples/bench_parse.rs; remote-write encoding: examples/bench_remote_write.rs.
# Needs /usr/bin/time (Debian package `time`) and python3. Takes about 3 minutes
# after the release build; BENCH_DIR (default: a temp dir) needs 1.1 GiB free.
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${BENCH_GIB:-1}
IDLE_SECS=${BENCH_IDLE_SECS:-60}

cargo build --release --locked --bin rme --example bench_series
rme=$PWD/target/release/rme
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rme-bench.XXXXXX")
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# ---------------------------------------------------------------- 1. push --once vs wc -l
log=$dir/fail2ban.log
python3 - "$log" "$GIB" <<'PY'
import random, sys
# One ~1 MiB block of fail2ban 1.0 lines (mostly Found, some Ban/Unban, a few
# ignored INFO lines), written over and over: fast, and every line well-formed.
random.seed(7)
jails = ["sshd", "nginx-http-auth", "postfix", "dovecot", "recidive"]
lines = []
for i in range(9000):
    ts = f"2026-11-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d},{i % 1000:03d}"
    jail, ip = random.choice(jails), f"203.0.{random.randrange(256)}.{random.randrange(256)}"
    r = random.random()
    if r < 0.80:
        lines.append(f"{ts} fail2ban.filter         [1234]: INFO    [{jail}] Found {ip} - {ts[:19]}")
    elif r < 0.88:
        lines.append(f"{ts} fail2ban.actions        [1234]: NOTICE  [{jail}] Ban {ip}")
    elif r < 0.96:
        lines.append(f"{ts} fail2ban.actions        [1234]: NOTICE  [{jail}] Unban {ip}")
    else:
        lines.append(f"{ts} fail2ban.filter         [1234]: INFO    [{jail}] Ignore {ip} by ip")
block = ("\n".join(lines) + "\n").encode()
target = int(float(sys.argv[2]) * (1 << 30))
with open(sys.argv[1], "wb") as f:
    for _ in range(target // len(block)):
        f.write(block)
PY
size=$(stat -c %s "$log")
cat > "$dir/rme.toml" <<EOF2
state_dir = "$dir/state"
[[sources]]
type = "fail2ban"
log = "$log"
[[sinks]]
type = "stdout"
EOF2
cat "$log" > /dev/null # both runs read from the page cache
t0=$(now); lines=$(wc -l < "$log"); t1=$(now)
wc_s=$(secs "$t0" "$t1")
t0=$(now); "$rme" push --once --config "$dir/rme.toml" > /dev/null; t1=$(now)
rme_s=$(secs "$t0" "$t1")
# A second run reads nothing new and prints the counters the state file kept.
totals=$(RME_LOG=error "$rme" push --once --config "$dir/rme.toml")
total() { awk -v m="$1" 'index($0, m) == 1 {print $2}' <<< "$totals"; }
read_lines=$(total 'rme_lines_read_total{source="fail2ban"}')
unparsed=$(total 'rme_lines_unparsed_total{source="fail2ban"}')
bans=$(total 'fail2ban_bans_total{jail="sshd"}')
rm -f "$log"
echo
echo "== push --once over a $((size >> 20)) MiB fail2ban log ($lines lines; rme read ${read_lines:-?}, unparsed ${unparsed:-0}, sshd bans ${bans:-?})"
python3 -c "
wc, rme, size, lines = $wc_s, $rme_s, $size, $lines
print(f'wc -l:          {wc:7.2f} s  ({size / wc / 2**20:7.0f} MiB/s)')
print(f'rme push --once:{rme:7.2f} s  ({size / rme / 2**20:7.0f} MiB/s, {lines / rme / 1e6:.2f} M lines/s)')
print(f'ratio rme / wc: {rme / wc:7.1f}x')"

# ---------------------------------------------------------------- 2. RSS with 100k series
echo
echo "== 100 000 series (examples/bench_series.rs)"
/usr/bin/time -v target/release/examples/bench_series 100000 2> "$dir/time.txt"
awk -F': ' '/Maximum resident set size/ {printf "max RSS (time -v):    %d MiB\n", $2 / 1024}' "$dir/time.txt"

# ---------------------------------------------------------------- 3. idle CPU
echo
echo "== idle CPU of rme push over ${IDLE_SECS} s (interval 10 s, idle log)"
: > "$dir/idle.log"
cat > "$dir/idle.toml" <<EOF2
interval_secs = 10
state_dir = "$dir/idle-state"
[[sources]]
type = "fail2ban"
log = "$dir/idle.log"
[[sinks]]
type = "stdout"
EOF2
"$rme" push --config "$dir/idle.toml" > /dev/null 2>&1 &
daemon=$!
sleep 3 # past start-up
ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
before=$(ticks); t0=$(now)
sleep "$IDLE_SECS"
after=$(ticks); t1=$(now)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
python3 -c "
ticks, hz, wall = $after - $before, $(getconf CLK_TCK), $t1 - $t0
print(f'CPU time:       {ticks / hz:.2f} s over {wall:.0f} s wall = {100 * ticks / hz / wall:.3f} % of one core')
print(f'RSS while idle: {$rss / 1024:.1f} MiB')"

# ---------------------------------------------------------------- 4. attackers as labels
bash examples/bench_attackers.sh
