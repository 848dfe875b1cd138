//! Helpers shared by the integration tests: run `rme`, start real peers.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `rme` binary cargo built for these tests.
pub fn rme() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rme"))
}

/// Runs `rme` with `args`, returning its output (never panics on a non-zero exit).
pub fn run_rme(args: &[&str]) -> Output {
    rme().args(args).output().expect("running rme")
}

/// `rme push --once --config CONFIG`, as it ended.
pub fn push_once_output(config: &Path) -> Output {
    run_rme(&[
        "push",
        "--once",
        "--config",
        config.to_str().expect("utf-8 path"),
    ])
}

/// `rme push --once --config CONFIG`, which must succeed; its standard output.
pub fn push_once(config: &Path) -> String {
    let out = push_once_output(config);
    assert!(
        out.status.success(),
        "rme push --once failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a port")
        .local_addr()
        .expect("local addr")
        .port()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `integration/peers/peers.sh`.
pub fn peers_sh() -> PathBuf {
    root().join("integration/peers/peers.sh")
}

/// Real logs written by others (../shared/samples beside the checkout, or $RME_SAMPLES).
/// Their licences do not allow copying them into this repository, so tests read them in place.
pub fn samples() -> PathBuf {
    let p = std::env::var_os("RME_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/samples"));
    assert!(
        p.is_dir(),
        "sample logs not found at {} (set RME_SAMPLES)",
        p.display()
    );
    p
}

static STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts a peer (vm, prometheus, otelcol, carbon, statsd, fail2ban, mtail; idempotent)
/// and returns the `peers.sh env` variables. Panics with the peer's log if it cannot start:
/// run `integration/peers/peers.sh install` first.
pub fn peer(name: &str) -> HashMap<String, String> {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if !started.iter().any(|n| n == name) {
        let out = Command::new("bash")
            .arg(peers_sh())
            .args(["start", name])
            .output()
            .expect("running peers.sh");
        assert!(
            out.status.success(),
            "peer {name} did not start (did `integration/peers/peers.sh install` run?):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        started.push(name.to_string());
    }
    peer_env()
}

/// The `peers.sh env` variables (URLs, ports, paths).
pub fn peer_env() -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(peers_sh())
        .arg("env")
        .output()
        .expect("running peers.sh env");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p
}

/// Appends `text` to a file.
pub fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening for append");
    f.write_all(text.as_bytes()).expect("appending");
}

/// Value of the first sample line of `metric{labels}` in a text exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A label value unique to this test run, to keep tests apart on shared peers.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0)
    )
}

/// A port on 127.0.0.1 that nothing listens on (bound, then closed).
pub fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/api/v1/write")
}

pub fn curl_get(url: &str, params: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-G", url]);
    for (k, v) in params {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = cmd.output().expect("running curl");
    assert!(
        out.status.success(),
        "GET {url} {params:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One series' raw samples as VictoriaMetrics stored them.
#[derive(Debug)]
pub struct Exported {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

/// Every raw sample of `selector`, via force_flush + /api/v1/export (exact, no
/// staleness). VM may print one series on several lines (one per stored
/// block), so lines with the same labels are merged.
pub fn vm_export(vm_url: &str, selector: &str) -> Vec<Exported> {
    curl_get(&format!("{vm_url}/internal/force_flush"), &[]);
    let end = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let text = curl_get(
        &format!("{vm_url}/api/v1/export"),
        &[("match[]", selector), ("start", "0"), ("end", &end)],
    );
    let mut merged: BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>> = BTreeMap::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).expect("export line is JSON");
        let labels = metric_labels(&v["metric"]);
        let ts = v["timestamps"]
            .as_array()
            .expect("timestamps")
            .iter()
            .map(|t| t.as_i64().expect("ts"));
        let vals = v["values"]
            .as_array()
            .expect("values")
            .iter()
            // a stale marker (NaN) is exported as null
            .map(|x| {
                if x.is_null() {
                    f64::NAN
                } else {
                    x.as_f64().expect("value")
                }
            });
        merged.entry(labels).or_default().extend(ts.zip(vals));
    }
    merged
        .into_iter()
        .map(|(labels, mut points)| {
            points.sort_by_key(|p| p.0);
            Exported { labels, points }
        })
        .collect()
}

/// Starts (or restarts, so that `envs` take effect) a peer with extra environment
/// (e.g. `VMALERT_RULES`), returning the `peers.sh env` variables.
pub fn restart_peer(name: &str, envs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .arg(peers_sh())
        .args(["restart", name])
        .envs(envs.iter().copied())
        .output()
        .expect("running peers.sh");
    assert!(
        out.status.success(),
        "peer {name} did not restart:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !started.iter().any(|n| n == name) {
        started.push(name.to_string());
    }
    peer_env()
}

/// A child process killed (and reaped) when dropped, also when the test panics.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ok` every 250 ms until it returns `Some`, for at most `secs`; panics naming `what`.
pub fn wait_for<T>(what: &str, secs: u64, mut ok: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `result` of an instant PromQL query (VictoriaMetrics or Prometheus) as (labels, value).
pub fn promql(url: &str, query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    vector(&curl_get(
        &format!("{url}/api/v1/query"),
        &[("query", query)],
    ))
}

/// The same query evaluated at `at` (unix seconds).
pub fn promql_at(url: &str, query: &str, at: f64) -> Vec<(BTreeMap<String, String>, f64)> {
    vector(&curl_get(
        &format!("{url}/api/v1/query"),
        &[("query", query), ("time", &format!("{at:.3}"))],
    ))
}

/// The labels of a series in a query or export answer (its `metric` object).
pub fn metric_labels(metric: &Value) -> BTreeMap<String, String> {
    metric
        .as_object()
        .expect("metric")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// An instant-vector answer as (labels, value).
fn vector(text: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let v: Value = serde_json::from_str(text).expect("query answer is JSON");
    v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            let labels = metric_labels(&r["metric"]);
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("value");
            (labels, value)
        })
        .collect()
}

/// A Ban line in fail2ban 1.0.2's own format in `jail`, for IP number `i`.
pub fn f2b_ban(jail: &str, i: usize) -> String {
    format!(
        "2026-11-22 23:13:{:02},109 fail2ban.actions        [23131]: NOTICE  [{jail}] Ban 192.0.2.{}\n",
        i % 60,
        i % 250 + 1
    )
}

/// `rme` run as the unprivileged user `nobody` (group `nogroup`), through setpriv:
/// what root may always read, nobody may not.
pub fn rme_as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    c.arg(env!("CARGO_BIN_EXE_rme"));
    c
}

/// Makes `dir` a place `rme_as_nobody` can use: the directory open to all for
/// reading, and `state` in it created and owned by nobody (mode 0700).
pub fn open_for_nobody(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let ok = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&state)
        .status()
        .expect("chown");
    assert!(ok.success(), "chown nobody {}", state.display());
    state
}

/// A file only root can read (mode 0600, owned by root).
pub fn root_only(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("writing a root-only file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}
