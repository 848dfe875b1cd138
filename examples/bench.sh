#!/usr/bin/env bash
# Benchmarks (not tests): every figure of the README's Performance table, each
# measured side by side with its peer in this one run, printed, never asserted.
#
#   1-3. 100 000 ip-labelled reaction series (`pattern_labels = ["ip"]`), `push --once`
#        to a remote-write receiver that is down: peak RSS, state file size, and a
#        second run that reads nothing new (wall and CPU time).
#   4.   `rme push` daemon holding those series, idle, interval 5 s, remote-write to
#        VictoriaMetrics: bytes written and CPU seconds per flush.
#   5.   `rme parse fail2ban` vs Debian `mtail -one_shot` (integration/peers/mtail) on
#        two real fail2ban logs from ../shared/samples (or SAMPLES) concatenated ×250.
#   6.   `rme push --once` (stdout sink) over that file ×9 vs `wc -l`, page cache warm.
#   7.   `rme parse audit` vs `aureport --summary -if` on the go-libaudit and
#        audit-userspace samples concatenated ×6000.
#   8.   Series, peak RSS and lines/s of a reaction log of 100 000 distinct attackers
#        (Zipf), `top` (k = 20) + `geoip` vs no label rules (examples/bench_attackers.sh).
#
# BENCH_ONLY="5 7" runs only those figures (1 stands for 1-3).
# RME=path benchmarks another rme binary (e.g. an older build) with the same
# command. Times of whole processes are the best of BENCH_REPEAT (3) runs.
# Needs /usr/bin/time, python3, mtail and victoria-metrics (Debian packages
# `time`, `mtail`, `victoria-metrics`); aureport is taken from PATH or, when absent,
# from the `auditd` package unpacked into the bench directory (auditd is never
# started). BENCH_DIR (default a temp dir) needs 1.5 GiB free. About 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
SAMPLES=${SAMPLES:-$repo/../shared/samples}
SERIES=${BENCH_SERIES:-100000}
FLUSHES=${BENCH_FLUSHES:-4}
VM_BENCH_PORT=${VM_BENCH_PORT:-18428}

if [ -z "${RME:-}" ]; then
    cargo build --release --locked --bin rme
    RME=$repo/target/release/rme
fi
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rme-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s.%N; }
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }
py() { python3 -c "$1"; }
# Runs a command under time -v; sets wall, cpu (user+sys) and rss_mib.
measure() {
    /usr/bin/time -v -o "$dir/time.txt" "$@"
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$dir/time.txt")
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + s}' "$dir/time.txt")
    rss_mib=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$dir/time.txt")
}
# Best (lowest) wall time of REPEAT runs of a command, into best; output to /dev/null.
REPEAT=${BENCH_REPEAT:-3}
best_of() {
    best=
    for _ in $(seq "$REPEAT"); do
        measure "$@" > /dev/null 2>&1 || return 1
        best=$(py "print(min(float('$wall'), float('${best:-inf}')))")
    done
}
free_port() { py "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
state_bytes() { du -sb --exclude=spool "$1" | cut -f1; }

# ------------------------------------------------------------ 1-3. 100k series, receiver down
log=$dir/reaction.log
py "
import sys
with open('$log', 'w') as f:
    for i in range($SERIES):
        f.write(f'2026/11/24 09:00:00 INFO  ssh.failedlogin: match [10.{i >> 16}.{(i >> 8) & 255}.{i & 255}]\n')
"
down=$(free_port)
series_config() { # state_dir url
    cat <<EOF2
state_dir = "$1"
interval_secs = 5
jitter_secs = 0
[store]
max_series_per_metric = $((SERIES * 2))
[[sources]]
type = "reaction"
log = "$log"
config = "$repo/examples/reaction.yml"
pattern_labels = ["ip"]
command = "/nonexistent/reaction"
[[sinks]]
type = "remote_write"
url = "$2"
EOF2
}
if want 1; then
series_config "$dir/s100k" "http://127.0.0.1:$down/api/v1/write" > "$dir/s100k.toml"
measure "$RME" push --once --config "$dir/s100k.toml" > /dev/null 2> "$dir/s100k.err" || true
first_wall=$wall first_rss=$rss_mib
state=$(state_bytes "$dir/s100k")
measure "$RME" push --once --config "$dir/s100k.toml" > /dev/null 2>> "$dir/s100k.err" || true
second_wall=$wall second_cpu=$cpu
echo "== $SERIES ip-labelled reaction series, push --once to a receiver that is down"
py "
n = $SERIES
print(f'peak RSS, first run:   {$first_rss:8.1f} MiB  ({$first_rss * 2**20 / n:.0f} B per series), wall {$first_wall:.2f} s')
print(f'state file:            {$state / 1e6:8.2f} MB   ({$state / n:.0f} B per counter)')
print(f'second run (nothing new): {$second_wall:.2f} s wall, {$second_cpu:.2f} s CPU (wall includes the retry backoff to the down receiver)')"
fi

# ------------------------------------------------------------ 4. idle daemon, VictoriaMetrics
if want 4; then
vm=$(command -v victoria-metrics || command -v victoria-metrics-prod || true)
echo
echo "== rme push daemon with those series, idle, interval 5 s, remote-write to VictoriaMetrics"
if [ -z "$vm" ]; then
    echo "skipped: victoria-metrics not installed"
else
    "$vm" -storageDataPath "$dir/vm" -httpListenAddr "127.0.0.1:$VM_BENCH_PORT" -loggerLevel ERROR > "$dir/vm.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$VM_BENCH_PORT/health" > /dev/null 2>&1 && break; sleep 0.2; done
    series_config "$dir/daemon" "http://127.0.0.1:$VM_BENCH_PORT/api/v1/write" > "$dir/daemon.toml"
    "$RME" push --once --config "$dir/daemon.toml" > /dev/null 2>&1 || true # reads the log; the daemon then idles
    RME_LOG=warn "$RME" push --config "$dir/daemon.toml" > /dev/null 2> "$dir/daemon.err" &
    daemon=$!
    pids+=($daemon)
    sleep 7 # start-up and first flush
    io() { awk '/^write_bytes/ {print $2}' "/proc/$daemon/io"; }
    ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
    b0=$(io); t0=$(ticks)
    sleep $((FLUSHES * 5))
    b1=$(io); t1=$(ticks)
    kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true
    py "
f, hz = $FLUSHES, $(getconf CLK_TCK)
print(f'per flush ({f} flushes): {($b1 - $b0) / f / 1e6:.2f} MB written, {($t1 - $t0) / hz / f:.3f} CPU-s')"
fi
fi

# ------------------------------------------------------------ 5. parse fail2ban vs mtail
if want 5 || want 6; then
f2b=$dir/fail2ban.log
for _ in $(seq 250); do
    cat "$SAMPLES/fail2ban/fail2ban-0.9.5-0.10.4-guilbod.log" "$SAMPLES/fail2ban/fail2ban-plesk-ajaykumar011.log"
done > "$f2b"
f2b_lines=$(wc -l < "$f2b")
cat "$f2b" > /dev/null
fi
if want 5; then
echo
echo "== rme parse fail2ban vs mtail -one_shot, $f2b_lines lines (two real logs ×250)"
best_of "$RME" parse fail2ban "$f2b"
rme_wall=$best
if command -v mtail > /dev/null; then
    best_of mtail -one_shot -one_shot_format prometheus -progs "$repo/integration/peers/mtail" -logs "$f2b" -logtostderr
    py "print(f'rme {$rme_wall:.2f} s, mtail {$best:.2f} s (best of $REPEAT each): rme is {$best / $rme_wall:.1f}x faster')"
else
    py "print(f'rme {$rme_wall:.2f} s; mtail not installed')"
fi
fi

# ------------------------------------------------------------ 6. push --once vs wc -l
if want 6; then
big=$dir/fail2ban-x9.log
for _ in $(seq 9); do cat "$f2b"; done > "$big"
rm -f "$f2b"
size=$(stat -c %s "$big")
cat > "$dir/big.toml" <<EOF2
state_dir = "$dir/big-state"
[[sources]]
type = "fail2ban"
log = "$big"
[[sinks]]
type = "stdout"
EOF2
cat "$big" > /dev/null
best_of wc -l "$big"
wc_wall=$best
lines=$(wc -l < "$big")
measure "$RME" push --once --config "$dir/big.toml" > /dev/null # reads it all once; a second run would read nothing
echo
echo "== rme push --once (stdout sink) vs wc -l, $((size >> 20)) MiB, $lines lines, page cache warm"
py "print(f'wc -l {$wc_wall:.2f} s (best of $REPEAT), rme {$wall:.2f} s ({$lines / $wall / 1e6:.2f} M lines/s): {$wall / max($wc_wall, 0.01):.1f}x the time of wc -l')"
rm -f "$big"
fi

# ------------------------------------------------------------ 7. parse audit vs aureport
if want 7; then
aud=$dir/audit.log
for _ in $(seq 6000); do cat "$SAMPLES"/audit/go-libaudit/* "$SAMPLES"/audit/audit-userspace/*; done > "$aud"
aud_lines=$(wc -l < "$aud")
aureport=(aureport)
if ! command -v aureport > /dev/null; then
    (cd "$dir" && apt-get download -q auditd libauparse0 > /dev/null 2>&1 && for d in ./*.deb; do dpkg -x "$d" aud-root; done) || true
    lib=$dir/aud-root/usr/lib/x86_64-linux-gnu:$dir/aud-root/lib/x86_64-linux-gnu
    aureport=(env "LD_LIBRARY_PATH=$lib" "$dir/aud-root/sbin/aureport")
fi
cat "$aud" > /dev/null
echo
echo "== rme parse audit vs aureport --summary -if, $aud_lines lines, $(($(stat -c %s "$aud") >> 20)) MiB"
best_of "$RME" parse audit "$aud"
rme_wall=$best
if best_of "${aureport[@]}" --summary -if "$aud"; then
    py "print(f'rme {$rme_wall:.2f} s, aureport {$best:.2f} s (best of $REPEAT each): rme is {$best / $rme_wall:.2f}x faster')"
else
    py "print(f'rme {$rme_wall:.2f} s; aureport not available')"
fi
fi

# ---------------------------------------------------------------- 8. attackers as labels
RME=$RME bash examples/bench_attackers.sh
