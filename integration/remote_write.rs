//! remote-write against real VictoriaMetrics and Prometheus: values read back
//! with their query APIs, receiver down → spool → up, kill -9 mid-flush, 400s.
//!
//! Every test labels its series with a unique `job` (external_labels), so tests
//! sharing the peers never read each other's samples. The shared peers are never
//! stopped: "receiver down" is a closed 127.0.0.1 port, then the real receiver.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    append, closed_url, curl_get, metric_value, peer, push_once_output, rme, run_rme, stderr,
    stdout, unique, vm_export, write,
};

/// A Ban line in fail2ban 1.0.2's own format (jail sshd): counted in fail2ban_bans_total and rme_lines_read_total.
fn f2b_lines(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| {
            format!(
                "2026-11-22 23:13:{:02},109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.{}\n",
                i % 60,
                i % 250 + 1
            )
        })
        .collect()
}

/// A test's directory: a fail2ban log, a config pointing at some sinks, a state dir.
struct Case {
    dir: tempfile::TempDir,
    job: String,
}

impl Case {
    fn new(prefix: &str) -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "fail2ban.log", "");
        Case {
            dir,
            job: unique(prefix),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("fail2ban.log")
    }

    fn spool(&self, sink: &str) -> PathBuf {
        self.dir.path().join("state/spool").join(sink)
    }

    /// Writes rme.toml with one remote_write sink per (name, url, extra keys).
    /// Each sink's series carry `via = <sink name>`: Prometheus forwards what it
    /// receives to VM, and those copies must not mix with what rme sent VM itself.
    fn config(&self, top: &str, sinks: &[(&str, &str, &str)]) -> PathBuf {
        let mut text = format!(
            "state_dir = \"state\"\n{top}\n[[sources]]\ntype = \"fail2ban\"\nlog = \"fail2ban.log\"\n"
        );
        for (name, url, extra) in sinks {
            text.push_str(&format!(
                "[[sinks]]\ntype = \"remote_write\"\nname = \"{name}\"\nurl = \"{url}\"\n\
                 external_labels = {{ job = \"{}\", via = \"{name}\" }}\n{extra}\n",
                self.job
            ));
        }
        write(self.dir.path(), "rme.toml", &text)
    }
}

/// The one series of `selector`; polls a little while VM has not indexed it yet (a loaded machine).
pub(crate) fn vm_points(vm_url: &str, selector: &str) -> Vec<(i64, f64)> {
    let mut series = vm_export(vm_url, selector);
    for _ in 0..20 {
        if !series.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        series = vm_export(vm_url, selector);
    }
    assert_eq!(series.len(), 1, "{selector}: {series:?}");
    series
        .into_iter()
        .next()
        .map(|s| s.points)
        .unwrap_or_default()
}

/// Raw samples of `selector` in Prometheus (a range-vector instant query returns them all).
fn prom_points(prom_url: &str, selector: &str) -> Vec<(i64, f64)> {
    let text = curl_get(
        &format!("{prom_url}/api/v1/query"),
        &[("query", &format!("{selector}[1h]"))],
    );
    let v: Value = serde_json::from_str(&text).expect("query answer is JSON");
    let result = v["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{selector}: {text}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
            (
                t,
                p[1].as_str().and_then(|s| s.parse().ok()).expect("value"),
            )
        })
        .collect()
}

fn lines_read(job: &str, via: &str) -> String {
    format!("rme_lines_read_total{{job=\"{job}\",source=\"fail2ban\",via=\"{via}\"}}")
}

fn values(points: &[(i64, f64)]) -> Vec<f64> {
    points.iter().map(|p| p.1).collect()
}

fn assert_increasing(points: &[(i64, f64)]) {
    assert!(
        points.windows(2).all(|w| w[0].0 < w[1].0),
        "timestamps not strictly increasing: {points:?}"
    );
}

fn spool_records(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "rec"));
    v.sort();
    v
}

#[test]
fn values_equal_what_was_counted_in_vm_and_prometheus() {
    let env = peer("vm");
    let env = peer("prometheus")
        .into_iter()
        .chain(env)
        .collect::<HashMap<_, _>>();
    let c = Case::new("rwcount");
    let cfg = c.config(
        "",
        &[
            ("vm", &env["VM_WRITE_URL"], ""),
            ("prom", &env["PROM_WRITE_URL"], "batch_size = 3"),
        ],
    );
    append(&c.log(), &f2b_lines(7, 0));
    let out = push_once_output(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    append(&c.log(), &f2b_lines(4, 7));
    let out = push_once_output(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));

    let sel = |via: &str| lines_read(&c.job, via);
    let vm = vm_points(&env["VM_URL"], &sel("vm"));
    assert_eq!(values(&vm), [7.0, 11.0]);
    assert_increasing(&vm);
    let prom = prom_points(&env["PROM_URL"], &sel("prom"));
    assert_eq!(values(&prom), [7.0, 11.0]);

    // the parser's own count (rme parse, no sink involved) is what both receivers hold
    let parsed = run_rme(&["parse", "fail2ban", c.log().to_str().expect("utf-8")]);
    let counted = metric_value(&stdout(&parsed), "fail2ban_bans_total{jail=\"sshd\"}");
    assert_eq!(counted, Some(11.0), "{}", stdout(&parsed));
    for (url, via) in [(&env["VM_URL"], "vm"), (&env["PROM_URL"], "prom")] {
        let sel = format!(
            "fail2ban_bans_total{{job=\"{}\",jail=\"sshd\",via=\"{via}\"}}",
            c.job
        );
        let got = if via == "vm" {
            vm_points(url, &sel)
        } else {
            prom_points(url, &sel)
        };
        assert_eq!(got.last().map(|p| p.1), counted, "{via}");
    }

    // what rme says it sent in push 1 is what VM holds at push 1's timestamp
    let first_ts = vm[0].0;
    let at_first = vm_export(&env["VM_URL"], &format!("{{job=\"{}\",via=\"vm\"}}", c.job))
        .into_iter()
        .filter(|s| s.points.iter().any(|p| p.0 == first_ts))
        .count();
    let sent = vm_points(
        &env["VM_URL"],
        &format!(
            "rme_sink_samples_total{{job=\"{}\",sink=\"vm\",via=\"vm\",result=\"sent\"}}",
            c.job
        ),
    );
    assert_eq!(sent.last().map(|p| p.1), Some(at_first as f64));
    // batch_size = 3 split each snapshot into several requests, all taken
    let reqs = prom_points(
        &env["PROM_URL"],
        &format!(
            "rme_sink_requests_total{{job=\"{}\",sink=\"prom\",result=\"sent\"}}",
            c.job
        ),
    );
    assert_eq!(reqs.last().map(|p| p.1), Some(at_first.div_ceil(3) as f64));
}

#[test]
fn receiver_down_spools_then_everything_arrives_in_order() {
    let env = peer("vm");
    let env = peer("prometheus")
        .into_iter()
        .chain(env)
        .collect::<HashMap<_, _>>();
    let c = Case::new("rwdown");
    let down = c.config(
        "",
        &[("vm", &closed_url(), ""), ("prom", &closed_url(), "")],
    );
    let mut total = 0;
    for n in [2, 3, 4] {
        append(&c.log(), &f2b_lines(n, total));
        total += n;
        let out = push_once_output(&down);
        assert!(
            !out.status.success(),
            "a push to a closed port must report failure"
        );
        assert!(
            stderr(&out).contains("kept in the spool"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(spool_records(&c.spool("vm")).len(), 3);
    assert_eq!(spool_records(&c.spool("prom")).len(), 3);

    let up = c.config(
        "",
        &[
            ("vm", &env["VM_WRITE_URL"], ""),
            ("prom", &env["PROM_WRITE_URL"], ""),
        ],
    );
    append(&c.log(), &f2b_lines(1, total));
    let out = push_once_output(&up);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(spool_records(&c.spool("vm")).is_empty() && spool_records(&c.spool("prom")).is_empty());

    let vm = vm_points(&env["VM_URL"], &lines_read(&c.job, "vm"));
    assert_eq!(values(&vm), [2.0, 5.0, 9.0, 10.0]);
    assert_increasing(&vm);
    // Prometheus refuses a whole batch for one out-of-order sample: all four arriving proves the order
    let prom = prom_points(&env["PROM_URL"], &lines_read(&c.job, "prom"));
    assert_eq!(values(&prom), [2.0, 5.0, 9.0, 10.0]);
    let stamps = |p: &[(i64, f64)]| p.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(stamps(&prom), stamps(&vm));
    let retried = vm_points(
        &env["VM_URL"],
        &format!(
            "rme_sink_requests_total{{job=\"{}\",sink=\"vm\",via=\"vm\",result=\"retried\"}}",
            c.job
        ),
    );
    assert!(retried.last().is_some_and(|p| p.1 >= 3.0), "{retried:?}");
}

/// The samples in a spool record: (labels, timestamp, value).
fn record_samples(path: &Path) -> Vec<(BTreeMap<String, String>, i64, f64)> {
    use prost::Message as _;
    let bytes = std::fs::read(path).expect("reading a spool record");
    let record = rme::state_dir::spool::decode(0, &bytes).expect("a whole spool record");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&record.body)
        .expect("snappy");
    let req =
        rme::sinks::remote_write::prompb::WriteRequest::decode(raw.as_slice()).expect("protobuf");
    let mut out = Vec::new();
    for ts in req.timeseries {
        let labels: BTreeMap<_, _> = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        out.extend(
            ts.samples
                .iter()
                .map(|s| (labels.clone(), s.timestamp, s.value)),
        );
    }
    out
}

#[test]
fn kill_9_during_flush_loses_nothing_and_resends_at_most_the_body_in_flight() {
    let env = peer("vm");
    let c = Case::new("rwkill");
    let cfg = c.config(
        "interval_secs = 1",
        &[("vm", &env["VM_WRITE_URL"], "batch_size = 1")],
    );
    let spool = c.spool("vm");
    let mut lines = 0;
    let mut cut_short = Vec::new();
    for round in 0..3 {
        append(&c.log(), &f2b_lines(5, lines));
        lines += 5;
        let mut child = rme()
            .args(["push", "--config", cfg.to_str().expect("utf-8")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting rme push");
        // Round 0 kills while a flush is spooling (records appear); later rounds
        // while it delivers (records go, some are left). A missed moment waits for the next flush.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut peak = 0;
        while Instant::now() < deadline {
            let n = spool_records(&spool).len();
            peak = if n == 0 { 0 } else { peak.max(n) };
            if n > 0 && (round == 0 || n < peak) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping rme");
        let left = spool_records(&spool);
        assert!(
            !left.is_empty(),
            "round {round}: the kill did not land during a flush"
        );
        cut_short.extend(left.iter().flat_map(|p| record_samples(p)));
    }
    let out = push_once_output(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(spool_records(&spool).is_empty());

    let series = vm_export(&env["VM_URL"], &format!("{{job=\"{}\"}}", c.job));
    // A kill between the receiver's 2xx and the spool file's removal re-sends that one
    // body (at-least-once; README). So: a repeated timestamp must carry the same value
    // (an idempotent re-send, which Prometheus also accepts), and with batch_size = 1
    // each of the 3 kills can cause at most one.
    let mut repeats = 0;
    for s in &series {
        let mut unique = s.points.clone();
        unique.dedup();
        repeats += s.points.len() - unique.len();
        assert_increasing(&unique);
    }
    assert!(repeats <= 3, "{repeats} samples sent twice by 3 kills");
    // every sample the kills left in the spool arrived after the restart
    assert!(!cut_short.is_empty());
    for (labels, t, v) in &cut_short {
        let s = series.iter().find(|s| &s.labels == labels);
        assert!(
            s.is_some_and(|s| s.points.contains(&(*t, *v))),
            "{labels:?} @{t} = {v} was left in the spool by the kill and never arrived"
        );
    }
    let read = series
        .iter()
        .find(|s| s.labels["__name__"] == "rme_lines_read_total")
        .map(|s| s.points.clone());
    assert_eq!(read.and_then(|p| p.last().map(|p| p.1)), Some(lines as f64));
}

#[test]
fn prometheus_400_for_an_out_of_order_batch_is_dropped_and_counted() {
    let env = peer("prometheus");
    let a = Case::new("rw400");
    // A spools a snapshot while its receiver is down ...
    append(&a.log(), &f2b_lines(3, 0));
    let down = a.config("", &[("prom", &closed_url(), "")]);
    assert!(!push_once_output(&down).status.success());
    // ... then B, with the same job and series, gets a newer sample into Prometheus first
    let b = Case {
        dir: tempfile::tempdir().expect("tempdir"),
        job: a.job.clone(),
    };
    write(b.dir.path(), "fail2ban.log", &f2b_lines(3, 0));
    let out = push_once_output(&b.config("", &[("prom", &env["PROM_WRITE_URL"], "")]));
    assert!(out.status.success(), "{}", stderr(&out));
    // so A's spooled (older) batch is out of order: 400, dropped, not retried; A's fresh one goes in
    let up = a.config("", &[("prom", &env["PROM_WRITE_URL"], "")]);
    let out = push_once_output(&up);
    // delivered what it could; the refusal makes the run exit 4
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("400") && log.contains("out of order"), "{log}");
    assert!(spool_records(&a.spool("prom")).is_empty());
    // one more push reports the counts
    assert!(push_once_output(&up).status.success());
    let q = |m: &str, result: &str| {
        prom_points(
            &env["PROM_URL"],
            &format!("{m}{{job=\"{}\",sink=\"prom\",result=\"{result}\"}}", a.job),
        )
        .last()
        .map(|p| p.1)
    };
    assert_eq!(q("rme_sink_requests_total", "rejected"), Some(1.0));
    assert!(q("rme_sink_samples_total", "rejected").is_some_and(|n| n >= 5.0));
    // the 3 retries are those of the closed port; the 400 added none
    assert_eq!(q("rme_sink_requests_total", "retried"), Some(3.0));
}

/// A scripted receiver on 127.0.0.1:0: answers each request with the next (status, headers, body).
fn fake_receiver(
    script: Vec<(u16, &'static str, &'static str)>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/write",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (stream, (status, headers, body)) in
            listener
                .incoming()
                .zip(
                    script
                        .into_iter()
                        .chain(std::iter::repeat((599, "", "script ended"))),
                )
        {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body_in = vec![0; len];
            let _ = reader.read_exact(&mut body_in);
            log.lock().expect("lock").push(head);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn fake_receiver_sees_spec_headers_and_a_400_is_not_retried() {
    let (url, seen) = fake_receiver(vec![
        (503, "Retry-After: 1\r\n", "busy"),
        (400, "", "label name \"x\" is invalid"),
    ]);
    let c = Case::new("rwfake");
    append(&c.log(), &f2b_lines(2, 0));
    let cfg = c.config(
        "",
        &[(
            "fake",
            &url,
            "headers = { \"X-Scope-OrgID\" = \"tenant7\" }",
        )],
    );
    let out = push_once_output(&cfg);
    let log = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a refused batch is dropped (not left to block the spool) and the run says so: {log}"
    );
    assert!(log.contains("400") && log.contains("is invalid"), "{log}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "503 retried once, 400 never: {seen:?}");
    for head in &seen {
        let h = head.to_ascii_lowercase();
        assert!(h.starts_with("post /api/v1/write"), "{head}");
        for want in [
            "content-encoding: snappy",
            "content-type: application/x-protobuf",
            "x-prometheus-remote-write-version: 0.1.0",
            concat!("user-agent: rme/", env!("CARGO_PKG_VERSION")),
            "x-scope-orgid: tenant7",
        ] {
            assert!(h.contains(want), "{want} missing in {head}");
        }
    }
    assert!(spool_records(&c.spool("fake")).is_empty());
}

#[test]
fn secrets_are_read_from_files_relative_to_the_config() {
    let (url, seen) = fake_receiver(vec![(204, "", ""), (204, "", "")]);
    let c = Case::new("rwauth");
    append(&c.log(), &f2b_lines(1, 0));
    write(c.dir.path(), "token", "tok-123\n");
    write(c.dir.path(), "password", "s3cret\n");
    let cfg = c.config(
        "",
        &[
            ("bearer", &url, "bearer_token_file = \"token\""),
            (
                "basic",
                &url,
                "basic_auth = { username = \"rme\", password_file = \"password\" }",
            ),
        ],
    );
    let out = push_once_output(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    let heads = seen.lock().expect("lock").join("\n").to_ascii_lowercase();
    assert!(
        heads.contains("authorization: bearer tok-123\r\n"),
        "{heads}"
    );
    // base64("rme:s3cret")
    assert!(
        heads.contains("authorization: basic cm1lonmzy3jlda=="),
        "{heads}"
    );
}

/// A receiver that accepts every connection and never answers: each is held
/// open, unread, until the receiver is dropped.
struct Hung {
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Hung {
    fn start() -> Hung {
        use std::sync::atomic::Ordering;
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://127.0.0.1:{}/api/v1/write",
            l.local_addr().expect("addr").port()
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            held.len()
        });
        Hung {
            url,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops holding; returns how many connections it took.
    fn stop(&mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `rme push` killed (SIGKILL) if a test fails before it stops it.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two remote-write sinks, one to a receiver that accepts and never answers.
/// Each sink delivers on its own task: the healthy VictoriaMetrics gets every
/// flush's new count while the other hangs; SIGHUP restarts rme and SIGTERM
/// ends it within the stop timeout, the hung sink's data stays in its spool,
/// and a later run delivers it.
#[test]
fn a_hung_receiver_delays_neither_the_other_sink_nor_sigterm() {
    let env = peer("vm");
    let c = Case::new("rwhung");
    let mut hung = Hung::start();
    let config = c.config(
        "interval_secs = 2\nstop_timeout_secs = 3",
        &[
            ("hung", &hung.url, "timeout_secs = 60"),
            ("vm", &env["VM_WRITE_URL"], ""),
        ],
    );
    let mut total = 0;
    append(&c.log(), &f2b_lines(3, total));
    total += 3;
    let mut daemon = Daemon(
        rme()
            .args(["push", "--config", config.to_str().expect("utf-8")])
            .stderr(std::fs::File::create(c.dir.path().join("rme.log")).expect("rme.log"))
            .spawn()
            .expect("starting rme push"),
    );
    let selector = lines_read(&c.job, "vm");
    for round in 0..4 {
        if round > 0 {
            append(&c.log(), &f2b_lines(2, total));
            total += 2;
        }
        // Generous: a flush is due every 2 s; the hung sink's one request takes 60.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = vm_export(&env["VM_URL"], &selector)
                .first()
                .and_then(|s| s.points.last().map(|p| p.1));
            if got == Some(total as f64) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: VM has {got:?}, rme read {total}; rme's log:\n{}",
                std::fs::read_to_string(c.dir.path().join("rme.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // SIGHUP with a valid config: the same bounded stop, then rme restarts in
    // place (same pid) and goes on delivering.
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    append(&c.log(), &f2b_lines(2, total));
    total += 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = vm_export(&env["VM_URL"], &selector)
            .first()
            .and_then(|s| s.points.last().map(|p| p.1));
        if got == Some(total as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after SIGHUP: VM has {got:?}, rme read {total}; rme's log:\n{}",
            std::fs::read_to_string(c.dir.path().join("rme.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM: a last flush into the spools, delivery given the stop timeout (3 s), exit.
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "rme still running 20 s after SIGTERM with a 3 s stop timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(c.dir.path().join("rme.log")).unwrap_or_default();
    assert!(status.success(), "{status:?}: {log}");
    assert!(hung.stop() >= 1, "the hung receiver was asked");
    assert!(
        !spool_records(&c.spool("hung")).is_empty(),
        "the hung sink's data stays spooled: {log}"
    );
    assert!(spool_records(&c.spool("vm")).is_empty(), "{log}");
    // A later run with a receiver that answers delivers what waited, in order.
    let later = c.config(
        "",
        &[
            ("hung", &env["VM_WRITE_URL"], ""),
            ("vm", &env["VM_WRITE_URL"], ""),
        ],
    );
    let out = push_once_output(&later);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(spool_records(&c.spool("hung")).is_empty());
    let points = vm_points(&env["VM_URL"], &lines_read(&c.job, "hung"));
    assert_increasing(&points);
    assert_eq!(points.last().map(|p| p.1), Some(total as f64), "{points:?}");
}
