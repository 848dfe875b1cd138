//! The request bodies of every pushing sink for one fixed store content, byte
//! for byte: remote-write (snappy protobuf), OTLP (protobuf) and statsd (lines).
//! Two flushes, so statsd deltas, remote-write stale markers and series cut
//! into several bodies are covered. The files under `src/sinks/testdata/` hold
//! one line per body, `flush batch samples hex`; `UPDATE_GOLDEN=1` rewrites them.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Sink, otlp, remote_write, statsd};
use crate::labels::rules::{LabelAction, LabelRule, Rules};
use crate::store::{Limits, Series, Snapshot, Store};

/// The same content every time: odd label values, a gauge that is not an
/// integer, a counter reset, a series cap reached, an ip prefix rule and a
/// series that expires before the second flush.
fn snapshots() -> [Snapshot; 2] {
    let mut store = Store::new(Limits {
        max_series_per_metric: 3,
        idle_expiry_ms: 10_000,
        rules: Rules::compile(&[LabelRule {
            label: "ip".into(),
            metric: None,
            selector: Default::default(),
            action: LabelAction::Prefix { ipv4: 24, ipv6: 64 },
        }])
        .unwrap(),
        ..Limits::default()
    });
    store.describe(&crate::store::Metric::counter(
        "fail2ban_bans_total",
        "New bans by jail.",
    ));
    store.describe(&crate::store::Metric::gauge(
        "fail2ban_up",
        "1 when \\ fail2ban\nanswers.",
    ));
    store.describe(&crate::store::Metric::counter(
        "reaction_matches_total",
        "Matches.",
    ));
    store.set_now(1_000);
    store.inc(Series::new("fail2ban_bans_total", &[("jail", "sshd")]), 3);
    store.inc(
        Series::new("fail2ban_bans_total", &[("jail", "ng\"in\\x")]),
        1,
    );
    store.inc(
        Series::new("fail2ban_bans_total", &[("jail", "pöstfix é")]),
        2,
    );
    store.set(Series::new("fail2ban_up", &[]), 1.0);
    store.set(Series::new("fail2ban_load", &[("jail", "")]), 0.25);
    store.set_now(2_000);
    for ip in [
        "192.0.2.7",
        "192.0.2.9",
        "198.51.100.1",
        "2001:db8::1",
        "203.0.113.5",
    ] {
        let labels = [("stream", "ssh"), ("filter", "failed login"), ("ip", ip)];
        store.inc(Series::new("reaction_matches_total", &labels), 1);
    }
    store.set_counter(Series::new("audit_lost_total", &[]), 40);
    let first = store.snapshot(5_000);
    store.set_now(9_000);
    store.inc(Series::new("fail2ban_bans_total", &[("jail", "sshd")]), 2);
    store.set_counter(Series::new("audit_lost_total", &[]), 7);
    store.set(Series::new("fail2ban_up", &[]), -1e21);
    store.set_now(14_000);
    store.inc(Series::new("fail2ban_bans_total", &[("jail", "sshd")]), 1);
    store.set_counter(Series::new("audit_lost_total", &[]), 8);
    store.set(Series::new("fail2ban_up", &[]), 0.0);
    // The reaction and other fail2ban series were last touched at 2 000 or
    // earlier: idle past 10 s at 15 000, they expire.
    [first, store.snapshot(15_000)]
}

fn bodies(sink: &mut dyn FnMut(&Snapshot) -> Vec<super::Batch>) -> String {
    let mut out = String::new();
    for (flush, snap) in snapshots().iter().enumerate() {
        for (i, b) in sink(snap).iter().enumerate() {
            let hex: String = b.body.iter().map(|x| format!("{x:02x}")).collect();
            let _ = writeln!(out, "{flush} {i} {} {hex}", b.samples);
        }
    }
    out
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/sinks/testdata")
        .join(name);
    crate::sources::golden::check(&path, actual);
}

#[test]
fn remote_write_bodies_are_unchanged() {
    let config = toml::from_str(
        "url = \"http://127.0.0.1:1/w\"\nbatch_size = 4\nexternal_labels = { host = \"h1\", jail = \"x\" }",
    )
    .unwrap();
    let mut sink = remote_write::RemoteWrite::new("rw".into(), &config).unwrap();
    check(
        "remote_write.golden",
        &bodies(&mut |s| sink.encode(s).unwrap()),
    );
}

#[test]
fn otlp_bodies_are_unchanged() {
    let config = toml::from_str(
        "compression = \"none\"\nmax_points_per_request = 5\n\
         resource_attributes = { \"host.name\" = \"h1\", \"service.version\" = \"golden\" }",
    )
    .unwrap();
    let mut sink = otlp::Otlp::new("otlp".into(), &config).unwrap();
    check("otlp.golden", &bodies(&mut |s| sink.encode(s).unwrap()));
}

#[test]
fn statsd_bodies_are_unchanged() {
    for style in ["dogstatsd", "graphite", "path"] {
        let config = toml::from_str(&format!(
            "tag_style = \"{style}\"\nprefix = \"rme.web1\"\nmax_packet_bytes = 200"
        ))
        .unwrap();
        let mut sink = statsd::Statsd::new("statsd".into(), &config).unwrap();
        check(
            &format!("statsd-{style}.golden"),
            &bodies(&mut |s| sink.encode(s).unwrap()),
        );
    }
}
