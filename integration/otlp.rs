//! OTLP sink against a real collector (rotel, peer `otelcol`) over HTTP/protobuf
//! and gRPC. rotel's dump processor writes every metric it receives as a JSON
//! line; each test finds its own data by a unique `test.id` resource attribute.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::{append, peer, push_once_output, stderr, unique, write};

/// One received data point with the metric and resource it came with.
#[derive(Debug)]
struct Received {
    metric: Json,
    point: Json,
}

impl Received {
    fn start(&self) -> u64 {
        self.point["start_time_unix_nano"].as_u64().unwrap_or(0)
    }
    fn time(&self) -> u64 {
        self.point["time_unix_nano"].as_u64().unwrap_or(0)
    }
    fn value(&self) -> Option<f64> {
        self.point["value"].as_f64()
    }
    fn resource(&self, key: &str) -> Option<&str> {
        self.metric["resource"][key].as_str()
    }
}

/// Every point of `name` that rotel received with resource `test.id = id`.
fn received(jsonl: &Path, id: &str, name: &str) -> Vec<Received> {
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|m| m["resource"]["test.id"] == id && m["name"] == name)
        .flat_map(|m| {
            let points = m["data_points"].as_array().cloned().unwrap_or_default();
            points.into_iter().map(move |point| Received {
                metric: m.clone(),
                point,
            })
        })
        .collect()
}

/// Waits (rotel batches for 200 ms) until a point of `name` with `value` has arrived.
fn wait_for(jsonl: &Path, id: &str, name: &str, value: f64) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = received(jsonl, id, name);
        if got.iter().any(|r| r.value() == Some(value)) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    config: PathBuf,
    id: String,
    jsonl: PathBuf,
}

/// A fail2ban log line banning `ip` in jail sshd.
fn ban(ip: &str) -> String {
    format!("2026-11-24 10:03:52,631 fail2ban.actions        [6604]: NOTICE  [sshd] Ban {ip}\n")
}

/// A fail2ban log with two lines (one ban) and a config that pushes to rotel over `protocol`.
/// Lines are counted in rme's own rme_lines_read_total{source="fail2ban"}.
fn setup(protocol: &str, endpoint: Option<&str>) -> Setup {
    let env = peer("otelcol");
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        "fail2ban.log",
        &format!("{}{}", ban("203.0.113.1"), "not a fail2ban line\n"),
    );
    let id = unique("otlp-");
    let endpoint = endpoint
        .map(str::to_string)
        .unwrap_or_else(|| match protocol {
            "grpc" => env["OTLP_GRPC_ENDPOINT"].clone(),
            _ => env["OTLP_HTTP_METRICS_URL"].clone(),
        });
    let config = write(
        dir.path(),
        "rme.toml",
        &sink_config(dir.path(), &log, protocol, &endpoint, &id),
    );
    Setup {
        log,
        config,
        id,
        jsonl: PathBuf::from(&env["OTEL_RECEIVED_JSONL"]),
        _dir: dir,
    }
}

fn sink_config(dir: &Path, log: &Path, protocol: &str, endpoint: &str, id: &str) -> String {
    format!(
        r#"state_dir = "{state}"
[[sources]]
type = "fail2ban"
log = "{log}"

[[sinks]]
type = "otlp"
protocol = "{protocol}"
endpoint = "{endpoint}"
timeout_secs = 3
resource_attributes = {{ "test.id" = "{id}", "deployment.environment" = "ci" }}
"#,
        state = dir.join("state").display(),
        log = log.display(),
    )
}

/// Two `push --once` runs with lines appended between: the counter grows, its
/// start time stays, and everything the spec asks for arrives.
fn counters_continue_across_runs(protocol: &str) {
    let s = setup(protocol, None);
    let out = push_once_output(&s.config);
    assert!(out.status.success(), "first run: {}", stderr(&out));
    let first = wait_for(&s.jsonl, &s.id, "rme_lines_read_total", 2.0);
    let first = first
        .iter()
        .find(|r| r.value() == Some(2.0))
        .expect("first run's counter at 2 arrived");

    append(
        &s.log,
        &format!("{}third line\nfourth line\n", ban("203.0.113.2")),
    );
    let out = push_once_output(&s.config);
    assert!(out.status.success(), "second run: {}", stderr(&out));
    let all = wait_for(&s.jsonl, &s.id, "rme_lines_read_total", 5.0);
    let second = all
        .iter()
        .find(|r| r.value() == Some(5.0))
        .expect("second run's counter at 5 arrived");

    assert_eq!(
        first.start(),
        second.start(),
        "start time must not move between runs"
    );
    assert!(first.start() > 0 && first.start() <= first.time());
    assert!(second.time() > first.time());
    for r in [first, second] {
        assert_eq!(r.metric["type"], "Sum");
        assert_eq!(r.metric["is_monotonic"], true);
        assert!(
            r.metric["aggregation_temporality"]
                .as_str()
                .unwrap_or("")
                .ends_with("Cumulative")
        );
        assert_eq!(r.point["value_type"], "AsInt");
        assert_eq!(r.point["attributes"]["source"], "fail2ban");
        assert_eq!(r.metric["description"], "Log lines read, by source.");
        assert_eq!(r.metric["scope"]["name"], "rme");
        assert_eq!(r.resource("service.name"), Some("rme"));
        assert_eq!(
            r.resource("service.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(r.resource("deployment.environment"), Some("ci"));
        assert!(
            !r.resource("host.name").unwrap_or("").is_empty(),
            "host.name: {:?}",
            r.metric["resource"]
        );
    }

    // A domain counter with its label, continuing the same way.
    let bans = wait_for(&s.jsonl, &s.id, "fail2ban_bans_total", 2.0);
    let values: Vec<_> = bans.iter().filter_map(Received::value).collect();
    assert_eq!(values, vec![1.0, 2.0], "{bans:?}");
    assert_eq!(bans[0].start(), bans[1].start());
    assert_eq!(bans[1].point["attributes"]["jail"], "sshd");
    assert_eq!(bans[1].metric["type"], "Sum");

    // Gauges go as Gauge with doubles: the sink's own spool depth, empty after delivery.
    let gauges = received(&s.jsonl, &s.id, "rme_spool_records");
    let g = gauges.first().expect("the spool gauge arrived");
    assert_eq!(g.metric["type"], "Gauge");
    assert_eq!(g.point["value_type"], "AsDouble");
    assert_eq!(g.point["attributes"]["sink"], "otlp");
}

#[test]
fn otlp_http_counters_continue_across_push_once_runs() {
    counters_continue_across_runs("http/protobuf");
}

#[test]
fn otlp_grpc_counters_continue_across_push_once_runs() {
    counters_continue_across_runs("grpc");
}

/// With the receiver unreachable the run fails and keeps the body; the next run
/// against the live receiver delivers the kept body first, then the new one.
#[test]
fn otlp_spooled_while_down_then_delivered_in_order() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}/v1/metrics");
    let s = setup("http/protobuf", Some(&down));
    let out = push_once_output(&s.config);
    assert!(
        !out.status.success(),
        "a run that could not deliver must fail"
    );
    assert!(
        stderr(&out).contains("kept in the spool"),
        "{}",
        stderr(&out)
    );

    let env = peer("otelcol");
    let dir = s.config.parent().unwrap();
    let live = sink_config(
        dir,
        &s.log,
        "http/protobuf",
        &env["OTLP_HTTP_METRICS_URL"],
        &s.id,
    );
    std::fs::write(&s.config, live).unwrap();
    append(&s.log, "third line\n");
    let out = push_once_output(&s.config);
    assert!(out.status.success(), "{}", stderr(&out));

    let got = wait_for(&s.jsonl, &s.id, "rme_lines_read_total", 3.0);
    let values: Vec<_> = got.iter().filter_map(Received::value).collect();
    assert_eq!(
        values,
        vec![2.0, 3.0],
        "kept body first, then the fresh one"
    );
    assert!(got[0].time() < got[1].time());
    assert_eq!(got[0].start(), got[1].start());
}

/// A body the receiver cannot parse is refused for good (400), not retried.
#[test]
fn otlp_http_garbage_is_rejected_with_the_status() {
    use rme::sinks::{SendError, Sink};
    let env = peer("otelcol");
    let text = format!(
        "endpoint = \"{}\"\ncompression = \"none\"",
        env["OTLP_HTTP_METRICS_URL"]
    );
    let config: rme::sinks::otlp::OtlpConfig = toml::from_str(&text).unwrap();
    let mut sink = rme::sinks::otlp::Otlp::new("otlp".into(), &config).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(sink.send(b"\xff\xff\xff not protobuf"))
        .unwrap_err();
    match err {
        SendError::Reject { reason } => assert!(reason.contains("HTTP 400"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
const MAKE_CERTS: &str = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=rme-test-ca 2>/dev/null
for who in server client; do
  openssl req $ec -keyout $who.key -out $who.csr -subj /CN=rme-test-$who 2>/dev/null
  usage=serverAuth; [ $who = client ] && usage=clientAuth
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\n' $usage > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
done
"#;

/// TLS (client certificate required) in front of rotel's plaintext port, since
/// rotel's receiver has no TLS of its own. Prints the port it listens on.
const TLS_PROXY: &str = r#"
import asyncio, ssl, sys
cert, key, ca, upstream, alpn = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.set_alpn_protocols(alpn.split(","))

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()

async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", int(upstream))
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()

asyncio.run(main())
"#;

/// The TLS proxy process, stopped when the test ends.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_proxy(dir: &Path, upstream: &str, alpn: &str) -> TlsProxy {
    use std::io::BufRead as _;
    let upstream_port = upstream
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let script = write(dir, "tls_proxy.py", TLS_PROXY);
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(["server.pem", "server.key", "ca.pem", upstream_port, alpn])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("TLS proxy did not start: {line:?}"));
    TlsProxy { child, port }
}

/// https:// with ca_file, cert_file and key_file reaches the collector over
/// both transports; without ca_file the run fails and keeps its data.
fn tls_with_client_certificate(protocol: &str) {
    let env = peer("otelcol");
    let certs = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("bash")
        .args(["-c", MAKE_CERTS])
        .current_dir(certs.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (upstream, alpn) = match protocol {
        "grpc" => (&env["OTLP_GRPC_ENDPOINT"], "h2"),
        _ => (&env["OTLP_HTTP_METRICS_URL"], "http/1.1"),
    };
    let proxy = tls_proxy(certs.path(), upstream, alpn);
    let endpoint = format!("https://127.0.0.1:{}", proxy.port);
    let s = setup(protocol, Some(&endpoint));
    let base = std::fs::read_to_string(&s.config).unwrap();
    let cert = |name: &str| certs.path().join(name).display().to_string();
    let client = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert("client.pem"),
        cert("client.key")
    );

    std::fs::write(&s.config, format!("{base}{client}")).unwrap();
    let out = push_once_output(&s.config);
    assert!(
        !out.status.success(),
        "a certificate from an unknown CA must not be accepted"
    );

    let ca = format!("ca_file = \"{}\"\n", cert("ca.pem"));
    std::fs::write(&s.config, format!("{base}{client}{ca}")).unwrap();
    let out = push_once_output(&s.config);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = wait_for(&s.jsonl, &s.id, "rme_lines_read_total", 2.0);
    assert!(got.iter().any(|r| r.value() == Some(2.0)), "{got:?}");
    assert_eq!(got[0].resource("service.name"), Some("rme"));

    if protocol == "http/protobuf" {
        // Without the CA but told to skip verification: accepted (tests only).
        append(&s.log, "third line\n");
        let insecure = "insecure_skip_verify = true\n";
        std::fs::write(&s.config, format!("{base}{client}{insecure}")).unwrap();
        let out = push_once_output(&s.config);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = wait_for(&s.jsonl, &s.id, "rme_lines_read_total", 3.0);
        assert!(got.iter().any(|r| r.value() == Some(3.0)), "{got:?}");
    }
}

#[test]
fn otlp_http_tls_with_ca_and_client_certificate() {
    tls_with_client_certificate("http/protobuf");
}

#[test]
fn otlp_grpc_tls_with_ca_and_client_certificate() {
    tls_with_client_certificate("grpc");
}
