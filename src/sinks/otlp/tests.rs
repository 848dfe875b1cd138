use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, metric, number_data_point,
};

use super::encode::host_name;
use super::transport::gzip;
use super::*;
use crate::store::{Limits, Series, Store};

fn config(toml_text: &str) -> OtlpConfig {
    toml::from_str(toml_text).unwrap()
}

/// The request bodies of an encode, without their sample counts.
fn bodies(encoded: anyhow::Result<Vec<crate::sinks::Batch>>) -> Vec<Vec<u8>> {
    encoded.unwrap().into_iter().map(|b| b.body).collect()
}

fn decode(body: &[u8]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest::decode(body).unwrap()
}

fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn snapshot() -> Snapshot {
    let mut store = Store::new(Limits::default());
    store.describe(&crate::store::Metric::counter(
        "f2b_bans_total",
        "Bans, by jail.",
    ));
    store.describe(&crate::store::Metric::gauge(
        "f2b_banned",
        "IPs banned now, by jail.",
    ));
    store.set_now(1_000);
    store.inc(Series::new("f2b_bans_total", &[("jail", "sshd")]), 4);
    store.set(Series::new("f2b_banned", &[("jail", "sshd")]), 2.0);
    store.snapshot(5_000)
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match m.data.as_ref().unwrap() {
        metric::Data::Sum(s) => &s.data_points,
        metric::Data::Gauge(g) => &g.data_points,
        _ => panic!("unexpected data"),
    }
}

#[test]
fn counters_are_cumulative_sums_with_the_stored_start_and_gauges_are_gauges() {
    let mut sink = Otlp::new("otlp".into(), &config("")).unwrap();
    let bodies = bodies(sink.encode(&snapshot()));
    assert_eq!(bodies.len(), 1);
    let req = decode(&bodies[0]);
    let scope = &req.resource_metrics[0].scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "rme");
    let by_name = |n: &str| scope.metrics.iter().find(|m| m.name == n).unwrap();

    let bans = by_name("f2b_bans_total");
    assert_eq!(bans.description, "Bans, by jail.");
    let Some(metric::Data::Sum(sum)) = &bans.data else {
        panic!("not a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(4)));
    assert_eq!(
        (p.start_time_unix_nano, p.time_unix_nano),
        (1_000_000_000, 5_000_000_000)
    );
    assert_eq!(attr(&p.attributes, "jail").as_deref(), Some("sshd"));

    let banned = by_name("f2b_banned");
    let Some(metric::Data::Gauge(g)) = &banned.data else {
        panic!("not a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(2.0))
    );
    assert_eq!(g.data_points[0].time_unix_nano, 5_000_000_000);
}

#[test]
fn resource_has_service_host_and_user_attributes_user_wins() {
    let c = config(
        "resource_attributes = { \"deployment.environment\" = \"prod\", \"service.name\" = \"edge-rme\" }",
    );
    let mut sink = Otlp::new("otlp".into(), &c).unwrap();
    let req = decode(&bodies(sink.encode(&snapshot()))[0]);
    let attrs = &req.resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(attr(attrs, "service.name").as_deref(), Some("edge-rme"));
    assert_eq!(
        attr(attrs, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        attr(attrs, "deployment.environment").as_deref(),
        Some("prod")
    );
    assert_eq!(attr(attrs, "host.name"), host_name());
    assert_eq!(
        attrs.iter().filter(|kv| kv.key == "service.name").count(),
        1
    );
}

#[test]
fn large_snapshots_are_split_into_self_contained_requests() {
    let mut store = Store::new(Limits::default());
    for i in 0..5 {
        store.inc(Series::new("a_total", &[("n", &i.to_string())]), i + 1);
    }
    for i in 0..3 {
        store.set(Series::new("b", &[("n", &i.to_string())]), f64::from(i));
    }
    let snap = store.snapshot(9_000);
    let total = snap.points.len();
    let mut sink = Otlp::new("otlp".into(), &config("max_points_per_request = 3")).unwrap();
    let batches = sink.encode(&snap).unwrap();
    let bodies: Vec<_> = batches.iter().map(|b| b.body.clone()).collect();
    let mut seen = 0;
    for (body, batch) in bodies.iter().zip(&batches) {
        let req = decode(body);
        let rm = &req.resource_metrics[0];
        assert!(rm.resource.is_some(), "every body carries the resource");
        let n: usize = rm.scope_metrics[0]
            .metrics
            .iter()
            .map(|m| points(m).len())
            .sum();
        assert!((1..=3).contains(&n), "{n} points");
        assert_eq!(batch.samples, n as u64, "the count is the body's own");
        seen += n;
    }
    assert_eq!(seen, total);
    assert_eq!(bodies.len(), total.div_ceil(3));
}

#[test]
fn batches_cut_exactly_at_the_limit() {
    let m = |name: &str, n: usize| Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); n],
        })),
        ..Metric::default()
    };
    let sizes = |b: &Vec<Vec<Metric>>| -> Vec<Vec<usize>> {
        b.iter()
            .map(|g| {
                g.iter()
                    .map(|x| x.data.as_ref().map_or(0, |_| points(x).len()))
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        sizes(&batches(vec![m("a", 2), m("b", 2)], 2)),
        vec![vec![2], vec![2]]
    );
    assert_eq!(
        sizes(&batches(vec![m("a", 5)], 2)),
        vec![vec![2], vec![2], vec![1]]
    );
    assert_eq!(
        sizes(&batches(vec![m("a", 1), m("b", 4)], 3)),
        vec![vec![1, 2], vec![2]]
    );
    assert!(batches(Vec::new(), 3).is_empty());
}

#[test]
fn an_empty_snapshot_sends_nothing() {
    let mut sink = Otlp::new("otlp".into(), &config("")).unwrap();
    assert!(bodies(sink.encode(&Snapshot::default())).is_empty());
}

#[test]
fn endpoint_defaults_and_the_v1_metrics_rule() {
    let url = |t: &str| config(t).url().map(|u| u.to_string());
    assert_eq!(url("").unwrap(), "http://127.0.0.1:4318/v1/metrics");
    assert_eq!(
        url("protocol = \"grpc\"").unwrap(),
        "http://127.0.0.1:4317/"
    );
    assert_eq!(
        url("endpoint = \"https://otel.example:4318\"").unwrap(),
        "https://otel.example:4318/v1/metrics"
    );
    assert_eq!(
        url("endpoint = \"http://vm:8428/opentelemetry/v1/metrics\"").unwrap(),
        "http://vm:8428/opentelemetry/v1/metrics"
    );
    assert!(url("protocol = \"grpc\"\nendpoint = \"http://h:4317/v1/metrics\"").is_err());
    assert!(url("endpoint = \"udp://h:1\"").is_err());
}

#[test]
fn validate_names_the_bad_key() {
    let bad = [
        ("endpoint = \"nope\"", "sinks[0].endpoint"),
        ("ca_file = \"/ca.pem\"", "sinks[0].ca_file"),
        ("tls = { ca_file = \"/ca.pem\" }", "sinks[0].tls.ca_file"),
        (
            "endpoint = \"https://h\"\ntls = { key_file = \"/c.key\" }",
            "sinks[0].tls.cert_file",
        ),
        (
            "endpoint = \"https://h\"\nca_file = \"/a.pem\"\ntls = { ca_file = \"/b.pem\" }",
            "sinks[0].tls",
        ),
        (
            "endpoint = \"https://h\"\ncert_file = \"/c.pem\"",
            "sinks[0].cert_file",
        ),
        (
            "protocol = \"grpc\"\nendpoint = \"https://h\"\ninsecure_skip_verify = true",
            "sinks[0].insecure_skip_verify",
        ),
        (
            "headers = { \"Content-Type\" = \"text/plain\" }",
            "sinks[0].headers.Content-Type",
        ),
        (
            "headers = { \"bad header\" = \"x\" }",
            "sinks[0].headers.bad header",
        ),
        (
            "protocol = \"grpc\"\nheaders = { \"x-key\" = \"caf\u{e9}\" }",
            "sinks[0].headers.x-key",
        ),
        ("timeout_secs = 0", "sinks[0].timeout_secs"),
        (
            "max_points_per_request = 0",
            "sinks[0].max_points_per_request",
        ),
        (
            "resource_attributes = { \"\" = \"x\" }",
            "sinks[0].resource_attributes",
        ),
    ];
    for (text, key) in bad {
        let Err(err) = config(text).validate("sinks[0]") else {
            panic!("accepted: {text}")
        };
        assert_eq!(err.key, key, "{text}: {err}");
    }
    config("endpoint = \"https://h\"\nheaders = { authorization = \"Bearer x\" }")
        .validate("s")
        .unwrap();
    assert!(toml::from_str::<OtlpConfig>("protocol = \"http/json\"").is_err());
    assert!(toml::from_str::<OtlpConfig>("compresion = \"gzip\"").is_err());
}

#[test]
fn gzip_round_trips() {
    use std::io::Read as _;
    let body = b"otlp".repeat(100);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gzip(&body).as_slice())
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, body);
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_receiver_that_is_down_means_retry_on_both_transports() {
    let port = closed_port();
    for proto in ["http/protobuf", "grpc"] {
        let c = config(&format!(
            "protocol = \"{proto}\"\nendpoint = \"http://127.0.0.1:{port}\"\ntimeout_secs = 2"
        ));
        let mut sink = Otlp::new("otlp".into(), &c).unwrap();
        let body = bodies(sink.encode(&snapshot())).remove(0);
        let err = sink.send(&body).await.unwrap_err();
        assert!(matches!(err, SendError::Retry { .. }), "{proto}: {err:?}");
    }
}

#[test]
fn example_config_is_valid() {
    let c =
        crate::config::Config::parse(include_str!("../../../examples/otlp.toml"), None).unwrap();
    assert!(matches!(c.sinks[0], crate::sinks::SinkConfig::Otlp(_)));
}

#[test]
fn partial_success_is_counted_once() {
    let sink = Otlp::new("otlp".into(), &config("")).unwrap();
    let partial = |n| ExportMetricsPartialSuccess {
        rejected_data_points: n,
        error_message: "bad".into(),
    };
    let refused: u64 = [Some(partial(3)), Some(partial(-1)), None, Some(partial(2))]
        .into_iter()
        .map(|p| sink.note_partial(p))
        .sum();
    assert_eq!(refused, 5);
}

#[test]
fn tls_keys_are_taken_flat_or_as_remote_writes_tls_table() {
    let flat = "ca_file = \"ca.pem\"\ncert_file = \"/abs/c.pem\"\nkey_file = \"c.key\"\ninsecure_skip_verify = true";
    let nested = "tls = { ca_file = \"ca.pem\", cert_file = \"/abs/c.pem\", key_file = \"c.key\", insecure_skip_verify = true }";
    for spelling in [flat, nested] {
        let text = format!("[[sinks]]\ntype = \"otlp\"\nendpoint = \"https://h\"\n{spelling}\n");
        let c = crate::config::Config::parse(&text, Some(std::path::Path::new("/etc/rme")))
            .unwrap_or_else(|e| panic!("{spelling}: {e:#}"));
        let crate::sinks::SinkConfig::Otlp(o) = &c.sinks[0] else {
            panic!()
        };
        let files = o.tls_files();
        let path = |p: &'static str| Some(std::path::Path::new(p));
        assert_eq!(files.ca_file, path("/etc/rme/ca.pem"), "{spelling}");
        assert_eq!(files.cert_file, path("/abs/c.pem"), "{spelling}");
        assert_eq!(files.key_file, path("/etc/rme/c.key"), "{spelling}");
        assert!(files.insecure_skip_verify, "{spelling}");
        // and the client is built from them: the missing CA file is named
        let e = format!("{:#}", Otlp::new("otlp".into(), o).err().unwrap());
        assert!(e.contains("ca_file /etc/rme/ca.pem"), "{spelling}: {e}");
    }
}

#[test]
fn tls_paths_are_taken_from_the_config_directory() {
    let text = "[[sinks]]\ntype = \"otlp\"\nendpoint = \"https://h\"\nca_file = \"ca.pem\"\ncert_file = \"/abs/c.pem\"\nkey_file = \"c.key\"\n";
    let c = crate::config::Config::parse(text, Some(std::path::Path::new("/etc/rme"))).unwrap();
    let crate::sinks::SinkConfig::Otlp(o) = &c.sinks[0] else {
        panic!()
    };
    assert_eq!(
        o.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/rme/ca.pem"))
    );
    assert_eq!(
        o.cert_file.as_deref(),
        Some(std::path::Path::new("/abs/c.pem"))
    );
    assert_eq!(
        o.key_file.as_deref(),
        Some(std::path::Path::new("/etc/rme/c.key"))
    );
}

/// Figures, not assertions: `cargo test --release --lib otlp_encode_figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn otlp_encode_figures() {
    let mut store = Store::new(Limits::default());
    for i in 0..10_000u32 {
        let ip = format!("192.0.{}.{}", i / 256, i % 256);
        store.inc(
            Series::new("f2b_bans_total", &[("jail", "sshd"), ("ip", &ip)]),
            u64::from(i),
        );
    }
    let snap = store.snapshot(crate::store::now_ms());
    let mut sink = Otlp::new("otlp".into(), &config("max_points_per_request = 10000")).unwrap();
    let t = std::time::Instant::now();
    let bodies = bodies(sink.encode(&snap));
    let encode = t.elapsed();
    let t = std::time::Instant::now();
    let zipped = gzip(&bodies[0]);
    let zip = t.elapsed();
    println!(
        "10000 series: encode {encode:?}, {} bytes; gzip {zip:?}, {} bytes ({:.1}x)",
        bodies[0].len(),
        zipped.len(),
        bodies[0].len() as f64 / zipped.len() as f64
    );
}

/// Answers one HTTP request with `answer` and hands back the request's head and body.
async fn answer_once(answer: Vec<u8>) -> (u16, tokio::task::JoinHandle<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(&answer).await.unwrap();
        (head, buf[head_end..].to_vec())
    });
    (port, task)
}

#[tokio::test]
async fn http_request_carries_headers_and_gzipped_protobuf() {
    use std::io::Read as _;
    let (port, request) =
        answer_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
    let c = config(&format!(
        "endpoint = \"http://127.0.0.1:{port}\"\nheaders = {{ authorization = \"Bearer s3cret\" }}"
    ));
    let mut sink = Otlp::new("otlp".into(), &c).unwrap();
    let body = bodies(sink.encode(&snapshot())).remove(0);
    sink.send(&body).await.unwrap();
    let (head, sent) = request.await.unwrap();
    assert!(head.starts_with("post /v1/metrics "), "{head}");
    for h in [
        "authorization: bearer s3cret",
        "content-type: application/x-protobuf",
        "content-encoding: gzip",
    ] {
        assert!(head.contains(h), "{h} missing in {head}");
    }
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(sent.as_slice())
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, body);
}

#[tokio::test]
async fn http_503_with_retry_after_is_retried_after_that_long() {
    let (port, _request) = answer_once(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nbusy"
            .to_vec(),
    )
    .await;
    let c = config(&format!(
        "endpoint = \"http://127.0.0.1:{port}\"\ncompression = \"none\""
    ));
    let mut sink = Otlp::new("otlp".into(), &c).unwrap();
    let body = bodies(sink.encode(&snapshot())).remove(0);
    match sink.send(&body).await {
        Err(SendError::Retry { reason, after }) => {
            assert_eq!(after, Some(std::time::Duration::from_secs(7)));
            assert!(reason.contains("HTTP 503: busy"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn partial_success_is_counted_by_the_push_cycle() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    let answer = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 2,
            error_message: "2 points had no name".into(),
        }),
    }
    .encode_to_vec();
    let mut http = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        answer.len()
    )
    .into_bytes();
    http.extend(answer);
    let (port, _request) = answer_once(http).await;
    let c = config(&format!("endpoint = \"http://127.0.0.1:{port}\""));
    let mut sink = Otlp::new("otlp".into(), &c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spool = crate::state_dir::spool::Spool::open(dir.path(), 1 << 20).unwrap();
    spool
        .append(&bodies(sink.encode(&snapshot()))[0], 1, 1)
        .unwrap();
    let retry = crate::agent::delivery::RetryPolicy {
        attempts: 1,
        min_backoff: std::time::Duration::ZERO,
        max_backoff: std::time::Duration::ZERO,
    };
    let spool = std::sync::Mutex::new(spool);
    let (tally, result) = crate::agent::delivery::deliver(&mut sink, &spool, &retry).await;
    result.unwrap();
    assert_eq!(
        spool.lock().unwrap().len(),
        0,
        "an accepted request leaves the spool"
    );
    let mut store = Store::new(Limits::default());
    let mut m = crate::agent::delivery::SinkMetrics::default();
    crate::agent::delivery::record_delivery(&mut m, &mut store, "otlp", &tally);
    assert_eq!(
        store.sum("rme_sink_points_rejected_total", &[("sink", "otlp")]),
        2
    );
}

#[test]
fn a_new_counter_gets_a_zero_point_once_and_keeps_its_start_time() {
    let mut store = Store::new(Limits::default());
    store.describe(&crate::store::Metric::counter("a_total", "A."));
    store.set_now(1_000);
    store.inc(Series::new("a_total", &[("jail", "sshd")]), 3);
    let first = store.snapshot(5_000);
    store.set_now(7_000);
    store.inc(Series::new("a_total", &[("jail", "postfix")]), 12);
    let second = store.snapshot(10_000);
    let mut sink = Otlp::new("otlp".into(), &config("")).unwrap();
    let sum = |batches: &[crate::sinks::Batch]| -> Vec<(String, i64, u64, u64)> {
        let req = decode(&batches[0].body);
        let m = &req.resource_metrics[0].scope_metrics[0].metrics;
        let a = m.iter().find(|m| m.name == "a_total").unwrap();
        points(a)
            .iter()
            .map(|p| {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => panic!("{p:?}"),
                };
                let jail = attr(&p.attributes, "jail").unwrap();
                (
                    jail,
                    v,
                    p.start_time_unix_nano / 1_000_000,
                    p.time_unix_nano / 1_000_000,
                )
            })
            .collect()
    };
    // the first snapshot: a backlog, no zero point
    let b = sink.encode(&first).unwrap();
    assert_eq!(sum(&b), [("sshd".to_string(), 3, 1_000, 5_000)]);
    let b = sink.encode(&second).unwrap();
    assert_eq!(
        sum(&b),
        [
            ("postfix".to_string(), 0, 5_001, 5_001),
            ("postfix".to_string(), 12, 7_000, 10_000),
            ("sshd".to_string(), 3, 1_000, 10_000),
        ]
    );
    assert_eq!(b[0].samples, second.points.len() as u64);
    // the next push: the same start time, no zero
    let b = sink.encode(&second).unwrap();
    assert_eq!(
        sum(&b),
        [
            ("postfix".to_string(), 12, 7_000, 10_000),
            ("sshd".to_string(), 3, 1_000, 10_000),
        ]
    );
    let mut none = Otlp::new("otlp".into(), &config("first_increment = \"none\"")).unwrap();
    none.encode(&first).unwrap();
    assert_eq!(sum(&none.encode(&second).unwrap()).len(), 2);
}
