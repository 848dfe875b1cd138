//! reaction's live state from `reaction show` (its CLI; the socket protocol is Go gob in
//! v1 and undocumented in v2): pending delayed actions (e.g. unbans) and current matches
//! per stream/filter, plus `reaction_up`.
//!
//! The tricky point: the output nests stream → filter → match value → {matches, actions}
//! where the match value is an IP (several pattern values joined by spaces in v2); it is
//! summed over and never becomes a label. `-f json` is tried first, then plain
//! `reaction show` (YAML, the default format) if that fails; both shapes parse the same.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::sources::probe::Live;
use crate::store::{Metric, Series, Store};

pub const UP: Metric = Metric::gauge(
    "reaction_up",
    "1 if `reaction show` succeeded at the last probe, else 0.",
);
/// reaction-metrics-exporter's name, kept for its dashboards.
pub const PENDING: Metric = Metric::gauge(
    "reaction_pending_count",
    "Pending delayed runs of the action (e.g. unbans), from `reaction show`.",
);
pub const MATCHES: Metric = Metric::gauge(
    "reaction_current_matches",
    "Matches inside the filter's retry period, all match values summed.",
);

/// Every metric this module emits, for `describe`.
pub const METRICS: &[Metric] = &[UP, PENDING, MATCHES];
/// Bound on one `reaction show` run.
pub const SHOW_TIMEOUT: Duration = Duration::from_secs(10);
/// Output larger than this is cut (and then fails to parse): a runaway, not a state.
const MAX_OUTPUT: u64 = 64 << 20;

/// `reaction show` output: stream → filter → match value → state.
pub type ShowTree = BTreeMap<String, BTreeMap<String, BTreeMap<String, MatchState>>>;

/// One match value's state (Go `PatternStatus`; empty fields are omitted by reaction).
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct MatchState {
    /// Matches still inside the filter's retry period.
    #[serde(default)]
    pub matches: u64,
    /// Pending runs per action: one time string (`YYYY-MM-DD HH:MM:SS`) each.
    #[serde(default)]
    pub actions: BTreeMap<String, Vec<serde::de::IgnoredAny>>,
}

/// Parses `reaction show` output, JSON or YAML. Empty output means nothing pending.
pub fn parse_show(text: &str) -> anyhow::Result<ShowTree> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(ShowTree::new());
    }
    if text.starts_with('{') {
        serde_json::from_str(text).context("reaction show: unexpected JSON")
    } else {
        serde_yaml_ng::from_str(text).context("reaction show: unexpected YAML")
    }
}

/// The gauges one output gives: pending runs per action, matches per filter.
pub fn gauges(tree: &ShowTree) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for (stream, filters) in tree {
        for (filter, values) in filters {
            let sf = [("stream", stream.as_str()), ("filter", filter.as_str())];
            let matches: u64 = values.values().map(|m| m.matches).sum();
            out.insert(Series::new(MATCHES.name, &sf), matches as f64);
            for state in values.values() {
                for (action, times) in &state.actions {
                    let labels = [sf[0], sf[1], ("action", action.as_str())];
                    *out.entry(Series::new(PENDING.name, &labels)).or_insert(0.0) +=
                        times.len() as f64;
                }
            }
        }
    }
    out
}

/// The probe: runs `reaction show` once per flush.
pub struct ReactionShow {
    command: PathBuf,
    socket: Option<PathBuf>,
    timeout: Duration,
    /// Set once `-f json` failed and plain YAML worked, so JSON is not retried each flush.
    yaml_only: bool,
    /// Series set last time, so pending actions that ran drop to 0.
    last: BTreeSet<Series>,
}

impl ReactionShow {
    pub fn new(command: PathBuf, socket: Option<PathBuf>) -> ReactionShow {
        ReactionShow {
            command,
            socket,
            timeout: SHOW_TIMEOUT,
            yaml_only: false,
            last: BTreeSet::new(),
        }
    }

    /// Runs `reaction show [-s SOCKET] [-f json]` and returns its stdout.
    fn show(&self, json: bool) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.command);
        cmd.arg("show");
        if let Some(s) = &self.socket {
            cmd.arg("-s").arg(s);
        }
        if json {
            cmd.args(["-f", "json"]);
        }
        let what = format!("{} show", self.command.display());
        let (status, stdout, stderr) = run_bounded(cmd, self.timeout).context(what.clone())?;
        if !status.success() {
            let why = String::from_utf8_lossy(&stderr);
            bail!(
                "{what}: {status}: {}",
                why.lines().last().unwrap_or("").trim()
            );
        }
        String::from_utf8(stdout).with_context(|| format!("{what}: output is not UTF-8"))
    }
}

/// Runs a command with no stdin, collecting stdout and stderr, killed after `timeout`.
fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd).context("cannot run (set `command` to reaction's path)")?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no answer within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

/// Spawns, retrying briefly on ETXTBSY: a binary just replaced (package upgrade, or a
/// script written by another thread) can be busy for the instant another fork holds it.
fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl Live for ReactionShow {
    type Reading = anyhow::Result<ShowTree>;

    fn source(&self) -> &'static str {
        "reaction"
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn read(&mut self) -> Self::Reading {
        if !self.yaml_only {
            match self.show(true).and_then(|out| parse_show(&out)) {
                Ok(tree) => return Ok(tree),
                Err(e) => tracing::debug!("reaction show -f json: {e:#}; trying YAML"),
            }
        }
        let tree = parse_show(&self.show(false)?)?;
        self.yaml_only = true;
        Ok(tree)
    }

    /// Sets the gauges; series present last time but gone now drop to 0.
    fn record(&mut self, reading: Self::Reading, store: &mut Store) -> anyhow::Result<()> {
        let tree = match reading {
            Ok(tree) => tree,
            Err(e) => {
                store.set(Series::new(UP.name, &[]), 0.0);
                return Err(e);
            }
        };
        store.set(Series::new(UP.name, &[]), 1.0);
        let now = gauges(&tree);
        for gone in self.last.iter().filter(|s| !now.contains_key(*s)) {
            store.set(gone.clone(), 0.0);
        }
        for (series, value) in &now {
            store.set(series.clone(), *value);
        }
        self.last = now.into_keys().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Probe;
    use crate::sources::probe::Fetched;

    // The v1 shapes (app/client.go ClientStatus): JSON from json.MarshalIndent(…, "", "  "),
    // YAML from sigs.k8s.io/yaml (keys sorted, empty fields omitted). Written by hand from
    // those rules: no reaction binary was available to capture real output.
    const JSON: &str = r#"{
  "ssh": {
    "failedlogin": {
      "192.0.2.1": {
        "matches": 2
      },
      "203.0.113.9": {
        "actions": {
          "unban": [
            "2024-04-30 12:00:01"
          ]
        }
      },
      "2001:db8::1": {
        "matches": 1,
        "actions": {
          "unban": [
            "2024-04-30 12:00:05",
            "2024-04-30 12:30:05"
          ]
        }
      }
    }
  },
  "web": {
    "bots": {
      "198.51.100.7 GET": {
        "actions": {
          "log": [
            "2024-04-30 12:01:00"
          ],
          "unban": [
            "2024-04-30 13:00:00"
          ]
        }
      }
    }
  }
}
"#;
    const YAML: &str = r#"ssh:
  failedlogin:
    192.0.2.1:
      matches: 2
    203.0.113.9:
      actions:
        unban:
        - "2024-04-30 12:00:01"
    2001:db8::1:
      actions:
        unban:
        - "2024-04-30 12:00:05"
        - "2024-04-30 12:30:05"
      matches: 1
web:
  bots:
    198.51.100.7 GET:
      actions:
        log:
        - "2024-04-30 12:01:00"
        unban:
        - "2024-04-30 13:00:00"
"#;

    fn pending(stream: &str, filter: &str, action: &str) -> Series {
        Series::new(
            PENDING.name,
            &[("stream", stream), ("filter", filter), ("action", action)],
        )
    }

    #[test]
    fn json_and_yaml_give_the_same_gauges_without_match_values() {
        let from_json = gauges(&parse_show(JSON).unwrap());
        assert_eq!(gauges(&parse_show(YAML).unwrap()), from_json);
        let want: BTreeMap<Series, f64> = [
            (
                Series::new(
                    MATCHES.name,
                    &[("stream", "ssh"), ("filter", "failedlogin")],
                ),
                3.0,
            ),
            (
                Series::new(MATCHES.name, &[("stream", "web"), ("filter", "bots")]),
                0.0,
            ),
            (pending("ssh", "failedlogin", "unban"), 3.0),
            (pending("web", "bots", "log"), 1.0),
            (pending("web", "bots", "unban"), 1.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(from_json, want);
        let labels: Vec<_> = want
            .keys()
            .flat_map(|s| s.labels().map(|(_, v)| v.to_string()))
            .collect();
        assert!(
            !labels
                .iter()
                .any(|v| v.contains("192.0.2") || v.contains("db8"))
        );
    }

    #[test]
    fn empty_outputs_mean_nothing_pending() {
        for text in ["", "\n", "{}", "{}\n", "null"] {
            assert!(parse_show(text).unwrap().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn malformed_outputs_are_errors() {
        for text in [
            "{\"ssh\": ",
            "ssh: [1, 2]",
            "ssh:\n  f:\n    ip:\n      actions: 3\n",
            "- a\n- b",
        ] {
            assert!(parse_show(text).is_err(), "{text:?}");
        }
    }

    /// A fake `reaction` in a temp dir: logs its arguments, prints `stdout_for_json` for
    /// `-f json` and `yaml` otherwise, exiting `json_rc` for json.
    fn fake(dir: &std::path::Path, json_body: &str, json_rc: i32, yaml: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(dir.join("out.json"), json_body).unwrap();
        std::fs::write(dir.join("out.yaml"), yaml).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> '{d}/args'\ncase \"$*\" in\n  *'-f json'*) cat '{d}/out.json'; exit {json_rc};;\n  *) cat '{d}/out.yaml';;\nesac\n",
            d = dir.display()
        );
        let path = dir.join("reaction");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn value(store: &Store, series: &Series) -> Option<f64> {
        store.get(series).map(|v| v.as_f64())
    }

    #[test]
    fn runs_the_command_with_the_socket_and_uses_json() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(dir.path(), JSON, 0, "{}");
        let mut probe = Fetched::new(ReactionShow::new(cmd, Some(PathBuf::from("/run/r.sock"))));
        let mut store = Store::new(crate::store::Limits::default());
        probe.probe(&mut store).unwrap();
        assert_eq!(value(&store, &Series::new(UP.name, &[])), Some(1.0));
        assert_eq!(
            value(&store, &pending("ssh", "failedlogin", "unban")),
            Some(3.0)
        );
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(args, "show -s /run/r.sock -f json\n");

        // The unbans ran: reaction now shows nothing, the gauges drop to 0.
        std::fs::write(dir.path().join("out.json"), "{}").unwrap();
        probe.probe(&mut store).unwrap();
        assert_eq!(
            value(&store, &pending("ssh", "failedlogin", "unban")),
            Some(0.0)
        );
    }

    #[test]
    fn falls_back_to_yaml_once_json_fails() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(dir.path(), "unknown flag -f", 1, YAML);
        let mut probe = Fetched::new(ReactionShow::new(cmd, None));
        let mut store = Store::new(crate::store::Limits::default());
        probe.probe(&mut store).unwrap();
        probe.probe(&mut store).unwrap();
        assert_eq!(value(&store, &pending("web", "bots", "log")), Some(1.0));
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(
            args, "show -f json\nshow\nshow\n",
            "JSON is not retried once YAML worked"
        );
    }

    #[test]
    fn failures_set_up_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(dir.path(), "", 1, "");
        std::fs::write(
            &cmd,
            "#!/bin/sh\necho 'cannot connect to /run/reaction/reaction.sock' >&2\nexit 1\n",
        )
        .unwrap();
        let mut store = Store::new(crate::store::Limits::default());
        let mut probe = Fetched::new(ReactionShow::new(cmd, None));
        let e = probe.probe(&mut store).unwrap_err();
        assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
        assert_eq!(value(&store, &Series::new(UP.name, &[])), Some(0.0));

        let mut missing =
            Fetched::new(ReactionShow::new(dir.path().join("no-such-reaction"), None));
        assert!(missing.probe(&mut store).is_err());

        std::fs::write(dir.path().join("reaction"), "#!/bin/sh\nsleep 5\n").unwrap();
        let mut slow = Fetched::new(ReactionShow::new(dir.path().join("reaction"), None));
        slow.live.timeout = Duration::from_millis(200);
        let e = slow.probe(&mut store).unwrap_err();
        assert!(format!("{e:#}").contains("killed"), "{e:#}");
    }
}
