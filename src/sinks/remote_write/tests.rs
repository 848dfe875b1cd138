use std::time::{Duration, SystemTime};

use prost::Message as _;

use super::*;
use crate::store::{Limits, Series, Store};

fn config(extra: &str) -> RemoteWriteConfig {
    toml::from_str(&format!(
        "url = \"http://127.0.0.1:1/api/v1/write\"\n{extra}"
    ))
    .unwrap()
}

fn sink(extra: &str) -> RemoteWrite {
    RemoteWrite::new("rw".into(), &config(extra)).unwrap()
}

fn snapshot() -> Snapshot {
    let mut store = Store::new(Limits {
        max_series_per_metric: 100,
        idle_expiry_ms: 0,
        ..Limits::default()
    });
    store.describe(&crate::store::Metric::counter(
        "f2b_bans_total",
        "Bans by jail.",
    ));
    store.describe(&crate::store::Metric::gauge("f2b_banned", "Banned now."));
    store.set_now(1_000);
    store.inc(
        Series::new("f2b_bans_total", &[("jail", "sshd"), ("Zone", "eu")]),
        3,
    );
    store.inc(Series::new("f2b_bans_total", &[("jail", "nginx")]), 1);
    store.set(Series::new("f2b_banned", &[("jail", "sshd")]), 2.0);
    store.snapshot(5_000)
}

fn decode(body: &[u8]) -> prompb::WriteRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    prompb::WriteRequest::decode(raw.as_slice()).unwrap()
}

fn labels(ts: &prompb::TimeSeries) -> Vec<(&str, &str)> {
    ts.labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[test]
fn body_is_snappy_block_protobuf_with_sorted_labels_and_metadata() {
    let mut s = sink("external_labels = { host = \"web1\", jail = \"ignored\" }");
    let snap = snapshot();
    let batches = s.encode(&snap).unwrap();
    assert_eq!(batches.len(), 1);
    let req = decode(&batches[0].body);
    let bans: Vec<_> = req
        .timeseries
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value == "f2b_bans_total"))
        .collect();
    assert_eq!(bans.len(), 2);
    // bytewise order: an uppercase label name sorts before __name__
    let sshd = bans
        .iter()
        .find(|t| labels(t).contains(&("jail", "sshd")))
        .unwrap();
    assert_eq!(
        labels(sshd),
        [
            ("Zone", "eu"),
            ("__name__", "f2b_bans_total"),
            ("host", "web1"),
            ("jail", "sshd")
        ]
    );
    assert_eq!(
        sshd.samples,
        [prompb::Sample {
            value: 3.0,
            timestamp: 5_000
        }]
    );
    for ts in &req.timeseries {
        let names: Vec<_> = ts.labels.iter().map(|l| &l.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }
    let meta: Vec<_> = req
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), m.r#type, m.help.as_str()))
        .collect();
    assert!(
        meta.contains(&(
            "f2b_bans_total",
            MetricType::Counter as i32,
            "Bans by jail."
        )),
        "{meta:?}"
    );
    assert!(
        meta.contains(&("f2b_banned", MetricType::Gauge as i32, "Banned now.")),
        "{meta:?}"
    );
    assert_eq!(batches[0].samples, req.timeseries.len() as u64);
}

#[test]
fn batch_size_splits_the_snapshot_into_self_contained_bodies() {
    let mut s = sink("batch_size = 2");
    let snap = snapshot();
    let batches = s.encode(&snap).unwrap();
    let total: u64 = batches.iter().map(|b| b.samples).sum();
    assert_eq!(total, snap.points.len() as u64);
    assert!(batches.len() >= 2);
    for b in &batches {
        let req = decode(&b.body);
        assert!(req.timeseries.len() <= 2);
        assert_eq!(req.timeseries.len() as u64, b.samples);
        // each body names the metadata of its own metrics only
        for m in &req.metadata {
            assert!(
                req.timeseries
                    .iter()
                    .any(|t| t.labels.iter().any(|l| l.value == m.metric_family_name))
            );
        }
    }
}

#[test]
fn expired_series_get_a_stale_marker_once() {
    let mut s = sink("");
    let mut store = Store::new(Limits {
        max_series_per_metric: 100,
        idle_expiry_ms: 10_000,
        ..Limits::default()
    });
    store.set_now(1_000);
    store.inc(Series::new("gone_total", &[]), 1);
    store.set_now(20_000);
    store.inc(Series::new("kept_total", &[]), 1);
    let first = s.encode(&store.snapshot(5_000)).unwrap();
    assert!(
        decode(&first[0].body)
            .timeseries
            .iter()
            .any(|t| labels(t) == [("__name__", "gone_total")])
    );
    let stale_of = |batches: &[Batch]| -> Vec<prompb::TimeSeries> {
        let all = batches.iter().flat_map(|b| decode(&b.body).timeseries);
        all.filter(|t| t.samples[0].value.to_bits() == STALE_NAN)
            .collect()
    };
    assert!(stale_of(&first).is_empty());
    let second = s.encode(&store.snapshot(25_000)).unwrap();
    let stale = stale_of(&second);
    assert_eq!(stale.len(), 1);
    assert_eq!(labels(&stale[0]), [("__name__", "gone_total")]);
    assert_eq!(stale[0].samples[0].timestamp, 25_000);
    assert_eq!(
        second.iter().map(|b| b.samples).sum::<u64>(),
        second
            .iter()
            .map(|b| decode(&b.body).timeseries.len() as u64)
            .sum::<u64>()
    );
    assert!(stale_of(&s.encode(&store.snapshot(30_000)).unwrap()).is_empty());
}

#[test]
fn classify_table() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
    let retry = |after| {
        Err::<(), _>(SendError::Retry {
            reason: String::new(),
            after,
        })
    };
    let cases: Vec<(u16, Option<&str>, Result<(), SendError>)> = vec![
        (200, None, Ok(())),
        (204, None, Ok(())),
        (500, None, retry(None)),
        (503, Some("7"), retry(Some(Duration::from_secs(7)))),
        (429, Some(&later), retry(Some(Duration::from_secs(120)))),
        (
            429,
            Some("Thu, 01 Jan 1970 00:00:00 GMT"),
            retry(Some(Duration::ZERO)),
        ),
        (429, Some("soon"), retry(None)),
        (
            400,
            Some("5"),
            Err(SendError::Reject {
                reason: String::new(),
            }),
        ),
        (
            401,
            None,
            Err(SendError::Reject {
                reason: String::new(),
            }),
        ),
        (
            404,
            None,
            Err(SendError::Reject {
                reason: String::new(),
            }),
        ),
        (
            413,
            None,
            Err(SendError::Reject {
                reason: String::new(),
            }),
        ),
    ];
    for (status, after, want) in cases {
        let got = classify(status, after, "out of order sample", now).map_err(|e| match e {
            SendError::Retry { reason, after } => {
                assert!(
                    reason.contains(&status.to_string()) && reason.contains("out of order"),
                    "{reason}"
                );
                SendError::Retry {
                    reason: String::new(),
                    after,
                }
            }
            SendError::Reject { reason } => {
                assert!(
                    reason.contains(&status.to_string()) && reason.contains("out of order"),
                    "{reason}"
                );
                SendError::Reject {
                    reason: String::new(),
                }
            }
        });
        assert_eq!(got, want, "status {status} retry-after {after:?}");
    }
}

#[test]
fn long_refusal_body_is_cut_on_a_char_boundary() {
    let body = "é".repeat(MAX_REASON_BODY);
    let Err(SendError::Reject { reason }) = classify(400, None, &body, SystemTime::now()) else {
        panic!("400 must be a reject")
    };
    assert!(reason.len() < MAX_REASON_BODY + 20);
}

#[test]
fn validate_names_the_key() {
    let cases = [
        ("url = \"ftp://x/\"", "sinks[0].url"),
        (
            "headers = { \"Content-Type\" = \"x\" }",
            "sinks[0].headers.Content-Type",
        ),
        (
            "headers = { \"user-agent\" = \"x\" }",
            "sinks[0].headers.user-agent",
        ),
        (
            "headers = { \"bad name\" = \"x\" }",
            "sinks[0].headers.bad name",
        ),
        ("batch_size = 0", "sinks[0].batch_size"),
        ("timeout_secs = 0", "sinks[0].timeout_secs"),
        ("basic_auth = { username = \"u\" }", "sinks[0].basic_auth"),
        ("tls = { cert_file = \"c.pem\" }", "sinks[0].tls"),
        (
            "external_labels = { \"__x\" = \"1\" }",
            "sinks[0].external_labels.__x",
        ),
        (
            "external_labels = { \"a-b\" = \"1\" }",
            "sinks[0].external_labels.a-b",
        ),
        (
            "external_labels = { host = \"\" }",
            "sinks[0].external_labels.host",
        ),
        ("proxy_url = \"::\"", "sinks[0].proxy_url"),
    ];
    for (extra, key) in cases {
        let text = if extra.starts_with("url") {
            extra.to_string()
        } else {
            format!("url = \"http://127.0.0.1:1/w\"\n{extra}")
        };
        // Checked by `validate` or where the sink is built: the same wording either way.
        let config = format!("[[sinks]]\ntype = \"remote_write\"\n{text}\n");
        let err = crate::config::Config::parse(&config, None)
            .and_then(|c| c.plan().map(drop))
            .unwrap_err();
        let invalid = err.downcast_ref::<crate::invalid::Invalid>();
        assert_eq!(
            invalid.map(|i| i.key.as_str()),
            Some(key),
            "{extra}: {err:#}"
        );
    }
    config("headers = { \"X-Scope-OrgID\" = \"t1\" }\nexternal_labels = { host = \"h\", job = \"rme\" }")
        .validate("sinks[0]")
        .unwrap();
}

#[test]
fn unknown_key_is_refused() {
    assert!(toml::from_str::<RemoteWriteConfig>("url = \"http://x/\"\ntimeout = 3\n").is_err());
}

#[tokio::test]
async fn closed_port_is_a_retry() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut s = RemoteWrite::new(
        "rw".into(),
        &toml::from_str(&format!("url = \"http://127.0.0.1:{port}/w\"")).unwrap(),
    )
    .unwrap();
    match s.send(b"x").await {
        Err(SendError::Retry {
            reason,
            after: None,
        }) => assert!(reason.contains("127.0.0.1"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn silent_receiver_times_out_as_a_retry() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/w", listener.local_addr().unwrap());
    // accepts and then says nothing
    let hold = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(conn);
    });
    let mut s = RemoteWrite::new(
        "rw".into(),
        &toml::from_str(&format!("url = \"{url}\"\ntimeout_secs = 1")).unwrap(),
    )
    .unwrap();
    match s.send(b"x").await {
        Err(SendError::Retry {
            reason,
            after: None,
        }) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
    hold.abort();
}

#[test]
fn hand_written_protobuf_is_the_bytes_prost_writes() {
    let mut store = Store::new(Limits {
        max_series_per_metric: 100,
        idle_expiry_ms: 0,
        ..Limits::default()
    });
    store.describe(&crate::store::Metric::counter("a_total", "A."));
    store.describe(&crate::store::Metric::gauge("b", ""));
    store.inc(Series::new("a_total", &[("jail", "sshd"), ("Zone", "")]), 0);
    store.inc(
        Series::new("a_total", &[("jail", &"x".repeat(300))]),
        1 << 40,
    );
    store.set(Series::new("b", &[]), -0.0);
    store.set(Series::new("b", &[("k", "v")]), f64::NAN);
    store.set(Series::new("c", &[("k", "v")]), 1.5);
    for at_ms in [0, 5_000, -1] {
        let snap = store.snapshot(at_ms);
        for extra in [
            "",
            "external_labels = { host = \"h\", k = \"e\", e = \"\" }\nbatch_size = 2",
        ] {
            let s = sink(extra);
            let expected: Vec<Vec<u8>> = s
                .requests(&snap)
                .iter()
                .map(|(r, _)| compress(r).unwrap())
                .collect();
            let actual: Vec<Vec<u8>> = sink(extra)
                .encode(&snap)
                .unwrap()
                .into_iter()
                .map(|b| b.body)
                .collect();
            assert_eq!(actual, expected, "at {at_ms}, {extra:?}");
        }
    }
}

/// A store with one counter and one gauge flushed at 5 000, then a new
/// counter (and a new gauge) made at 7 000 and flushed at 10 000.
fn two_flushes() -> (Snapshot, Snapshot) {
    let mut store = Store::new(Limits {
        max_series_per_metric: 100,
        idle_expiry_ms: 0,
        ..Limits::default()
    });
    store.describe(&crate::store::Metric::counter("a_total", "A."));
    store.describe(&crate::store::Metric::gauge("g", "G."));
    store.set_now(1_000);
    store.inc(Series::new("a_total", &[("jail", "sshd")]), 3);
    let first = store.snapshot(5_000);
    store.set_now(7_000);
    store.inc(Series::new("a_total", &[("jail", "postfix")]), 12);
    store.set(Series::new("g", &[("jail", "postfix")]), 4.0);
    (first, store.snapshot(10_000))
}

fn samples_of(req: &prompb::WriteRequest, jail: &str) -> Vec<(f64, i64)> {
    req.timeseries
        .iter()
        .filter(|ts| labels(ts).contains(&("jail", jail)))
        .flat_map(|ts| ts.samples.iter().map(|s| (s.value, s.timestamp)))
        .collect()
}

#[test]
fn a_new_counter_carries_a_leading_zero_once_and_the_prost_bytes_agree() {
    let (first, second) = two_flushes();
    let mut s = sink("");
    let req = decode(&s.encode(&first).unwrap()[0].body);
    // the sink's first snapshot reads a backlog: no zero
    assert_eq!(samples_of(&req, "sshd"), [(3.0, 5_000)]);
    // the prost reference, built before `encode` moves the watermark
    let expected: Vec<Vec<u8>> = s
        .requests(&second)
        .iter()
        .map(|(r, _)| compress(r).unwrap())
        .collect();
    let batches = s.encode(&second).unwrap();
    let actual: Vec<Vec<u8>> = batches.iter().map(|b| b.body.clone()).collect();
    assert_eq!(actual, expected);
    let req = decode(&batches[0].body);
    assert_eq!(
        samples_of(&req, "postfix"),
        [(0.0, 5_001), (12.0, 10_000), (4.0, 10_000)]
    );
    assert_eq!(samples_of(&req, "sshd"), [(3.0, 10_000)]);
    // samples counts the snapshot's points, not the zeros
    assert_eq!(batches[0].samples, second.points.len() as u64);
    // the note names the zeroed series and the watermark
    let note: serde_json::Value = serde_json::from_slice(&batches[0].note).unwrap();
    assert_eq!(note["watermark_ms"], 10_000);
    assert_eq!(note["zeroed"].as_array().unwrap().len(), 1);
    // the next push of the same series: no zero
    let req = decode(&s.encode(&second).unwrap()[0].body);
    assert_eq!(samples_of(&req, "postfix"), [(12.0, 10_000), (4.0, 10_000)]);
}

#[test]
fn first_increment_none_writes_no_zero() {
    let (first, second) = two_flushes();
    let mut s = sink("first_increment = \"none\"");
    s.encode(&first).unwrap();
    let req = decode(&s.encode(&second).unwrap()[0].body);
    assert_eq!(samples_of(&req, "postfix"), [(12.0, 10_000), (4.0, 10_000)]);
    assert!(
        toml::from_str::<RemoteWriteConfig>("url = \"http://h/\"\nfirst_increment = \"one\"")
            .is_err()
    );
}

#[test]
fn the_watermark_survives_in_the_state_and_in_spooled_notes() {
    let (first, second) = two_flushes();
    let mut s = sink("");
    s.encode(&first).unwrap();
    let saved = s.save_state().unwrap();
    let note = s.encode(&second).unwrap()[0].note.clone();
    // a new process from the state file: zeros as the first process
    let mut again = sink("");
    again.restore_state(saved.clone());
    let req = decode(&again.encode(&second).unwrap()[0].body);
    assert_eq!(samples_of(&req, "postfix")[0], (0.0, 5_001));
    // a crash after the second flush was spooled, before the state caught up:
    // the note keeps the zero from being written a second time
    let mut crashed = sink("");
    crashed.restore_state(saved);
    crashed.replay_note(&note);
    let req = decode(&crashed.encode(&second).unwrap()[0].body);
    assert_eq!(samples_of(&req, "postfix"), [(12.0, 10_000), (4.0, 10_000)]);
}

#[test]
fn without_zeros_takes_out_the_leading_zeros_only() {
    let (first, second) = two_flushes();
    let mut s = sink("");
    s.encode(&first).unwrap();
    let body = s.encode(&second).unwrap().remove(0).body;
    let stripped = decode(&without_zeros(&body).unwrap());
    let mut expected = decode(&body);
    for ts in &mut expected.timeseries {
        if ts.samples.len() == 2 {
            ts.samples.remove(0);
        }
    }
    assert_eq!(stripped, expected);
    assert_eq!(
        samples_of(&stripped, "postfix"),
        [(12.0, 10_000), (4.0, 10_000)]
    );
    // nothing to take out: None (the 400 stands)
    assert_eq!(without_zeros(&without_zeros(&body).unwrap()), None);
    assert_eq!(without_zeros(b"not snappy"), None);
}
