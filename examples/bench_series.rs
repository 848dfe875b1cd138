//! Benchmark (not a test): memory and time for a store holding N series
//! (default 100 000), as a busy host with per-IP labels would have. Fills the
//! store, takes a snapshot, renders the /metrics text and saves the counters
//! into a state file (a full checkpoint, as the first save writes), then prints
//! each step's time and the process's peak resident memory (VmHWM). `examples/bench.sh` runs it under
//! `/usr/bin/time -v` as well.
//!
//! cargo run --release --example bench_series -- [SERIES]

use std::collections::BTreeMap;
use std::time::Instant;

use rme::store::{Limits, Series, Store};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let start = Instant::now();
    let mut store = Store::new(Limits {
        max_series_per_metric: n as usize + 1,
        ..Limits::default()
    });
    store.describe(&rme::store::Metric::counter(
        "reaction_match_total",
        "Matches.",
    ));
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        let labels = [
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", ip.as_str()),
        ];
        store.inc(
            Series::new("reaction_match_total", &labels),
            u64::from(i % 7) + 1,
        );
    }
    let filled = start.elapsed();
    let rss_filled = status_kib("VmRSS:");

    let t = Instant::now();
    let snapshot = store.snapshot(rme::store::now_ms());
    let snapped = t.elapsed();
    let t = Instant::now();
    let text = rme::store::text::render(&snapshot, rme::store::text::Format::OpenMetrics);
    let rendered = t.elapsed();
    let t = Instant::now();
    let dir = tempfile::tempdir().expect("a temp dir for the state file");
    let (mut state, _) = rme::state_dir::state::StateFile::open(dir.path()).expect("state file");
    let none = BTreeMap::new();
    state
        .save(&mut store, &none, &BTreeMap::new())
        .expect("saving the state");
    let saved = t.elapsed();
    let state_bytes = dir_bytes(dir.path());

    println!("series in store:      {}", store.len());
    println!(
        "fill:                 {filled:.2?} (RSS then: {} MiB)",
        rss_filled / 1024
    );
    println!(
        "snapshot:             {snapped:.2?} ({} points)",
        snapshot.points.len()
    );
    println!(
        "render OpenMetrics:   {rendered:.2?} ({} MiB)",
        mib(text.len())
    );
    println!(
        "state file save:      {saved:.2?} ({} MiB)",
        mib(state_bytes as usize)
    );
    println!("peak RSS (VmHWM):     {} MiB", status_kib("VmHWM:") / 1024);
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A `/proc/self/status` memory field, e.g. `VmHWM:` (peak RSS), in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
