#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets, cargo-fuzz + libFuzzer) for a bounded
# time each: FUZZ_SECS (default 60). A crash stops the script with the input
# saved under fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
#
# cargo-fuzz needs nightly-only flags (-Z sanitizer=address, -Cpasses=sancov).
# The project's toolchain is stable, so RUSTC_BOOTSTRAP=1 lets it accept them
# (an escape hatch meant for building the compiler itself: fine for a fuzz
# build, never for release binaries). With a nightly toolchain installed,
# FUZZ_TOOLCHAIN=nightly uses it instead.
# Needs: cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECS:-60}
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
mkdir -p corpus
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    case $target in
        parse_fail2ban) cp ../examples/logs/fail2ban.log "corpus/$target/seed" ;;
        parse_reaction) cp ../examples/logs/reaction.log "corpus/$target/seed" ;;
    esac
    echo "== $target: ${secs} s"
    log=$(mktemp)
    rc=0
    "${fuzz[@]}" run -O "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 > "$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|Test unit written)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "$log"
        echo "$target: failed (exit $rc); crashing input under fuzz/artifacts/$target/"
        exit 1
    fi
    rm -f "$log"
done
