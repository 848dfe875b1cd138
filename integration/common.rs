//! Helpers shared by the integration tests: run `rme`, start real peers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The `rme` binary cargo built for these tests.
pub fn rme() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rme"))
}

/// Runs `rme` with `args`, returning its output (never panics on a non-zero exit).
pub fn run_rme(args: &[&str]) -> Output {
    rme().args(args).output().expect("running rme")
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
