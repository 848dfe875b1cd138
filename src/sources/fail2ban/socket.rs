//! fail2ban's live state, read over its control socket (what `fail2ban-client
//! status` shows): jail count, and per jail the current and total failures and bans,
//! plus bantime/findtime/maxretry. Or the same, asked of `rme helper` (see helper.rs).
//!
//! The tricky point: replies are Python pickles that may hold Python objects
//! (banned IPs are `builtins.str` REDUCE calls, errors are pickled exception classes),
//! so they are decoded with serde-pickle's "keep restore state" and "replace unresolved
//! globals" options and read by field name, never by shape alone.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use serde_pickle::Value;

use crate::sources::probe::Live;
use crate::store::{Metric, Series, Store};

/// Ends every request and reply on fail2ban's socket.
pub const END: &[u8] = b"<F2B_END_COMMAND>";
/// Sent (followed by [`END`]) before closing, as fail2ban-client does.
pub const CLOSE: &[u8] = b"<F2B_CLOSE_COMMAND>";
/// Bound on one probe's whole exchange with fail2ban (or the helper).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies larger than this are refused (a jail with 100k bans is ~3 MB).
const MAX_REPLY: usize = 64 << 20;

pub const UP: Metric = Metric::gauge(
    "fail2ban_up",
    "1 if fail2ban answered on its socket at the last probe, else 0.",
);
pub const JAILS: Metric = Metric::gauge("fail2ban_jails", "Jails fail2ban runs.");
pub const FAILED_CURRENT: Metric = Metric::gauge(
    "fail2ban_jail_failed_current",
    "Failures fail2ban currently holds for the jail (within findtime).",
);
pub const BANNED_CURRENT: Metric = Metric::gauge(
    "fail2ban_jail_banned_current",
    "Addresses currently banned by the jail.",
);
pub const FAILED: Metric = Metric::gauge(
    "fail2ban_jail_failed",
    "fail2ban's own total of failures since the jail started (resets with fail2ban).",
);
pub const BANNED: Metric = Metric::gauge(
    "fail2ban_jail_banned",
    "fail2ban's own total of bans since the jail started (resets with fail2ban).",
);
pub const BANTIME: Metric = Metric::gauge(
    "fail2ban_jail_config_bantime_seconds",
    "The jail's bantime in seconds (-1: permanent).",
);
pub const FINDTIME: Metric = Metric::gauge(
    "fail2ban_jail_config_findtime_seconds",
    "The jail's findtime in seconds.",
);
pub const MAXRETRY: Metric = Metric::gauge("fail2ban_jail_config_maxretry", "The jail's maxretry.");

/// Every metric this module emits, for `describe`.
pub const METRICS: &[Metric] = &[
    UP,
    JAILS,
    FAILED_CURRENT,
    BANNED_CURRENT,
    FAILED,
    BANNED,
    BANTIME,
    FINDTIME,
    MAXRETRY,
];

/// What one probe learns; also the JSON `rme helper` answers with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fail2banStatus {
    pub jails: Vec<JailStatus>,
}

/// One jail's numbers, as `fail2ban-client status JAIL` and `get JAIL …` give them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JailStatus {
    pub name: String,
    pub failed_current: u64,
    pub failed_total: u64,
    pub banned_current: u64,
    pub banned_total: u64,
    /// Seconds; -1 means permanent.
    pub bantime: Option<i64>,
    pub findtime: Option<i64>,
    pub maxretry: Option<i64>,
}

/// A request as fail2ban reads it: a pickled list of strings, then [`END`].
pub fn encode_request(command: &[&str]) -> Vec<u8> {
    // A list of strings always serialises; the fallback keeps this panic-free.
    let mut bytes =
        serde_pickle::to_vec(&command, serde_pickle::SerOptions::new()).unwrap_or_default();
    bytes.extend_from_slice(END);
    bytes
}

/// Decodes a reply body (terminator removed): `(0, result)` gives the result,
/// `(1, exception)` and the bare `"ERROR: …"` string give an error.
pub fn decode_reply(body: &[u8]) -> anyhow::Result<Value> {
    let options = serde_pickle::DeOptions::new()
        .keep_restore_state()
        .replace_unresolved_globals();
    let value = serde_pickle::value_from_slice(body, options).context("undecodable pickle")?;
    match value {
        Value::Tuple(mut pair) if pair.len() == 2 => {
            let result = pair.pop().unwrap_or(Value::None);
            match pair.pop() {
                Some(Value::I64(0)) => Ok(result),
                _ => bail!("fail2ban answered with an error: {}", describe(&result)),
            }
        }
        Value::String(s) => bail!("fail2ban refused the request: {s}"),
        other => bail!("unexpected reply shape: {}", describe(&other)),
    }
}

/// A short text for an error value; a pickled exception arrives as the tuple of its arguments.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(describe).collect::<Vec<_>>().join(", ")
        }
        other => format!("{other}"),
    }
}

/// Finds `key` in fail2ban's list of `(name, value)` pairs.
fn field<'a>(pairs: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::List(items) = pairs else {
        return None;
    };
    items.iter().find_map(|item| match item {
        Value::Tuple(kv) if kv.len() == 2 && matches!(&kv[0], Value::String(k) if k == key) => {
            Some(&kv[1])
        }
        _ => None,
    })
}

fn number(pairs: &Value, key: &str) -> anyhow::Result<u64> {
    match field(pairs, key) {
        Some(Value::I64(n)) => u64::try_from(*n).with_context(|| format!("negative '{key}'")),
        Some(other) => bail!("'{key}' is not a number: {other}"),
        None => bail!("no '{key}' in the reply"),
    }
}

/// Jail names from the reply to `status`.
pub fn jail_names(status: &Value) -> anyhow::Result<Vec<String>> {
    match field(status, "Jail list") {
        Some(Value::String(list)) => Ok(list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Some(other) => bail!("'Jail list' is not a string: {other}"),
        None => bail!("no 'Jail list' in the status reply"),
    }
}

/// Counts from the reply to `status JAIL [short]`.
pub fn jail_status(name: &str, status: &Value) -> anyhow::Result<JailStatus> {
    let filter = field(status, "Filter").context("no 'Filter' section")?;
    let actions = field(status, "Actions").context("no 'Actions' section")?;
    Ok(JailStatus {
        name: name.to_string(),
        failed_current: number(filter, "Currently failed")?,
        failed_total: number(filter, "Total failed")?,
        banned_current: number(actions, "Currently banned")?,
        banned_total: number(actions, "Total banned")?,
        ..JailStatus::default()
    })
}

/// One open connection to fail2ban's socket; every read and write ends by `deadline`.
pub struct Connection {
    stream: UnixStream,
    deadline: Instant,
}

impl Connection {
    pub fn open(path: &Path, timeout: Duration) -> anyhow::Result<Connection> {
        let stream = UnixStream::connect(path).map_err(|e| connect_error(path, e))?;
        Ok(Connection {
            stream,
            deadline: Instant::now() + timeout,
        })
    }

    fn remaining(&self) -> anyhow::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("fail2ban did not answer in time");
        }
        Ok(left)
    }

    /// Sends one command and returns its decoded result.
    pub fn ask(&mut self, command: &[&str]) -> anyhow::Result<Value> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write_all(&encode_request(command))?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 16384];
        while !reply.ends_with(END) {
            self.stream.set_read_timeout(Some(self.remaining()?))?;
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => bail!("fail2ban closed the connection mid-reply"),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading fail2ban's reply"),
            };
            reply.extend_from_slice(&chunk[..n]);
            if reply.len() > MAX_REPLY {
                bail!("fail2ban's reply exceeds {MAX_REPLY} bytes");
            }
        }
        reply.truncate(reply.len() - END.len());
        decode_reply(&reply).with_context(|| format!("command '{}'", command.join(" ")))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.stream.write_all(&[CLOSE, END].concat());
    }
}

/// Why connecting failed, with what to do about it.
fn connect_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => {
            "fail2ban's socket is root-only: run `rme helper` as root and set `helper` in this source, \
             or grant access with `ExecStartPre=+/usr/bin/setfacl -m u:rme:rw <socket>` (see README, least privilege)"
        }
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            "is fail2ban-server running, and is this its `socket` (fail2ban.conf)?"
        }
        _ => "",
    };
    anyhow::Error::new(e).context(format!(
        "connecting to fail2ban socket {}: {hint}",
        path.display()
    ))
}

/// Reads every jail's status (and config) over one connection, as the helper and the probe do.
pub fn read_status(socket: &Path, timeout: Duration) -> anyhow::Result<Fail2banStatus> {
    let mut conn = Connection::open(socket, timeout)?;
    let names = jail_names(&conn.ask(&["status"])?)?;
    let mut jails = Vec::with_capacity(names.len());
    for name in names {
        // "short" leaves out the banned IP list, which can be megabytes; fail2ban
        // releases without status flavours refuse it, so ask again plainly.
        let reply = conn
            .ask(&["status", &name, "short"])
            .or_else(|_| conn.ask(&["status", &name]))?;
        let mut jail = jail_status(&name, &reply).with_context(|| format!("jail {name}"))?;
        let mut get = |what: &str| match conn.ask(&["get", &name, what]) {
            Ok(Value::I64(n)) => Some(n),
            _ => None,
        };
        jail.bantime = get("bantime");
        jail.findtime = get("findtime");
        jail.maxretry = get("maxretry");
        jails.push(jail);
    }
    Ok(Fail2banStatus { jails })
}

/// Where the probe gets fail2ban's status from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// fail2ban's own socket (needs access to it).
    Socket(PathBuf),
    /// `rme helper`'s socket.
    Helper(PathBuf),
}

/// The probe: sets `fail2ban_up` and the per-jail gauges once per flush.
pub struct Fail2banSocket {
    via: Via,
    timeout: Duration,
    /// Jails seen last time, so a removed jail's current counts drop to 0.
    jails: BTreeSet<String>,
}

impl Fail2banSocket {
    pub fn new(via: Via, timeout: Duration) -> Fail2banSocket {
        Fail2banSocket {
            via,
            timeout,
            jails: BTreeSet::new(),
        }
    }
}

/// Sets the gauges from one status; returns the jail names it saw.
pub fn record(status: &Fail2banStatus, store: &mut Store) -> BTreeSet<String> {
    store.set(Series::new(UP.name, &[]), 1.0);
    store.set(Series::new(JAILS.name, &[]), status.jails.len() as f64);
    for j in &status.jails {
        let jail = [("jail", j.name.as_str())];
        store.set(
            Series::new(FAILED_CURRENT.name, &jail),
            j.failed_current as f64,
        );
        store.set(Series::new(FAILED.name, &jail), j.failed_total as f64);
        store.set(
            Series::new(BANNED_CURRENT.name, &jail),
            j.banned_current as f64,
        );
        store.set(Series::new(BANNED.name, &jail), j.banned_total as f64);
        for (name, value) in [
            (BANTIME.name, j.bantime),
            (FINDTIME.name, j.findtime),
            (MAXRETRY.name, j.maxretry),
        ] {
            if let Some(v) = value {
                store.set(Series::new(name, &jail), v as f64);
            }
        }
    }
    status.jails.iter().map(|j| j.name.clone()).collect()
}

impl Live for Fail2banSocket {
    type Reading = anyhow::Result<Fail2banStatus>;

    fn source(&self) -> &'static str {
        "fail2ban"
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn read(&mut self) -> Self::Reading {
        match &self.via {
            Via::Socket(path) => read_status(path, self.timeout),
            Via::Helper(path) => {
                let json = crate::helper_proto::ask(
                    path,
                    crate::helper_proto::Request::Fail2banStatus,
                    self.timeout,
                )?;
                serde_json::from_value(json).context("rme helper's fail2ban status")
            }
        }
    }

    /// Records a status; jails gone since the last one (fail2ban reloaded) drop to 0 current.
    fn record(&mut self, reading: Self::Reading, store: &mut Store) -> anyhow::Result<()> {
        let status = match reading {
            Ok(s) => s,
            Err(e) => {
                store.set(Series::new(UP.name, &[]), 0.0);
                return Err(e);
            }
        };
        let seen = record(&status, store);
        for gone in self.jails.difference(&seen) {
            store.set(Series::new(FAILED_CURRENT.name, &[("jail", gone)]), 0.0);
            store.set(Series::new(BANNED_CURRENT.name, &[("jail", gone)]), 0.0);
        }
        self.jails = seen;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Replies captured from Debian's fail2ban-server 1.0.2 (Python 3.11, pickle protocol 5)
    // with a python3 client at test-writing time; jails `my-web_app.v2` and `sshd`.
    const PING: &str = "8005950c000000000000004b008c04706f6e679486942e";
    const STATUS: &str = "80059542000000000000004b005d94288c0e4e756d626572206f66206a61696c944b0286948c094a61696c206c697374948c136d792d7765625f6170702e76322c20737368649486946586942e";
    /// `status sshd`: 3 current / 10 total failed, 2 / 2 banned, IPs pickled as `builtins.str` REDUCE.
    const JAIL: &str = "800595f9000000000000004b005d94288c0646696c746572945d94288c1043757272656e746c79206661696c6564944b0386948c0c546f74616c206661696c6564944b0a86948c0946696c65206c697374945d948c192f746d702f6c6976656361702f6632622f617574682e6c6f67946186946586948c07416374696f6e73945d94288c1043757272656e746c792062616e6e6564944b0286948c0c546f74616c2062616e6e6564944b0286948c0e42616e6e6564204950206c697374945d94288c086275696c74696e73948c037374729493948c0b3230332e302e3131332e31948594529468168c0b3230332e302e3131332e3294859452946586946586946586942e";
    /// `status sshd short`: 0 / 10 failed, 2 / 2 banned, no IP list.
    const JAIL_SHORT: &str = "800595a9000000000000004b005d94288c0646696c746572945d94288c1043757272656e746c79206661696c6564944b0086948c0c546f74616c206661696c6564944b0a86948c0946696c65206c697374945d948c192f746d702f6c6976656361702f6632622f617574682e6c6f67946186946586948c07416374696f6e73945d94288c1043757272656e746c792062616e6e6564944b0286948c0c546f74616c2062616e6e6564944b0286946586946586942e";
    /// `status nosuch`: (1, fail2ban.exceptions.UnknownJailException('nosuch')).
    const UNKNOWN_JAIL: &str = "80059541000000000000004b018c136661696c3262616e2e657863657074696f6e73948c14556e6b6e6f776e4a61696c457863657074696f6e9493948c066e6f73756368948594529486942e";
    /// `nonsense`: (1, builtins.Exception('Invalid command')).
    const INVALID: &str = "80059534000000000000004b018c086275696c74696e73948c09457863657074696f6e9493948c0f496e76616c696420636f6d6d616e64948594529486942e";
    /// `get sshd bantime`: (0, 600).
    const BANTIME_600: &str = "80059508000000000000004b004d580286942e";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn request_is_a_pickled_list_of_strings_then_the_terminator() {
        let bytes = encode_request(&["status", "sshd", "short"]);
        let body = bytes.strip_suffix(END).expect("terminator");
        let value = serde_pickle::value_from_slice(body, serde_pickle::DeOptions::new()).unwrap();
        let words = ["status", "sshd", "short"].map(|w| Value::String(w.into()));
        assert_eq!(value, Value::List(words.to_vec()));
    }

    #[test]
    fn decodes_ping_status_and_get() {
        assert_eq!(
            decode_reply(&hex(PING)).unwrap(),
            Value::String("pong".into())
        );
        let names = jail_names(&decode_reply(&hex(STATUS)).unwrap()).unwrap();
        assert_eq!(names, ["my-web_app.v2", "sshd"]);
        assert_eq!(decode_reply(&hex(BANTIME_600)).unwrap(), Value::I64(600));
    }

    #[test]
    fn jail_status_with_pickled_ip_objects() {
        let value = decode_reply(&hex(JAIL)).unwrap();
        let jail = jail_status("sshd", &value).unwrap();
        assert_eq!((jail.failed_current, jail.failed_total), (3, 10));
        assert_eq!((jail.banned_current, jail.banned_total), (2, 2));
        // The IPs survive as the REDUCE arguments: str('203.0.113.1') -> ('203.0.113.1',).
        let ips = field(field(&value, "Actions").unwrap(), "Banned IP list").unwrap();
        let first = Value::Tuple(vec![Value::String("203.0.113.1".into())]);
        assert!(
            matches!(ips, Value::List(l) if l.len() == 2 && l[0] == first),
            "{ips:?}"
        );
    }

    #[test]
    fn short_jail_status() {
        let jail = jail_status("sshd", &decode_reply(&hex(JAIL_SHORT)).unwrap()).unwrap();
        let want = JailStatus {
            name: "sshd".into(),
            failed_total: 10,
            banned_current: 2,
            banned_total: 2,
            ..JailStatus::default()
        };
        assert_eq!(jail, want);
    }

    #[test]
    fn exceptions_and_error_strings_are_errors() {
        let e = decode_reply(&hex(UNKNOWN_JAIL)).unwrap_err().to_string();
        assert!(e.contains("nosuch"), "{e}");
        let e = decode_reply(&hex(INVALID)).unwrap_err().to_string();
        assert!(e.contains("Invalid command"), "{e}");
        let refused =
            serde_pickle::to_vec(&"ERROR: bad pickle", serde_pickle::SerOptions::new()).unwrap();
        let e = decode_reply(&refused).unwrap_err().to_string();
        assert!(e.contains("ERROR: bad pickle"), "{e}");
    }

    #[test]
    fn garbage_and_truncated_replies_are_errors_not_panics() {
        let full = hex(JAIL);
        for cut in 0..full.len() {
            let _ = decode_reply(&full[..cut]);
        }
        assert!(decode_reply(&full[..full.len() / 2]).is_err());
        assert!(decode_reply(b"\x80\x05garbage").is_err());
        // Right pickle, wrong shape: no panic, an error naming what is missing.
        let e = jail_status("x", &decode_reply(&hex(STATUS)).unwrap()).unwrap_err();
        assert!(e.to_string().contains("Filter"), "{e}");
        assert!(jail_names(&Value::I64(3)).is_err());
    }

    #[test]
    fn record_sets_gauges_and_removed_jails_drop_to_zero() {
        let mut store = Store::new(crate::store::Limits::default());
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Fail2banSocket::new(
            Via::Socket(dir.path().join("none.sock")),
            Duration::from_secs(1),
        );
        let status = Fail2banStatus {
            jails: vec![JailStatus {
                name: "sshd".into(),
                failed_current: 1,
                failed_total: 7,
                banned_current: 2,
                banned_total: 5,
                bantime: Some(-1),
                findtime: None,
                maxretry: Some(3),
            }],
        };
        probe.record(Ok(status), &mut store).unwrap();
        let gauge = |store: &Store, name: &str, labels: &[(&str, &str)]| {
            store.get(&Series::new(name, labels)).map(|v| v.as_f64())
        };
        let sshd = [("jail", "sshd")];
        assert_eq!(gauge(&store, UP.name, &[]), Some(1.0));
        assert_eq!(gauge(&store, JAILS.name, &[]), Some(1.0));
        assert_eq!(gauge(&store, BANNED.name, &sshd), Some(5.0));
        assert_eq!(gauge(&store, FAILED_CURRENT.name, &sshd), Some(1.0));
        assert_eq!(gauge(&store, BANTIME.name, &sshd), Some(-1.0));
        assert_eq!(gauge(&store, FINDTIME.name, &sshd), None);

        probe
            .record(Ok(Fail2banStatus::default()), &mut store)
            .unwrap();
        assert_eq!(gauge(&store, JAILS.name, &[]), Some(0.0));
        assert_eq!(gauge(&store, BANNED_CURRENT.name, &sshd), Some(0.0));
        assert_eq!(
            gauge(&store, BANNED.name, &sshd),
            Some(5.0),
            "fail2ban's total is left to expire"
        );

        // No socket: up is 0 and the error says what to check.
        let mut probe = crate::sources::probe::Fetched::new(probe);
        let e = crate::sources::Probe::probe(&mut probe, &mut store).unwrap_err();
        assert!(
            format!("{e:#}").contains("is fail2ban-server running"),
            "{e:#}"
        );
        assert_eq!(gauge(&store, UP.name, &[]), Some(0.0));
    }
}
