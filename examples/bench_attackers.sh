#!/usr/bin/env bash
# Benchmark (printed, not asserted): a reaction log of 100,000 distinct attacker
# addresses, heavy-tailed (examples/attackers_log.py), read by `rme push --once`
# with pattern_labels = ["ip"], side by side:
#   none      no label rules (max_series_per_metric raised so every address keeps its series)
#   top+geoip geoip (Debian tor-geoipdb) then top k = 20
# Prints series held, peak RSS (/usr/bin/time -v) and lines/s for each.
# Needs the release binary (bench.sh builds it), python3, /usr/bin/time and tor-geoipdb.
set -euo pipefail
cd "$(dirname "$0")/.."
rme=${RME:-$PWD/target/release/rme} # bench.sh passes its RME
[ -x "$rme" ] || cargo build --release --locked --bin rme
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rme-bench-attackers.XXXXXX")
trap 'rm -rf "$dir"' EXIT
python3 examples/attackers_log.py --ips 100000 --total "${BENCH_ATTACKS:-300000}" > "$dir/reaction.log"
lines=$(wc -l < "$dir/reaction.log")

run() { # name, rules
    local name=$1 rules=$2
    cat > "$dir/$name.toml" <<EOF
state_dir = "$dir/state-$name"
[store]
max_series_per_metric = 1000000
$rules
[[sources]]
type = "reaction"
log = "$dir/reaction.log"
config = "$PWD/src/sources/testdata/reaction/v1-app_example.yml"
pattern_labels = ["ip"]
[[sinks]]
type = "stdout"
EOF
    cat "$dir/reaction.log" > /dev/null # from the page cache
    local t0 t1
    t0=$(date +%s.%N)
    RME_LOG=error /usr/bin/time -v "$rme" push --once --config "$dir/$name.toml" > "$dir/$name.out" 2> "$dir/$name.time"
    t1=$(date +%s.%N)
    local series rss
    series=$(awk '/^rme_series / {print $2}' "$dir/$name.out")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/$name.time")
    python3 -c "
t, lines, rss = $t1 - $t0, $lines, $rss
print(f'{\"$name\":10} series {\"$series\":>8}   max RSS {rss / 1024:7.1f} MiB   {t:6.2f} s   {lines / t / 1e3:7.0f} k lines/s')"
}

echo
echo "== $lines-line reaction log, 100000 distinct addresses (Zipf), push --once"
run none ""
run top+geoip '[[store.labels]]
label = "ip"
action = "geoip"
[[store.labels]]
label = "ip"
action = "top"
k = 20'
