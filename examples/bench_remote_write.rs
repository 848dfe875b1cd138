//! Benchmark (not a test): remote-write encode + snappy throughput and bytes
//! per sample, for snapshots of 10k and 100k series shaped like rme's own
//! (a few metrics, jail/ip/action labels, two external labels).
//!
//! `cargo run --release --example bench_remote_write`

use std::time::{Duration, Instant};

use prost::Message as _;
use rme::sinks::Sink as _;
use rme::sinks::remote_write::{RemoteWrite, RemoteWriteConfig, compress};
use rme::store::{Limits, Series, Snapshot, Store};

fn snapshot(series: usize) -> Snapshot {
    let mut store = Store::new(Limits {
        max_series_per_metric: series,
        idle_expiry_ms: 0,
        ..Limits::default()
    });
    store.describe(&rme::store::Metric::counter(
        "fail2ban_bans_total",
        "Bans, by jail and IP.",
    ));
    store.describe(&rme::store::Metric::counter(
        "fail2ban_found_total",
        "Failures found, by jail and IP.",
    ));
    store.set_now(1_795_000_000_000);
    let jails = ["sshd", "nginx-http-auth", "postfix", "recidive"];
    for i in 0..series {
        let ip = format!("198.51.{}.{}", (i / 250) % 250, i % 250 + 1);
        let name = if i % 2 == 0 {
            "fail2ban_bans_total"
        } else {
            "fail2ban_found_total"
        };
        let jail = jails[i % jails.len()];
        store.inc(
            Series::new(
                name,
                &[
                    ("jail", jail),
                    ("ip", &ip),
                    ("n", &(i / 62_500).to_string()),
                ],
            ),
            (i % 97) as u64 + 1,
        );
    }
    store.snapshot(1_795_000_030_000)
}

/// Runs `f` until at least 1 s has passed (3 runs minimum); returns the mean time per run.
fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed() < Duration::from_secs(1) {
        std::hint::black_box(f());
        runs += 1;
    }
    start.elapsed() / runs
}

fn main() -> anyhow::Result<()> {
    let config: RemoteWriteConfig = toml::from_str(
        "url = \"http://127.0.0.1:9/api/v1/write\"\nbatch_size = 2000\nexternal_labels = { host = \"web1\", job = \"rme\" }",
    )?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for series in [10_000, 100_000] {
        let snap = snapshot(series);
        let mut sink = RemoteWrite::new("bench".into(), &config)?;
        let reqs = sink.requests(&snap);
        let raws: Vec<Vec<u8>> = reqs.iter().map(|(r, _)| r.encode_to_vec()).collect();
        let proto: usize = raws.iter().map(Vec::len).sum();
        let compressed: usize = reqs
            .iter()
            .map(|(r, _)| compress(r).map(|b| b.len()))
            .sum::<anyhow::Result<usize>>()?;
        let samples = snap.points.len() as f64;
        let build = time(|| sink.requests(&snap).len());
        let pb = time(|| {
            reqs.iter()
                .map(|(r, _)| r.encode_to_vec().len())
                .sum::<usize>()
        });
        let snappy = time(|| {
            raws.iter()
                .map(|r| {
                    snap::raw::Encoder::new()
                        .compress_vec(r)
                        .map_or(0, |v| v.len())
                })
                .sum::<usize>()
        });
        let total = time(|| sink.encode(&snap).map(|b| b.len()));
        println!(
            "{series} series, {} requests of <= 2000 samples",
            reqs.len()
        );
        println!(
            "  size: protobuf {proto} B ({:.1} B/sample), snappy {compressed} B ({:.1} B/sample), ratio {:.1}x",
            proto as f64 / samples,
            compressed as f64 / samples,
            proto as f64 / compressed as f64
        );
        println!(
            "  time: build messages {:.2} ms, protobuf encode {:.2} ms, snappy {:.2} ms; \
             Sink::batches (all + stale-marker bookkeeping) {:.2} ms",
            ms(build),
            ms(pb),
            ms(snappy),
            ms(total)
        );
        println!(
            "  throughput: {:.2} M samples/s end to end; snappy {:.0} MB/s, protobuf encode {:.0} MB/s",
            samples / total.as_secs_f64() / 1e6,
            proto as f64 / snappy.as_secs_f64() / 1e6,
            proto as f64 / pb.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
