//! Integration tests: the command line, the state file across `push --once`
//! runs, and the pull endpoint checked with Prometheus' own parser (promtool).

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A fail2ban 1.0.2 line, as the real server writes it.
pub fn f2b_line(i: usize) -> String {
    format!(
        "2026-11-22 23:13:{:02},109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.{}\n",
        i % 60,
        i % 250
    )
}

fn config_for(dir: &Path, log: &Path) -> std::path::PathBuf {
    write(
        dir,
        "rme.toml",
        &format!(
            "state_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.join("state").display(),
            log.display()
        ),
    )
}

/// What `rme state` prints: the state directory as JSON.
fn state_json(config: &Path) -> serde_json::Value {
    let out = run_rme(&["state", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "rme state failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("rme state prints JSON")
}

const LINES: &str = "rme_lines_read_total{source=\"fail2ban\"}";

#[test]
fn two_once_runs_with_a_rotation_between_count_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    let mut written = 0;
    for _ in 0..5 {
        append(&log, &f2b_line(written));
        written += 1;
    }
    let config = config_for(dir.path(), &log);
    let first = push_once(&config);
    assert_eq!(metric_value(&first, LINES), Some(5.0), "{first}");

    // lines appended, then logrotate (rename + new file), then more lines, and a partial line
    for _ in 0..3 {
        append(&log, &f2b_line(written));
        written += 1;
    }
    std::fs::rename(&log, dir.path().join("fail2ban.log.1")).unwrap();
    for _ in 0..4 {
        append(&log, &f2b_line(written));
        written += 1;
    }
    append(
        &log,
        "2026-11-22 23:14:00,000 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 19",
    );
    let second = push_once(&config);
    assert_eq!(
        metric_value(&second, LINES),
        Some(written as f64),
        "{second}"
    );

    // the partial line is finished later and counted once; nothing else is recounted
    append(&log, "8.51.100.1\n");
    let third = push_once(&config);
    assert_eq!(
        metric_value(&third, LINES),
        Some(written as f64 + 1.0),
        "{third}"
    );
    let fourth = push_once(&config);
    assert_eq!(
        metric_value(&fourth, LINES),
        Some(written as f64 + 1.0),
        "{fourth}"
    );
}

#[test]
fn copytruncate_between_runs_reads_the_new_content_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    for i in 0..6 {
        append(&log, &f2b_line(i));
    }
    let config = config_for(dir.path(), &log);
    push_once(&config);
    std::fs::File::create(&log).unwrap(); // copytruncate empties the file in place
    append(&log, &f2b_line(7));
    let out = push_once(&config);
    assert_eq!(metric_value(&out, LINES), Some(7.0), "{out}");
}

#[test]
fn counters_and_start_times_survive_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    append(&log, &f2b_line(1));
    let config = config_for(dir.path(), &log);
    push_once(&config);
    let state = state_json(&config);
    let start = |s: &serde_json::Value| {
        s["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["series"]["name"] == "rme_lines_read_total")
            .map(|c| c["start_ms"].as_i64().unwrap())
            .unwrap()
    };
    let first_start = start(&state);
    std::thread::sleep(Duration::from_millis(20));
    append(&log, &f2b_line(2));
    push_once(&config);
    let state = state_json(&config);
    assert_eq!(start(&state), first_start);
}

#[test]
fn missing_log_file_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("not-yet.log");
    let config = config_for(dir.path(), &log);
    let out = run_rme(&["push", "--once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    append(&log, &f2b_line(1));
    assert_eq!(metric_value(&push_once(&config), LINES), Some(1.0));
}

#[test]
fn random_bytes_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    // deterministic garbage with newlines, NULs and invalid UTF-8
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..20_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&log, &junk).unwrap();
    let newlines = junk.iter().filter(|b| **b == b'\n').count();
    let config = config_for(dir.path(), &log);
    let out = push_once(&config);
    assert_eq!(metric_value(&out, LINES), Some(newlines as f64), "{out}");
    let unparsed =
        metric_value(&out, "rme_lines_unparsed_total{source=\"fail2ban\"}").unwrap_or(0.0);
    assert!(unparsed >= 1.0 && unparsed <= newlines as f64, "{out}");
}

#[test]
fn defaults_round_trip_through_check_config() {
    let defaults = run_rme(&["defaults"]);
    assert!(defaults.status.success());
    let out = check_config_stdin(&stdout(&defaults));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("interval_secs = 30"),
        "{}",
        stdout(&out)
    );
}

/// Runs `rme check-config` on `text` given on stdin.
fn check_config_stdin(text: &str) -> std::process::Output {
    let mut child = rme()
        .args(["check-config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn check_config_prints_toml_that_reads_back_the_same_with_secrets_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "rme.toml",
        "jitter_secs = 2\nstate_dir = \"state\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"f2b.log\"\n\
         [[sinks]]\ntype = \"remote_write\"\nurl = \"http://127.0.0.1:1/api/v1/write\"\n\
         headers = { X-Scope-OrgID = \"tenant-secret\" }\n\
         basic_auth = { username = \"rme\", password = \"hunter2\" }\n\
         [[sinks]]\ntype = \"otlp\"\nendpoint = \"http://alice:urlPassw0rd@127.0.0.1:2/v1/metrics?token=t0ken\"\n",
    );
    let out = run_rme(&["check-config", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for secret in ["hunter2", "tenant-secret", "urlPassw0rd", "t0ken"] {
        assert!(!printed.contains(secret), "{secret}: {printed}");
    }
    assert!(printed.contains("password = \"***\""), "{printed}");
    assert!(
        printed.contains("http://alice:***@127.0.0.1:2/v1/metrics?token=***"),
        "{printed}"
    );
    // defaults filled in, paths resolved against the config's directory
    assert!(printed.contains("interval_secs = 30"), "{printed}");
    assert!(printed.contains("batch_size = 2000"), "{printed}");
    let state = dir.path().join("state");
    assert!(
        printed.contains(&format!("state_dir = \"{}\"", state.display())),
        "{printed}"
    );
    // what it prints is a config that checks, and prints the same again
    let again = check_config_stdin(&printed);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), printed);
    let json = run_rme(&["check-config", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["interval_secs"], 30);
    assert_eq!(v["sinks"][0]["basic_auth"]["password"], "***");
}

/// `rme check-config` refuses exactly what `rme push` refuses: each bad config
/// fails both, and the error names the entry and its key.
#[test]
fn check_config_refuses_what_push_refuses_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("token-is-a-directory")).unwrap();
    write(d, "broken.yml", "streams: [unclosed\n");
    write(d, "empty.yml", "patterns:\n  ip:\n    regex: '.*'\n");
    write(d, "f2b.log", "");
    let rw = "[[sinks]]\ntype = \"remote_write\"\nurl = \"https://127.0.0.1:1/api/v1/write\"\n";
    let reaction = |conf: &str| {
        format!(
            "[[sources]]\ntype = \"reaction\"\nlog = \"f2b.log\"\nconfig = \"{conf}\"\n\
             pattern_labels = [\"ip\"]\ncommand = \"/nonexistent/reaction\"\n[[sinks]]\ntype = \"stdout\"\n"
        )
    };
    let cases = [
        (
            "missing-ca.toml",
            format!("{rw}tls = {{ ca_file = \"no-such-ca.pem\" }}\n"),
            &["sinks[0]", "tls.ca_file", "no-such-ca.pem"][..],
        ),
        (
            "bad-token.toml",
            format!("{rw}bearer_token_file = \"token-is-a-directory\"\n"),
            &["sinks[0]", "bearer_token_file", "token-is-a-directory"][..],
        ),
        (
            "bad-reaction.toml",
            reaction("broken.yml"),
            &["sources[0]", "config", "broken.yml"][..],
        ),
        (
            "no-streams.toml",
            reaction("empty.yml"),
            &["sources[0]", "config", "no streams"][..],
        ),
    ];
    for (name, body, wanted) in cases {
        let p = write(d, name, &format!("state_dir = \"state-{name}\"\n{body}"));
        let check = run_rme(&["check-config", p.to_str().unwrap()]);
        let err = stderr(&check);
        assert!(!check.status.success(), "{name}: check-config accepted it");
        for w in wanted.iter().chain([&name]) {
            assert!(err.contains(w), "{name}: {w:?} not in: {err}");
        }
        let push = run_rme(&["push", "--once", "--config", p.to_str().unwrap()]);
        assert!(!push.status.success(), "{name}: push accepted it");
        assert_eq!(stderr(&push), err, "{name}: push and check-config differ");
    }
}

#[test]
fn bad_config_names_the_file_the_key_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "broken.toml",
        "[[sinks]]\ntype = \"stdout\"\nnmae = \"x\"\n",
    );
    let out = run_rme(&["check-config", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("broken.toml") && err.contains("nmae") && err.contains("unknown field"),
        "{err}"
    );

    let p = write(
        dir.path(),
        "dup.toml",
        "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\n",
    );
    let err = stderr(&run_rme(&["check-config", p.to_str().unwrap()]));
    assert!(
        err.contains("dup.toml") && err.contains("sinks[1].name"),
        "{err}"
    );
}

#[test]
fn embedded_demo_prints_metrics() {
    // run from the repository root, as the README says
    let state = root().join("target/rme-demo-state");
    let _ = std::fs::remove_dir_all(&state);
    let out = rme()
        .args(["push", "--once"])
        .current_dir(root())
        .env("RME_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines = std::fs::read_to_string(root().join("examples/logs/fail2ban.log"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(metric_value(&text, LINES), Some(lines as f64), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

/// Writes `n` fail2ban lines to a new file `path`.
fn big_log(path: &Path, n: usize) {
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        w.write_all(f2b_line(i).as_bytes()).unwrap();
    }
    w.flush().unwrap();
}

/// Asks `/metrics` every 100 ms until it shows `total` lines read: every
/// request (once rme listens) is answered within the 5 s read timeout, and
/// some answers show the read part-way, which a read holding the store lock
/// for its whole length can never show.
fn metrics_answer_until(url: &str, total: f64, what: &str) {
    let end = Instant::now() + Duration::from_secs(300);
    let (mut answered, mut partial, mut unanswered) = (0, Vec::new(), 0);
    let before = metric_value(&try_get(url, None).unwrap_or_default(), LINES).unwrap_or(0.0);
    loop {
        assert!(
            Instant::now() < end,
            "{what}: the read did not end in 300 s"
        );
        match try_get(url, None) {
            Some(body) => {
                answered += 1;
                let n = metric_value(&body, LINES).unwrap_or(0.0);
                if n >= total {
                    assert_eq!(n, total, "{what}: {body}");
                    break;
                }
                if n > before {
                    partial.push(n);
                }
            }
            // not listening yet
            None if answered == 0 => {}
            None => unanswered += 1,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        unanswered, 0,
        "{what}: requests left unanswered for 5 s (answered: {answered})"
    );
    partial.dedup();
    assert!(
        partial.len() >= 2,
        "{what}: /metrics never showed the read part-way: {partial:?} ({answered} answers)"
    );
}

/// Two large reads of 1.5 M lines (140 MB; about 8 s each for a debug build
/// here, all of it under the store lock before reads were batched) while
/// `/metrics` is asked again and again: the first read of a backlog, and a
/// file renamed over the log (rotation) while rme runs. During the second,
/// the flushes (every second) go on too, with the counts read so far.
#[test]
fn metrics_answers_during_large_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    let n = 1_500_000;
    big_log(&log, n);
    let port = free_port();
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"{}\"\n[serve]\nlisten = \"127.0.0.1:{port}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.path().join("state").display(),
            log.display()
        ),
    );
    let mut child = rme()
        .args(["push", "--config", config.to_str().unwrap()])
        .env("RME_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let _child = Killed(child);
    let url = format!("http://127.0.0.1:{port}/metrics");
    metrics_answer_until(&url, n as f64, "first read");
    let next = dir.path().join("next.log");
    big_log(&next, n);
    std::fs::rename(&next, &log).unwrap();
    metrics_answer_until(&url, 2.0 * n as f64, "read after a rotation");
    let mut flushed: Vec<f64> = (out.lock().unwrap().split("# EOF\n"))
        .filter_map(|e| metric_value(e, LINES))
        .filter(|v| *v > n as f64 && *v < 2.0 * n as f64)
        .collect();
    flushed.dedup();
    assert!(
        flushed.len() >= 2,
        "no flushes during the read after a rotation: {flushed:?}"
    );
}

#[test]
fn pull_endpoint_follows_appends_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    append(&log, &f2b_line(1));
    let port = free_port();
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"{}\"\n[serve]\nlisten = \"127.0.0.1:{port}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n",
            dir.path().join("state").display(),
            log.display()
        ),
    );
    let mut child = rme()
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let first = wait_for(&url, |t| metric_value(t, LINES) == Some(1.0));
    // new lines arrive through the file watcher, without a flush
    append(&log, &f2b_line(2));
    append(&log, &f2b_line(3));
    let text = wait_for(&url, |t| metric_value(t, LINES) == Some(3.0));
    let om = http_get(&url, Some("application/openmetrics-text; version=1.0.0"));
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let _ = child.wait();
    assert!(
        first.contains("# TYPE rme_lines_read_total counter"),
        "{first}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    // Prometheus' reference parser accepts the exposition
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: integration/peers/peers.sh install");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let res = promtool.wait_with_output().unwrap();
    // promtool exits 1 for lint warnings only (e.g. naming); 3 means it could not parse
    let report = format!("{}{}", stdout(&res), stderr(&res));
    assert_ne!(res.status.code(), Some(3), "{report}");
    assert!(!report.contains("error while linting"), "{report}");
}

/// Minimal HTTP GET on loopback (no client crate needed in tests); empty on any failure.
pub fn http_get(url: &str, accept: Option<&str>) -> String {
    try_get(url, accept).unwrap_or_default()
}

fn try_get(url: &str, accept: Option<&str>) -> Option<String> {
    use std::io::Write as _;
    let (host, path) = url.strip_prefix("http://")?.split_once('/')?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Polls `url` until `ok` holds (10 s at most), returning the last body.
pub fn wait_for(url: &str, ok: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(url, None);
        if ok(&body) || Instant::now() > end {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Collects a child's output in the background.
fn collect(
    mut out: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

/// The last complete OpenMetrics exposition printed so far.
fn last_exposition(buf: &std::sync::Mutex<String>) -> String {
    let all = buf.lock().unwrap().clone();
    let mut parts: Vec<&str> = all.split("# EOF\n").collect();
    parts.pop(); // after the last EOF: incomplete
    parts.last().map(|s| s.to_string()).unwrap_or_default()
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemon_flushes_on_interval_reloads_on_sighup_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    let rlog = dir.path().join("reaction.log");
    append(&log, &f2b_line(1));
    append(
        &rlog,
        "2024/04/28 12:00:01 INFO  ssh.failedlogin: match [203.0.113.9]\n",
    );
    let base = format!(
        "interval_secs = 1\nstate_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
        dir.path().join("state").display(),
        log.display()
    );
    let config = write(dir.path(), "rme.toml", &base);
    let mut child = rme()
        .args(["push", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    wait_until("a first flush", || {
        metric_value(&last_exposition(&out), LINES) == Some(1.0)
    });
    append(&log, &f2b_line(2));
    append(&log, &f2b_line(3));
    wait_until("the appended lines", || {
        metric_value(&last_exposition(&out), LINES) == Some(3.0)
    });

    // a broken config is refused and the daemon keeps going
    write(dir.path(), "rme.toml", "interval_secs = 0\n");
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_until("the rejection", || {
        err.lock().unwrap().contains("new config rejected")
    });
    append(&log, &f2b_line(4));
    wait_until("flushes after a rejected reload", || {
        metric_value(&last_exposition(&out), LINES) == Some(4.0)
    });

    // a valid one is taken, counters continue from the state file
    let reaction = format!(
        "[[sources]]\ntype = \"reaction\"\nlog = \"{}\"\n",
        rlog.display()
    );
    write(dir.path(), "rme.toml", &format!("{base}{reaction}"));
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let reaction_lines = "rme_lines_read_total{source=\"reaction\"}";
    wait_until("the reloaded config", || {
        metric_value(&last_exposition(&out), reaction_lines) == Some(1.0)
    });
    assert_eq!(metric_value(&last_exposition(&out), LINES), Some(4.0));

    // SIGTERM: a last flush with what came in just before, then a clean exit
    append(&log, &f2b_line(5));
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", err.lock().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(metric_value(&last_exposition(&out), LINES), Some(5.0));
}

/// SIGHUP restarts rme by exec; the state_dir lock is kept across it. While
/// the daemon restarts again and again, `push --once` runs on the same
/// state_dir one after another: every one is refused naming the daemon's pid,
/// and the daemon (same pid) keeps running.
#[test]
fn push_once_never_takes_the_lock_during_sighup_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fail2ban.log");
    append(&log, &f2b_line(1));
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "interval_secs = 1\nstate_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.path().join("state").display(),
            log.display()
        ),
    );
    let mut daemon = rme()
        .args(["push", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = daemon.id() as i32;
    let out = collect(daemon.stdout.take().unwrap());
    let err = collect(daemon.stderr.take().unwrap());
    let mut daemon = Killed(daemon);
    let flushes = || out.lock().unwrap().matches("# EOF\n").count();
    wait_until("a first flush", || flushes() >= 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let onces: Vec<_> = (0..2)
        .map(|_| {
            let (stop, config) = (stop.clone(), config.clone());
            std::thread::spawn(move || {
                let mut runs = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    runs.push(push_once_output(&config));
                }
                runs
            })
        })
        .collect();
    for i in 0..12 {
        let before = flushes();
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        // the stop's last flush, then one by the restarted rme (its signal
        // handlers are in place by then)
        let end = Instant::now() + Duration::from_secs(30);
        while flushes() < before + 2 {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!(
                    "restart {i}: rme exited ({status}); its log:\n{}",
                    err.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < end,
                "restart {i}: rme did not come back; its log:\n{}",
                err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs: Vec<_> = onces.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(runs.len() >= 12, "only {} runs of push --once", runs.len());
    for r in &runs {
        assert_eq!(r.status.code(), Some(2), "push --once ran: {}", stderr(r));
        assert!(
            stderr(r).contains(&format!("in use by another rme (pid {pid})")),
            "{}",
            stderr(r)
        );
    }
    assert!(
        !err.lock().unwrap().contains("in use by another rme"),
        "{}",
        err.lock().unwrap()
    );
    eprintln!("{} runs of push --once during 12 restarts", runs.len());
}

/// No journald runs in the test machines, so a stand-in `journalctl` (a shell
/// script) serves entries from a file and honours `--after-cursor` the way the
/// real one does; what is tested is rme's cursor bookkeeping across runs.
#[test]
fn journal_input_continues_after_the_saved_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("entries.jsonl");
    let fake = write(
        dir.path(),
        "journalctl",
        &format!(
            "#!/bin/sh\nafter=''\nfor a in \"$@\"; do case $a in --after-cursor=*) after=${{a#--after-cursor=}};; esac; done\n\
             if [ -z \"$after\" ]; then cat '{e}'; else awk -v c=\"\\\"__CURSOR\\\":\\\"$after\\\"\" 'f{{print}} index($0,c){{f=1}}' '{e}'; fi\n",
            e = entries.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let entry = |i: usize| {
        format!(
            "{{\"__CURSOR\":\"s=abc;i={i}\",\"MESSAGE\":\"INFO ssh.failedlogin: match [\\\"203.0.113.{i}\\\"]\",\"_SYSTEMD_UNIT\":\"reaction.service\"}}\n"
        )
    };
    for i in 1..=3 {
        append(&entries, &entry(i));
    }
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"{}\"\n[[sources]]\ntype = \"reaction\"\n[sources.journal]\nunit = \"reaction.service\"\njournalctl = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.path().join("state").display(),
            fake.display()
        ),
    );
    let lines = "rme_lines_read_total{source=\"reaction\"}";
    assert_eq!(metric_value(&push_once(&config), lines), Some(3.0));
    for i in 4..=5 {
        append(&entries, &entry(i));
    }
    assert_eq!(metric_value(&push_once(&config), lines), Some(5.0));
    assert_eq!(metric_value(&push_once(&config), lines), Some(5.0));
    let state = state_json(&config).to_string();
    assert!(state.contains("s=abc;i=5"), "{state}");
}

/// `push --once` says what happened in its exit code: 0 all delivered, 1 data
/// still spooled, 2 a config error, 3 a source could not be read (what could be
/// read is delivered). 4, bodies refused, is tested against Prometheus' own 400.
#[test]
fn once_exit_codes_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let state = open_for_nobody(dir.path());
    let log = dir.path().join("fail2ban.log");
    append(&log, &f2b_line(1));
    root_only(&dir.path().join("root-only.log"), &f2b_line(2));
    let config = |name: &str, text: &str| {
        write(
            dir.path(),
            name,
            &format!("state_dir = \"{}\"\n{text}", state.display()),
        )
    };
    let run = |config: &Path| {
        rme_as_nobody()
            .args(["push", "--once", "--config", config.to_str().unwrap()])
            .output()
            .expect("running rme")
    };
    let source = |name: &str, log: &str| {
        format!("[[sources]]\ntype = \"fail2ban\"\nname = \"{name}\"\nlog = \"{log}\"\n")
    };
    let ok = run(&config(
        "ok.toml",
        &format!(
            "{}[[sinks]]\ntype = \"stdout\"\n",
            source("f2b", "fail2ban.log")
        ),
    ));
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spooled = run(&config(
        "spooled.toml",
        &format!(
            "{}[[sinks]]\ntype = \"remote_write\"\nurl = \"http://127.0.0.1:{closed}/api/v1/write\"\n",
            source("f2b", "fail2ban.log")
        ),
    ));
    assert_eq!(spooled.status.code(), Some(1), "{}", stderr(&spooled));
    assert!(stderr(&spooled).contains("kept in the spool"));

    let bad = run(&write(dir.path(), "bad.toml", "interval_secs = \"soon\"\n"));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    // nobody may not read root-only.log
    let unreadable = run(&config(
        "unreadable.toml",
        &format!(
            "{}{}[[sinks]]\ntype = \"stdout\"\n",
            source("good", "fail2ban.log"),
            source("broken", "root-only.log")
        ),
    ));
    let err = stderr(&unreadable);
    assert_eq!(unreadable.status.code(), Some(3), "{err}");
    assert!(
        err.contains("source broken") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(
        metric_value(
            &stdout(&unreadable),
            "rme_lines_read_total{source=\"good\"}"
        ),
        Some(1.0),
        "the readable source is delivered: {}",
        stdout(&unreadable)
    );
}

/// Two fail2ban sources with their own names are counted apart in the
/// self-metrics; and bodies a full spool drops in a `--once` run are counted
/// by that run (the count is in the state file the next run starts from).
#[test]
fn once_runs_label_sources_by_name_and_count_spool_drops() {
    let dir = tempfile::tempdir().unwrap();
    for (file, n) in [("a.log", 2), ("b.log", 3)] {
        for i in 0..n {
            append(&dir.path().join(file), &f2b_line(i));
        }
    }
    // 40 jails: 40 more series, so more bodies than the spool holds
    for j in 0..40 {
        append(
            &dir.path().join("b.log"),
            &f2b_line(j).replace("[sshd]", &format!("[jail{j}]")),
        );
    }
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // One sample per body, a 4 KiB spool: one run's bodies do not all fit.
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"state\"\nspool_max_bytes = 4096\n\
             [[sources]]\ntype = \"fail2ban\"\nname = \"f2b-a\"\nlog = \"a.log\"\n\
             [[sources]]\ntype = \"fail2ban\"\nname = \"f2b-b\"\nlog = \"b.log\"\n\
             [[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"remote_write\"\nname = \"down\"\nbatch_size = 1\n\
             url = \"http://127.0.0.1:{closed}/api/v1/write\"\n"
        ),
    );
    let out = run_rme(&["push", "--once", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        metric_value(&text, "rme_lines_read_total{source=\"f2b-a\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "rme_lines_read_total{source=\"f2b-b\"}"),
        Some(43.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "rme_lines_read_total{source=\"fail2ban\"}"),
        None,
        "{text}"
    );
    let state = state_json(&config);
    let dropped: u64 = state["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["series"]["name"] == "rme_spool_dropped_total")
        .filter(|c| c["series"]["labels"].to_string().contains("overflow"))
        .filter_map(|c| c["value"].as_u64())
        .sum();
    let left = std::fs::read_dir(dir.path().join("state/spool/down"))
        .unwrap()
        .count();
    assert!(
        dropped > 0,
        "bodies were dropped ({left} left) but not counted: {state}"
    );
    let err = stderr(&out);
    let logged = err.lines().filter(|l| l.contains("spool full")).count();
    assert!(logged >= 1, "the drop is logged: {err}");
    // more drops than the warning burst: the rest are summed up as rme exits
    if dropped > rme::logging::BURST as u64 {
        assert!(
            logged <= rme::logging::BURST as usize + 1
                && err.contains("more warnings like this one were not written"),
            "{err}"
        );
    }
}

/// F16 of security-review-3: `rme parse … | head` closed rme's stdout early and
/// rme panicked (`failed printing to stdout: Broken pipe`, exit 101). A reader
/// gone is a clean end (as ripgrep does it): exit 0, nothing on stderr. The
/// pipe's read end is closed before rme writes, so every run hits it.
#[test]
fn a_closed_stdout_is_a_clean_exit() {
    let log = root().join("examples/logs/reaction.log");
    let config = root().join("examples/reaction.yml");
    let runs: [Vec<&std::ffi::OsStr>; 4] = [
        vec!["parse".as_ref(), "reaction".as_ref(), log.as_os_str()],
        vec![
            "parse".as_ref(),
            "reaction".as_ref(),
            log.as_os_str(),
            "--reaction-config".as_ref(),
            config.as_os_str(),
            "--pattern-labels".as_ref(),
            "ip".as_ref(),
        ],
        vec!["defaults".as_ref()],
        vec!["man".as_ref()],
    ];
    for args in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = rme()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "rme {args:?}: {:?}\n{}",
            out.status,
            stderr(&out)
        );
    }
}
