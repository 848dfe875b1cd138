//! Integration tests: the statsd sink against Etsy statsd 0.9.0 and its graphite
//! backend writing to a real carbon-cache. Whisper files (and carbon's cache)
//! are read back, and the sum of every `stats.counters.<k>.count` point must
//! equal what rme counted: no counter added twice across flushes, restarts and
//! `push --once` runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rme::sinks::Sink as _;
use rme::sinks::statsd::{Statsd, StatsdConfig};
use rme::store::{Point, Series, Snapshot, Value};

use crate::common::{
    append, free_port, peer, push_once_output, rme, root, samples, stderr, unique, write,
};

/// Lines of a real fail2ban log; rme counts each in `rme_lines_read_total{source="fail2ban"}`.
fn fail2ban_lines(from: usize, n: usize) -> String {
    let log = samples().join("fail2ban/fail2ban-0.9.5-0.10.4-guilbod.log");
    let text = std::fs::read_to_string(&log).expect("reading a fail2ban sample");
    let lines: Vec<&str> = text.lines().skip(from).take(n).collect();
    assert_eq!(
        lines.len(),
        n,
        "the sample has fewer lines than the test needs"
    );
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// One counter as rme saved it in its state file.
struct Counted {
    name: String,
    labels: Vec<(String, String)>,
    value: u64,
}

struct Setup {
    dir: tempfile::TempDir,
    log: PathBuf,
    config: PathBuf,
    prefix: String,
    style: &'static str,
}

/// A config reading one fail2ban log and pushing to statsd at `address`.
fn setup(address: &str, style: &'static str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = write(dir.path(), "fail2ban.log", "");
    let prefix = unique("rmetest_");
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"state\"\n\n[[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n\n\
             [[sinks]]\ntype = \"statsd\"\naddress = \"{address}\"\nprefix = \"{prefix}\"\ntag_style = \"{style}\"\n{extra}"
        ),
    );
    Setup {
        dir,
        log,
        config,
        prefix,
        style,
    }
}

impl Setup {
    fn push_once(&self) -> std::process::Output {
        push_once_output(&self.config)
    }

    /// `push --once` that kills itself with SIGKILL at a crash point (see
    /// `src/failpoint.rs`; debug builds, as `cargo test` makes them).
    fn push_once_killed_at(&self, point: &str) {
        use std::os::unix::process::ExitStatusExt as _;
        let out = rme()
            .args(["push", "--once", "--config", self.config.to_str().unwrap()])
            .env("RME_FAILPOINT", point)
            .output()
            .expect("running rme");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "rme was to kill itself at {point} (a debug build is needed): {}",
            stderr(&out)
        );
    }

    /// Counters rme saved at its last flush.
    fn counted(&self) -> Vec<Counted> {
        let out = crate::common::run_rme(&["state", "--config", self.config.to_str().unwrap()]);
        assert!(out.status.success(), "rme state: {}", stderr(&out));
        let state: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("rme state prints JSON");
        let counters = state["counters"].as_array().expect("state has counters");
        counters
            .iter()
            .map(|c| {
                let labels = c["series"]["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap_or("").to_string(),
                            kv[1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                Counted {
                    name: c["series"]["name"].as_str().unwrap_or("").to_string(),
                    labels,
                    value: c["value"].as_u64().unwrap_or(0),
                }
            })
            .collect()
    }

    /// The graphite path statsd's backend writes a counter's per-flush count to.
    fn graphite_count(&self, name: &str, labels: &[(String, String)]) -> String {
        let clean = |s: &str, dots: bool| -> String {
            s.chars()
                .map(|c| match c {
                    c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => c,
                    '.' if dots => '.',
                    '/' => '-',
                    _ => '_',
                })
                .collect()
        };
        let key = format!("stats.counters.{}.{}", self.prefix, clean(name, false));
        let labels = labels.iter().filter(|(_, v)| !v.is_empty());
        if self.style == "path" {
            let parts: String = labels
                .map(|(k, v)| format!(".{}_{}", clean(k, false), clean(v, false)))
                .collect();
            format!("{key}{parts}.count")
        } else {
            let tags: String = labels
                .map(|(k, v)| format!(";{}={}", clean(k, false), clean(v, true)))
                .collect();
            format!("{key}.count{tags}")
        }
    }

    /// Waits until graphite holds, for every counter rme saved, the same sum
    /// (then a little longer, so a late extra flush would show), and compares.
    fn assert_graphite_matches(&self, env: &HashMap<String, String>) {
        self.assert_graphite_holds(env, |counted| counted);
    }

    /// As [`Setup::assert_graphite_matches`], with graphite's sum expected to be
    /// `expect(what rme counted)` for each counter.
    fn assert_graphite_holds(&self, env: &HashMap<String, String>, expect: impl Fn(u64) -> u64) {
        let expected: Vec<(String, u64)> = self
            .counted()
            .into_iter()
            // rme_sink_* count the last run's own delivery, after its snapshot: the
            // state keeps them for the next run, so graphite cannot have them yet.
            .filter(|c| c.value > 0 && !c.name.starts_with("rme_sink_"))
            .map(|c| (self.graphite_count(&c.name, &c.labels), expect(c.value)))
            .collect();
        assert!(!expected.is_empty(), "rme counted nothing");
        let read = || -> Vec<(String, f64, u64)> {
            expected
                .iter()
                .map(|(m, want)| (m.clone(), graphite_sum(env, m), *want))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = read();
        while got.iter().any(|(_, sum, want)| *sum < *want as f64) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            got = read();
        }
        // Three more statsd flushes: anything sent twice would arrive by then.
        std::thread::sleep(Duration::from_secs(3));
        for (metric, sum, want) in read() {
            assert_eq!(
                sum, want as f64,
                "graphite sum of {metric} (rme counted {want})"
            );
        }
    }
}

/// Points of one graphite series over the last 10 minutes, oldest first.
fn graphite_points(env: &HashMap<String, String>, metric: &str) -> Vec<f64> {
    let out = Command::new("/usr/bin/python3")
        .arg(root().join("integration/peers/lib/graphite_fetch.py"))
        .arg(&env["GRAPHITE_WHISPER_DIR"])
        .arg(std::env::var("CARBON_QUERY_PORT").unwrap_or_else(|_| "7002".into()))
        .arg(metric)
        .arg("600")
        .output()
        .expect("running graphite_fetch.py");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .collect()
}

/// Sum of the points of one graphite series (0 when absent).
fn graphite_sum(env: &HashMap<String, String>, metric: &str) -> f64 {
    graphite_points(env, metric).iter().sum()
}

fn lines_read(s: &Setup) -> u64 {
    s.counted()
        .iter()
        .find(|c| {
            c.name == "rme_lines_read_total"
                && c.labels
                    .iter()
                    .any(|(k, v)| k == "source" && v == "fail2ban")
        })
        .map_or(0, |c| c.value)
}

#[test]
fn two_once_runs_with_dogstatsd_tags_add_up_exactly() {
    peer("carbon");
    let env = peer("statsd");
    let s = setup(&env["STATSD_ADDR"], "dogstatsd", "");
    append(&s.log, &fail2ban_lines(0, 40));
    let out = s.push_once();
    assert!(out.status.success(), "first run: {}", stderr(&out));
    append(&s.log, &fail2ban_lines(40, 25));
    let out = s.push_once();
    assert!(out.status.success(), "second run: {}", stderr(&out));
    let out = s.push_once();
    assert!(
        out.status.success(),
        "third run, nothing new: {}",
        stderr(&out)
    );
    assert_eq!(lines_read(&s), 65);
    s.assert_graphite_matches(&env);
}

/// `rme push` flushing every second: two flushes with data, SIGTERM, then a cron run.
#[test]
fn daemon_flushes_then_a_once_run_with_graphite_tags_add_up_exactly() {
    peer("carbon");
    let env = peer("statsd");
    let s = setup(&env["STATSD_ADDR"], "graphite", "max_packet_bytes = 200");
    append(&s.log, &fail2ban_lines(100, 30));
    let mut daemon = Daemon(
        rme()
            .args(["push", "--config", s.config.to_str().unwrap()])
            .stderr(std::fs::File::create(s.dir.path().join("rme.log")).expect("rme.log"))
            .spawn()
            .expect("starting rme push"),
    );
    let read_metric = s.graphite_count(
        "rme_lines_read_total",
        &[("source".into(), "fail2ban".into())],
    );
    wait_for_sum(&env, &read_metric, 30.0);
    append(&s.log, &fail2ban_lines(130, 12));
    wait_for_sum(&env, &read_metric, 42.0);
    daemon.stop();
    append(&s.log, &fail2ban_lines(142, 5));
    let out = s.push_once();
    assert!(
        out.status.success(),
        "once run after the daemon: {}",
        stderr(&out)
    );
    assert_eq!(lines_read(&s), 47);
    s.assert_graphite_matches(&env);
}

/// kill -9 after a flush's bodies are fsynced in the spool and before the state
/// file is saved: the next run sends the spooled body and reads the same lines
/// again. What statsd was last sent is committed with the body that carries it,
/// so the re-read lines add nothing: graphite holds exactly what rme counted.
#[test]
fn kill_9_between_spool_and_state_save_sends_no_delta_twice() {
    peer("carbon");
    let env = peer("statsd");
    let s = setup(&env["STATSD_ADDR"], "dogstatsd", "max_packet_bytes = 300");
    append(&s.log, &fail2ban_lines(229, 12));
    let out = s.push_once();
    assert!(out.status.success(), "first run: {}", stderr(&out));
    // More of the same series, and new ones (the next lines have other jails and kinds).
    append(&s.log, &fail2ban_lines(241, 40));
    s.push_once_killed_at("after-spool");
    let out = s.push_once();
    assert!(out.status.success(), "run after the kill: {}", stderr(&out));
    assert_eq!(lines_read(&s), 52);
    s.assert_graphite_matches(&env);
}

/// kill -9 after statsd took a body and before its spool record is removed:
/// that one body is sent again by the next run (UDP to a local statsd: it did
/// arrive), and nothing else is. The only window left, as the README says.
#[test]
fn kill_9_between_send_and_removal_repeats_exactly_the_one_body() {
    peer("carbon");
    let env = peer("statsd");
    let s = setup(&env["STATSD_ADDR"], "dogstatsd", "");
    append(&s.log, &fail2ban_lines(250, 12));
    s.push_once_killed_at("after-send");
    let out = s.push_once();
    assert!(out.status.success(), "run after the kill: {}", stderr(&out));
    assert_eq!(lines_read(&s), 12);
    // One small body carried every delta of the killed run: each arrives twice.
    s.assert_graphite_holds(&env, |counted| 2 * counted);
}

/// A private statsd that is down for the first run: the data waits in the
/// spool and arrives once, with the next run's. Over TCP the connection is
/// refused; over UDP loopback the "port unreachable" is seen at once.
fn late_statsd_loses_and_repeats_nothing(protocol: &str, style: &'static str) {
    let env = peer("carbon");
    let port = if protocol == "udp" {
        free_udp_port()
    } else {
        free_port()
    };
    let mgmt = free_port();
    let extra = format!("protocol = \"{protocol}\"");
    let s = setup(&format!("127.0.0.1:{port}"), style, &extra);
    append(&s.log, &fail2ban_lines(200, 20));
    let out = s.push_once();
    assert!(
        !out.status.success(),
        "statsd is not there yet, so the run must say so"
    );
    assert!(
        stderr(&out).contains("kept in the spool"),
        "{}",
        stderr(&out)
    );
    let _statsd = start_statsd(&env, s.dir.path(), protocol, port, mgmt);
    append(&s.log, &fail2ban_lines(220, 9));
    let out = s.push_once();
    assert!(out.status.success(), "second run: {}", stderr(&out));
    assert_eq!(lines_read(&s), 29);
    s.assert_graphite_matches(&env);
}

#[test]
fn tcp_to_a_statsd_that_starts_late_loses_and_repeats_nothing() {
    late_statsd_loses_and_repeats_nothing("tcp", "path");
}

#[test]
fn udp_to_a_statsd_that_starts_late_loses_and_repeats_nothing() {
    late_statsd_loses_and_repeats_nothing("udp", "dogstatsd");
}

/// Gauges (a negative one too) and IPv6 label values, through the sink itself
/// and real statsd: what graphite stores is what rme held.
#[test]
fn gauges_and_ipv6_labels_arrive_as_held() {
    peer("carbon");
    let env = peer("statsd");
    let prefix = unique("rmetest_");
    let text = format!(
        "address = \"{}\"\nprefix = \"{prefix}\"",
        env["STATSD_ADDR"]
    );
    let config: StatsdConfig = toml::from_str(&text).expect("sink config");
    let mut sink = Statsd::new("statsd".into(), &config).expect("building the sink");
    let banned = Series::new("rme_banned", &[("ip", "2001:db8::5"), ("jail", "sshd")]);
    let below = Series::new("rme_below", &[]);
    let hits = Series::new("rme_hits_total", &[("ip", "2001:db8::5")]);
    let point = |series: &Series, value| Point {
        series: std::sync::Arc::new(series.clone()),
        value,
        start_ms: 1,
    };
    let snap = |below_value| Snapshot {
        at_ms: 1,
        points: vec![
            point(&banned, Value::Gauge(3.0)),
            point(&below, Value::Gauge(below_value)),
            point(&hits, Value::Counter(7)),
        ],
        ..Snapshot::default()
    };
    // 10 then -4.5 within one statsd flush: without a `0|g` first, statsd would
    // take "-4.5" as "subtract 4.5" and store 5.5.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for below_value in [10.0, -4.5] {
        for body in sink.encode(&snap(below_value)).expect("encoding") {
            rt.block_on(sink.send(&body.body))
                .expect("sending to statsd");
        }
    }
    let hits_count = format!("stats.counters.{prefix}.rme_hits_total.count;ip=2001_db8__5");
    wait_for_sum(&env, &hits_count, 7.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(graphite_sum(&env, &hits_count), 7.0, "{hits_count}");
    let gauges = [
        (
            format!("stats.gauges.{prefix}.rme_banned;ip=2001_db8__5;jail=sshd"),
            3.0,
        ),
        (format!("stats.gauges.{prefix}.rme_below"), -4.5),
    ];
    for (metric, want) in gauges {
        let points = graphite_points(&env, &metric);
        assert_eq!(points.last(), Some(&want), "{metric}: {points:?}");
    }
}

fn wait_for_sum(env: &HashMap<String, String>, metric: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while graphite_sum(env, metric) < want {
        assert!(
            Instant::now() < deadline,
            "{metric} never reached {want} in graphite"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `rme push` as a child; SIGTERM (a last flush) on `stop`, SIGKILL if the test fails first.
pub(crate) struct Daemon(pub(crate) Child);

impl Daemon {
    pub(crate) fn stop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.0.wait().expect("waiting for rme");
        assert!(status.success(), "rme push exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a port");
    s.local_addr().expect("local addr").port()
}

/// A second Etsy statsd on `port` (udp or tcp), flushing to the shared carbon.
fn start_statsd(
    env: &HashMap<String, String>,
    dir: &Path,
    protocol: &str,
    port: u16,
    mgmt: u16,
) -> Daemon {
    let js = Path::new(&env["PEERS_TOOLS"]).join("statsd/node_modules/statsd/stats.js");
    let carbon_port = env["CARBON_ADDR"]
        .rsplit(':')
        .next()
        .unwrap_or("2003")
        .to_string();
    let config = write(
        dir,
        "statsd.js",
        &format!(
            "{{ servers: [{{ server: \"./servers/{protocol}\", address: \"127.0.0.1\", port: {port} }}],\n\
             mgmt_address: \"127.0.0.1\", mgmt_port: {mgmt}, flushInterval: 1000,\n\
             backends: [\"./backends/graphite\"], graphiteHost: \"127.0.0.1\", graphitePort: {carbon_port},\n\
             graphite: {{ legacyNamespace: false, globalPrefix: \"stats\" }}, deleteIdleStats: true }}\n"
        ),
    );
    let child = Command::new("node")
        .arg(&js)
        .arg(&config)
        .current_dir(js.parent().expect("statsd dir"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting statsd (did `integration/peers/peers.sh install` run?)");
    let statsd = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The management port opens after the metric listeners.
    while std::net::TcpStream::connect(("127.0.0.1", mgmt)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the private statsd did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    statsd
}

/// A daemon and `push --once` runs on one state_dir (both units enabled, or a manual
/// run): each once run must refuse, naming the daemon's pid, and graphite's sums must
/// still be exactly what was counted (two writers of one state used to count ~1.5x).
#[test]
fn a_second_rme_on_the_same_state_dir_refuses_and_nothing_is_counted_twice() {
    peer("carbon");
    let env = peer("statsd");
    let s = setup(&env["STATSD_ADDR"], "graphite", "");
    append(&s.log, &fail2ban_lines(0, 40));
    let mut daemon = Daemon(
        rme()
            .args(["push", "--config", s.config.to_str().unwrap()])
            .stderr(std::fs::File::create(s.dir.path().join("rme.log")).expect("rme.log"))
            .spawn()
            .expect("starting rme push"),
    );
    let pid = daemon.0.id().to_string();
    let read_metric = s.graphite_count(
        "rme_lines_read_total",
        &[("source".into(), "fail2ban".into())],
    );
    wait_for_sum(&env, &read_metric, 40.0);
    for round in 0..5 {
        append(&s.log, &fail2ban_lines(40 + round * 10, 10));
        let out = s.push_once();
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "round {round}: the second rme ran: {err}"
        );
        assert!(
            err.contains("state_dir") && err.contains(&format!("pid {pid}")),
            "round {round}: {err}"
        );
    }
    wait_for_sum(&env, &read_metric, 90.0);
    daemon.stop();
    assert_eq!(lines_read(&s), 90);
    s.assert_graphite_matches(&env);
}

/// A statsd over TCP that hangs (SIGSTOP) and is then killed (SIGKILL), the
/// case statsd's protocol cannot see: the kernel keeps taking bytes for a
/// process that will never read them. With `management_address` rme asks
/// statsd's management port `health` before each write, finds it hung, writes
/// nothing, keeps the data in its spool, logs and counts the hold-up; a new
/// statsd on the same ports then gets every line. (Without the probe rme wrote
/// the hung statsd's share into its socket, counted it as sent, and it died
/// with statsd: 20 of 50 lines reached graphite.)
#[test]
fn a_hung_statsd_is_found_by_its_management_port_and_nothing_is_lost() {
    let env = peer("carbon");
    let (port, mgmt) = (free_port(), free_port());
    let extra = format!("protocol = \"tcp\"\nmanagement_address = \"127.0.0.1:{mgmt}\"\n");
    let s = setup(&format!("127.0.0.1:{port}"), "path", &extra);
    let mut statsd = start_statsd(&env, s.dir.path(), "tcp", port, mgmt);
    append(&s.log, &fail2ban_lines(0, 20));
    let rme_log = s.dir.path().join("rme.log");
    let mut daemon = Daemon(
        rme()
            .args(["push", "--config", s.config.to_str().unwrap()])
            .stderr(std::fs::File::create(&rme_log).expect("rme.log"))
            .spawn()
            .expect("starting rme push"),
    );
    let read_metric = s.graphite_count(
        "rme_lines_read_total",
        &[("source".into(), "fail2ban".into())],
    );
    wait_for_sum(&env, &read_metric, 20.0);
    let statsd_pid = statsd.0.id() as libc::pid_t;
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(statsd_pid, libc::SIGSTOP) }, 0);
    append(&s.log, &fail2ban_lines(20, 30));
    crate::common::wait_for("rme to log the failed health probe", 30, || {
        let log = std::fs::read_to_string(&rme_log).unwrap_or_default();
        log.contains("no answer to `health`").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    // The hung statsd dies with whatever its socket holds; a new one takes its ports.
    let _ = statsd.0.kill();
    let _ = statsd.0.wait();
    statsd = start_statsd(&env, s.dir.path(), "tcp", port, mgmt);
    wait_for_sum(&env, &read_metric, 50.0);
    daemon.stop();
    drop(statsd);
    assert_eq!(lines_read(&s), 50);
    s.assert_graphite_matches(&env);
    let failures: u64 = s
        .counted()
        .iter()
        .filter(|c| c.name == "rme_sink_health_failures_total")
        .map(|c| c.value)
        .sum();
    let log = std::fs::read_to_string(&rme_log).unwrap_or_default();
    assert!(failures >= 1, "the hold-ups are counted: {log}");
    println!("hung statsd: {failures} failed health probes, every one of 50 lines in graphite");
}
