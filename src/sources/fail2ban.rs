//! fail2ban: its log (Found, Ban, Unban, Restore/Increase Ban per jail) and,
//! with `socket`, its live state.
//!
//! The log comes in several shapes (0.8 without PID, 0.9–1.1 padded, syslog and
//! journal headers, `padding=0`), so a line is recognised by its
//! `fail2ban.<logger>[pid]: LEVEL` part wherever it sits, and the event is read
//! from the message. The tricky point is telling new activity from echoes: the
//! observer repeats filter `Found` lines (`Found …, bad`), a restart restores
//! bans (`Restore Ban`) and a stopping jail unbans everything it holds.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::{Input, LineParser, Parts, Unparsed};
use crate::config::Invalid;
use crate::store::{Kind, Series, Store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail2banConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `fail2ban`.
    #[serde(default)]
    pub name: Option<String>,
    /// fail2ban's log file (`logtarget`), e.g. /var/log/fail2ban.log.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// fail2ban's control socket, e.g. /var/run/fail2ban/fail2ban.sock.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl Fail2banConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.socket.iter_mut())
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none() && self.socket.is_none() {
            return Err(Invalid::new(
                key,
                "a fail2ban source needs `log` or `socket`",
            ));
        }
        Ok(())
    }
}

pub fn build(config: &Fail2banConfig) -> anyhow::Result<Parts> {
    let input = config.log.clone().map(|p| {
        (
            Input::File(p),
            Box::new(Fail2banLog::default()) as Box<dyn LineParser>,
        )
    });
    Ok((input, Vec::new()))
}

pub const FAILURES: &str = "fail2ban_failures_total";
pub const BANS: &str = "fail2ban_bans_total";
pub const BAN_RESTORES: &str = "fail2ban_ban_restores_total";
pub const UNBANS: &str = "fail2ban_unbans_total";
pub const BAN_INCREASES: &str = "fail2ban_ban_increases_total";
pub const ALREADY_BANNED: &str = "fail2ban_already_banned_total";
pub const ERRORS: &str = "fail2ban_errors_total";

/// Lines a multi-line record may add before we stop believing it.
const MAX_CONTINUATION: u32 = 500;

/// `fail2ban.<logger>[<pid>]: <LEVEL> <message>`, after any timestamp or syslog header.
static RECORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:^|[\s:])fail2ban\.(?P<logger>\w+)\s*(?:\[\d+\])?\s*:\s+(?P<level>CRITICAL|ERROR|WARNING|NOTICE|INFO|DEBUG|MSG|TRACE|HEAVY|Level \d+)(?:\s+(?P<msg>.*))?$",
    )
    .expect("static regex")
});

/// Parses fail2ban.log lines.
///
/// Multi-line records: fail2ban writes tracebacks and multi-line exception texts
/// after an ERROR or CRITICAL record, as lines without any prefix. Such a line is
/// accepted (and ignored) only while such a record is open: right after it or
/// after its other continuation lines, at most [`MAX_CONTINUATION`] of them, and
/// only if it is printable text (no control character, no U+FFFD left by invalid
/// UTF-8). Anything else that is not a record is unparsed and closes the record.
/// Blank lines are accepted and ignored.
#[derive(Debug, Default)]
pub struct Fail2banLog {
    /// Continuation lines seen since the last ERROR/CRITICAL record, if one is open.
    open_record: Option<u32>,
    /// Jails that logged `Flush ticket(s)` and have not started or banned since:
    /// their unbans are the jail letting go, not bans expiring.
    flushing: HashSet<String>,
    /// The server logged `Stopping all jails` / `Shutdown in progress` (a stop
    /// without flushable actions logs no `Flush` line).
    stopping: bool,
}

/// What a jail message (`[jail] …`) says.
#[derive(Debug, PartialEq, Eq)]
enum JailEvent {
    Found,
    ObserverFound,
    Ban,
    RestoreBan,
    Unban,
    IncreaseBan,
    AlreadyBanned,
    Flush,
    Other,
}

fn jail_event(rest: &str) -> JailEvent {
    let has_id = |prefix: &str| {
        rest.strip_prefix(prefix)
            .is_some_and(|id| !id.trim().is_empty())
    };
    if has_id("Found ") {
        if rest.contains(", bad - ") {
            JailEvent::ObserverFound
        } else {
            JailEvent::Found
        }
    } else if has_id("Ban ") {
        JailEvent::Ban
    } else if has_id("Restore Ban ") {
        JailEvent::RestoreBan
    } else if has_id("Unban ") {
        JailEvent::Unban
    } else if has_id("Increase Ban ") {
        JailEvent::IncreaseBan
    } else if rest.ends_with(" already banned") {
        JailEvent::AlreadyBanned
    } else if rest.starts_with("Flush ticket(s) with ") {
        JailEvent::Flush
    } else {
        JailEvent::Other
    }
}

/// `[jail] rest` → (jail, rest). Jail names hold anything but `]`.
fn split_jail(msg: &str) -> Option<(&str, &str)> {
    let (jail, rest) = msg.strip_prefix('[')?.split_once(']')?;
    let rest = rest.strip_prefix(' ')?;
    (!jail.is_empty() && !jail.contains('[')).then_some((jail, rest))
}

/// The jail named by `Jail '<name>' <verb>` or `Creating new jail '<name>'`.
fn jail_lifecycle(msg: &str) -> Option<&str> {
    let name = msg
        .strip_prefix("Jail '")
        .or_else(|| msg.strip_prefix("Creating new jail '"))?;
    let (jail, verb) = name.split_once('\'')?;
    matches!(verb, "" | " started" | " stopped").then_some(jail)
}

fn is_text(line: &str) -> bool {
    !line
        .chars()
        .any(|c| (c.is_control() && c != '\t') || c == '\u{FFFD}')
}

impl Fail2banLog {
    fn record(&mut self, logger: &str, level: &str, msg: &str, store: &mut Store) {
        let multi_line = matches!(level, "ERROR" | "CRITICAL");
        self.open_record = multi_line.then_some(0);
        if multi_line {
            let logger = format!("fail2ban.{logger}");
            store.inc(Series::new(ERRORS, &[("logger", &logger)]), 1);
        }
        if let Some((jail, rest)) = split_jail(msg) {
            self.jail_message(logger, jail, rest, store);
        } else if let Some(jail) = jail_lifecycle(msg) {
            self.flushing.remove(jail);
            if !msg.ends_with("stopped") {
                self.stopping = false;
            }
        } else if msg.starts_with("Stopping all jails") || msg.starts_with("Shutdown in progress") {
            self.stopping = true;
        } else if msg.starts_with("Starting Fail2ban") {
            self.stopping = false;
            self.flushing.clear();
        }
    }

    fn jail_message(&mut self, logger: &str, jail: &str, rest: &str, store: &mut Store) {
        let count =
            |store: &mut Store, name: &str| store.inc(Series::new(name, &[("jail", jail)]), 1);
        match jail_event(rest) {
            JailEvent::Found if logger != "observer" => count(store, FAILURES),
            JailEvent::Found | JailEvent::ObserverFound | JailEvent::Other => {}
            JailEvent::Ban => count(store, BANS),
            JailEvent::RestoreBan => count(store, BAN_RESTORES),
            JailEvent::IncreaseBan => count(store, BAN_INCREASES),
            JailEvent::AlreadyBanned => count(store, ALREADY_BANNED),
            JailEvent::Flush => {
                self.flushing.insert(jail.to_string());
                return;
            }
            JailEvent::Unban => {
                let flush = self.stopping || self.flushing.contains(jail);
                let cause = if flush { "flush" } else { "expiry" };
                store.inc(Series::new(UNBANS, &[("jail", jail), ("cause", cause)]), 1);
                return;
            }
        }
        self.flushing.remove(jail);
    }

    fn continuation(&mut self, line: &str) -> Result<(), Unparsed> {
        match self.open_record {
            Some(n) if n < MAX_CONTINUATION && is_text(line) => {
                self.open_record = Some(n + 1);
                Ok(())
            }
            _ => {
                self.open_record = None;
                Err(Unparsed { parser: "fail2ban" })
            }
        }
    }
}

impl LineParser for Fail2banLog {
    fn source(&self) -> &'static str {
        "fail2ban"
    }

    fn describe(&self, store: &mut Store) {
        use Kind::Counter;
        store.describe(
            FAILURES,
            Counter,
            "Failures found by a jail's filter (`Found`).",
        );
        store.describe(
            BANS,
            Counter,
            "New bans by jail (`Ban`, not restored ones).",
        );
        store.describe(
            BAN_RESTORES,
            Counter,
            "Bans restored from the database at start (`Restore Ban`).",
        );
        store.describe(
            UNBANS,
            Counter,
            "Unbans by jail; cause=flush when the jail stops or is flushed, else expiry.",
        );
        store.describe(
            BAN_INCREASES,
            Counter,
            "Ban times increased for repeat offenders (`Increase Ban`).",
        );
        store.describe(
            ALREADY_BANNED,
            Counter,
            "Bans asked for ids already banned.",
        );
        store.describe(
            ERRORS,
            Counter,
            "ERROR and CRITICAL records by fail2ban logger.",
        );
    }

    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some(caps) = RECORD.captures(line) else {
            return self.continuation(line);
        };
        let (logger, level) = (&caps["logger"], &caps["level"]);
        let msg = caps.name("msg").map_or("", |m| m.as_str());
        self.record(logger, level, msg, store);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sources::LINES_UNPARSED;
    use crate::sources::golden::{check, feed_all, render, samples, testdata};

    fn parse_one(line: &str) -> (Result<(), Unparsed>, Store) {
        let mut store = Store::new(crate::store::Limits::default());
        let r = Fail2banLog::default().parse(line, &mut store);
        (r, store)
    }

    fn value(store: &Store, name: &str, labels: &[(&str, &str)]) -> u64 {
        match store.get(&Series::new(name, labels)) {
            Some(crate::store::Value::Counter(n)) => n,
            _ => 0,
        }
    }

    #[test]
    fn one_line_gives_one_series() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                "2026-11-22 23:13:44,086 fail2ban.filter         [23131]: INFO    [sshd] Found 192.0.2.10 - 2026-11-22 23:13:43",
                FAILURES,
                &[("jail", "sshd")],
            ),
            (
                "2026-11-22 23:13:44,109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.10",
                BANS,
                &[("jail", "sshd")],
            ),
            (
                "2026-11-22 23:13:55,334 fail2ban.actions        [23131]: NOTICE  [my-web_app.v2] Ban 2001:db8::5",
                BANS,
                &[("jail", "my-web_app.v2")],
            ),
            (
                "2014-10-14 12:58:56,964 fail2ban.actions: WARNING [ssh] Ban 122.225.97.85",
                BANS,
                &[("jail", "ssh")],
            ),
            (
                "2014-10-12 07:35:02,876 fail2ban.filter : INFO   [ssh] Found 1.2.3.4",
                FAILURES,
                &[("jail", "ssh")],
            ),
            (
                "Sep 16 00:44:55 spaceman fail2ban.actions: NOTICE [jail] Ban 10.0.0.7",
                BANS,
                &[("jail", "jail")],
            ),
            (
                "Jan 16 17:11:25 testorg fail2ban.actions[6605]: NOTICE [postfix-auth] Ban 192.0.2.1",
                BANS,
                &[("jail", "postfix-auth")],
            ),
            (
                "Mar 05 08:41:28 test.org fail2ban-server[11524]: fail2ban.actions        [11524]: NOTICE  [postfix-auth] Ban 192.0.2.2",
                BANS,
                &[("jail", "postfix-auth")],
            ),
            (
                "fail2ban.actions[1]: NOTICE [sshd] Ban root",
                BANS,
                &[("jail", "sshd")],
            ),
            (
                "2026-11-22 23:14:31,829 fail2ban.actions        [23993]: NOTICE  [sshd] Restore Ban 192.0.2.10",
                BAN_RESTORES,
                &[("jail", "sshd")],
            ),
            (
                "2026-11-22 23:14:03,344 fail2ban.actions        [23131]: NOTICE  [my-web_app.v2] Unban 198.51.100.7",
                UNBANS,
                &[("jail", "my-web_app.v2"), ("cause", "expiry")],
            ),
            (
                "2026-11-22 23:14:26,972 fail2ban.observer       [23131]: NOTICE  [sshd] Increase Ban 192.0.2.10 (2 # 40s -> 2026-11-22 23:15:06)",
                BAN_INCREASES,
                &[("jail", "sshd")],
            ),
            (
                "2026-11-22 23:13:58,543 fail2ban.actions        [23131]: NOTICE  [sshd] 192.0.2.10 already banned",
                ALREADY_BANNED,
                &[("jail", "sshd")],
            ),
            (
                "2019-01-02 10:00:00,000 fail2ban.actions        [1]: WARNING [ssh-iptables] 2001:db8::1 already banned",
                ALREADY_BANNED,
                &[("jail", "ssh-iptables")],
            ),
            (
                "2026-11-22 23:14:30,000 fail2ban.utils          [23131]: ERROR   7f3a -- returned 1",
                ERRORS,
                &[("logger", "fail2ban.utils")],
            ),
            (
                "2026-11-22 23:14:30,000 fail2ban.actions        [23131]: CRITICAL Unhandled exception",
                ERRORS,
                &[("logger", "fail2ban.actions")],
            ),
        ];
        for (line, name, labels) in cases {
            let (r, store) = parse_one(line);
            assert_eq!(r, Ok(()), "{line}");
            assert_eq!(value(&store, name, labels), 1, "{line} → {name}{labels:?}");
            assert_eq!(store.len(), 1, "{line} gave more than one series");
        }
    }

    #[test]
    fn echoes_and_lifecycle_lines_count_nothing() {
        for line in [
            "2026-11-22 23:13:58,514 fail2ban.observer       [23131]: INFO    [sshd] Found 192.0.2.10, bad - 2026-11-22 23:13:58, 1 # -> 2.0, Ban",
            "2026-11-22 23:14:30,977 fail2ban.actions        [23131]: NOTICE  [sshd] Flush ticket(s) with dummy",
            "2026-11-22 23:14:30,991 fail2ban.jail           [23131]: INFO    Jail 'sshd' stopped",
            "2026-11-22 23:14:30,991 fail2ban.filter         [23131]: INFO    [sshd] Ignore 10.0.0.1 by ip",
            "2026-11-22 23:14:30,991 fail2ban.actions        [23131]: NOTICE  [sshd] Ban ",
            "2026-11-24 10:03:52,011 fail2ban.server         [6604]: INFO    --------------------------------------------------",
            "2026-11-24 10:03:52,011 fail2ban.server         [6604]: INFO",
        ] {
            let (r, store) = parse_one(line);
            assert_eq!((r, store.len()), (Ok(()), 0), "{line}");
        }
    }

    #[test]
    fn stop_time_unbans_are_flushes() {
        let log = "\
2026-11-22 23:14:03,344 fail2ban.actions        [1]: NOTICE  [sshd] Unban 192.0.2.1
2026-11-22 23:14:30,977 fail2ban.actions        [1]: NOTICE  [sshd] Flush ticket(s) with dummy
2026-11-22 23:14:30,983 fail2ban.actions        [1]: NOTICE  [sshd] Unban 192.0.2.10
2026-11-22 23:14:30,983 fail2ban.actions        [1]: NOTICE  [web] Unban 192.0.2.11
2026-11-22 23:14:30,991 fail2ban.jail           [1]: INFO    Jail 'sshd' stopped
2026-11-22 23:14:31,000 fail2ban.server         [1]: INFO    Stopping all jails
2026-11-22 23:14:31,100 fail2ban.actions        [1]: NOTICE  [web] Unban 192.0.2.12
2026-11-22 23:14:32,000 fail2ban.server         [2]: INFO    Starting Fail2ban v1.0.2
2026-11-22 23:14:32,829 fail2ban.actions        [2]: NOTICE  [sshd] Restore Ban 192.0.2.10
2026-11-22 23:15:03,344 fail2ban.actions        [2]: NOTICE  [sshd] Unban 192.0.2.10
";
        let store = feed_all(&mut Fail2banLog::default(), log, false);
        let unbans = |jail, cause| value(&store, UNBANS, &[("jail", jail), ("cause", cause)]);
        assert_eq!(unbans("sshd", "expiry"), 2);
        assert_eq!(unbans("sshd", "flush"), 1);
        assert_eq!(unbans("web", "expiry"), 1);
        assert_eq!(unbans("web", "flush"), 1);
        assert_eq!(value(&store, BAN_RESTORES, &[("jail", "sshd")]), 1);
        assert_eq!(store.sum(BANS, &[]), 0);
    }

    #[test]
    fn continuation_lines_only_after_an_error_record() {
        let log = "\
2026-11-22 23:14:30,000 fail2ban.actions        [1]: ERROR   Failed to execute ban jail 'sshd' action 'iptables' info 'x': Error
Traceback (most recent call last):
  File \"/usr/lib/python3/dist-packages/fail2ban/server/actions.py\", line 500, in __checkBan
\tmore detail
2026-11-22 23:14:30,100 fail2ban.actions        [1]: NOTICE  [sshd] Ban 192.0.2.1
this line follows a NOTICE record
";
        let mut store = feed_all(&mut Fail2banLog::default(), log, false);
        assert_eq!(value(&store, ERRORS, &[("logger", "fail2ban.actions")]), 1);
        assert_eq!(value(&store, BANS, &[("jail", "sshd")]), 1);
        assert_eq!(
            store.sum(LINES_UNPARSED, &[]),
            1,
            "{}",
            render(&mut store, "fail2ban_")
        );
    }

    #[test]
    fn garbage_is_unparsed_and_never_panics() {
        let mut parser = Fail2banLog::default();
        let mut store = Store::new(crate::store::Limits::default());
        let error = "2026-11-22 23:14:30,000 fail2ban.utils [1]: ERROR   boom";
        let mut garbage = 0;
        for round in 0..2000 {
            let len = fastrand::usize(1..200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| fastrand::u8(..))
                .filter(|b| *b != b'\n')
                .collect();
            let line = String::from_utf8_lossy(&bytes);
            if round % 7 == 0 {
                crate::sources::feed(&mut parser, error, &mut store);
            }
            crate::sources::feed(&mut parser, &line, &mut store);
            garbage += 1;
        }
        let unparsed = store.sum(LINES_UNPARSED, &[]);
        // Random bytes of length ≥ 1 nearly always hold a control byte or invalid UTF-8.
        assert!(
            unparsed > garbage * 95 / 100,
            "{unparsed} of {garbage} garbage lines unparsed"
        );
        assert_eq!(store.sum(BANS, &[]), 0);
    }

    /// Counts taken with plain string operations, independent of the parser.
    fn count_another_way(text: &str) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let key = if let Some(i) = line.find("] Ban ") {
                let jail = &line[..i];
                format!("bans {}", &jail[jail.rfind('[').map_or(0, |j| j + 1)..])
            } else if line.contains("] Unban ") {
                "unbans".into()
            } else if line.contains("] Restore Ban ") {
                "restores".into()
            } else if line.contains("] Found ") && !line.contains(", bad - ") {
                "failures".into()
            } else if line.ends_with(" already banned") {
                "already_banned".into()
            } else if line
                .split_whitespace()
                .any(|w| w == "ERROR" || w == "CRITICAL")
            {
                "errors".into()
            } else {
                continue;
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    fn assert_counts_agree(name: &str, store: &Store, text: &str) {
        let other = count_another_way(text);
        let get = |k: &str| other.get(k).copied().unwrap_or(0);
        for (key, n) in &other {
            if let Some(jail) = key.strip_prefix("bans ") {
                assert_eq!(
                    value(store, BANS, &[("jail", jail)]),
                    *n,
                    "{name}: bans of {jail}"
                );
            }
        }
        let bans_total: u64 = other
            .iter()
            .filter(|(k, _)| k.starts_with("bans "))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(store.sum(BANS, &[]), bans_total, "{name}: bans");
        assert_eq!(store.sum(UNBANS, &[]), get("unbans"), "{name}: unbans");
        assert_eq!(
            store.sum(BAN_RESTORES, &[]),
            get("restores"),
            "{name}: restores"
        );
        assert_eq!(
            store.sum(FAILURES, &[]),
            get("failures"),
            "{name}: failures"
        );
        assert_eq!(
            store.sum(ALREADY_BANNED, &[]),
            get("already_banned"),
            "{name}: already banned"
        );
        assert_eq!(store.sum(ERRORS, &[]), get("errors"), "{name}: errors");
    }

    /// fail2ban 1.0.2 on this machine, two jails (`sshd`, `web-app.v2`).
    #[test]
    fn acceptance_bans_per_jail_in_the_example_log() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/logs/fail2ban.log");
        let text = std::fs::read_to_string(path).expect("examples/logs/fail2ban.log");
        let store = feed_all(&mut Fail2banLog::default(), &text, false);
        for jail in ["sshd", "web-app.v2"] {
            let needle = format!("[{jail}] Ban ");
            let expected = text.lines().filter(|l| l.contains(&needle)).count() as u64;
            assert!(expected > 0, "no ban of {jail} in the example log");
            assert_eq!(
                value(&store, BANS, &[("jail", jail)]),
                expected,
                "bans of {jail}"
            );
        }
        assert_counts_agree("examples/logs/fail2ban.log", &store, &text);
        assert_eq!(store.sum(LINES_UNPARSED, &[]), 0);
    }

    /// Every sample written by others, read in place: golden file plus an independent count.
    /// All their lines are records (recidive's `#` annotations are skipped, its blank lines
    /// are ignored), so none may be unparsed.
    #[test]
    fn golden_samples() {
        let dir = samples().join("fail2ban");
        let mut seen = 0;
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("shared samples")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "SOURCES.md" {
                continue;
            }
            let bytes = std::fs::read(entry.path()).expect("sample");
            let text = String::from_utf8_lossy(&bytes);
            let mut store = feed_all(&mut Fail2banLog::default(), &text, true);
            assert_counts_agree(&name, &store, &text);
            assert_eq!(store.sum(LINES_UNPARSED, &[]), 0, "{name}");
            check(
                &testdata(&format!("fail2ban/{name}.golden")),
                &render(&mut store, "fail2ban_"),
            );
            seen += 1;
        }
        assert_eq!(seen, 6, "every fail2ban sample is read");
    }
}
