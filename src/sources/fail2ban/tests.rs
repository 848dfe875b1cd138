//! fail2ban parser tests: line tables, golden files, random bytes.
use std::collections::BTreeMap;

use super::*;
use crate::sources::LINES_UNPARSED;
use crate::sources::Unparsed;
use crate::sources::golden::{check, feed_all, render, samples, testdata};
use crate::store::{Series, Store};

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
            FAILURES.name,
            &[("jail", "sshd")],
        ),
        (
            "2026-11-22 23:13:44,109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.10",
            BANS.name,
            &[("jail", "sshd")],
        ),
        (
            "2026-11-22 23:13:55,334 fail2ban.actions        [23131]: NOTICE  [my-web_app.v2] Ban 2001:db8::5",
            BANS.name,
            &[("jail", "my-web_app.v2")],
        ),
        (
            "2014-10-14 12:58:56,964 fail2ban.actions: WARNING [ssh] Ban 122.225.97.85",
            BANS.name,
            &[("jail", "ssh")],
        ),
        (
            "2014-10-12 07:35:02,876 fail2ban.filter : INFO   [ssh] Found 1.2.3.4",
            FAILURES.name,
            &[("jail", "ssh")],
        ),
        (
            "Sep 16 00:44:55 spaceman fail2ban.actions: NOTICE [jail] Ban 10.0.0.7",
            BANS.name,
            &[("jail", "jail")],
        ),
        (
            "Jan 16 17:11:25 testorg fail2ban.actions[6605]: NOTICE [postfix-auth] Ban 192.0.2.1",
            BANS.name,
            &[("jail", "postfix-auth")],
        ),
        (
            "Mar 05 08:41:28 test.org fail2ban-server[11524]: fail2ban.actions        [11524]: NOTICE  [postfix-auth] Ban 192.0.2.2",
            BANS.name,
            &[("jail", "postfix-auth")],
        ),
        (
            "fail2ban.actions[1]: NOTICE [sshd] Ban root",
            BANS.name,
            &[("jail", "sshd")],
        ),
        (
            "Nov 24 10:03:52 host fail2ban[6604]: [sshd] Ban 192.0.2.7",
            BANS.name,
            &[("jail", "sshd")],
        ),
        (
            "Nov 24 10:03:52 host fail2ban-server: [web] Found 192.0.2.7 - 2026-11-24 10:03:51",
            FAILURES.name,
            &[("jail", "web")],
        ),
        (
            "2026-11-22 23:14:31,829 fail2ban.actions        [23993]: NOTICE  [sshd] Restore Ban 192.0.2.10",
            BAN_RESTORES.name,
            &[("jail", "sshd")],
        ),
        (
            "2026-11-22 23:14:03,344 fail2ban.actions        [23131]: NOTICE  [my-web_app.v2] Unban 198.51.100.7",
            UNBANS.name,
            &[("jail", "my-web_app.v2"), ("cause", "expiry")],
        ),
        (
            "2026-11-22 23:14:26,972 fail2ban.observer       [23131]: NOTICE  [sshd] Increase Ban 192.0.2.10 (2 # 40s -> 2026-11-22 23:15:06)",
            BAN_INCREASES.name,
            &[("jail", "sshd")],
        ),
        (
            "2026-11-22 23:13:58,543 fail2ban.actions        [23131]: NOTICE  [sshd] 192.0.2.10 already banned",
            ALREADY_BANNED.name,
            &[("jail", "sshd")],
        ),
        (
            "2019-01-02 10:00:00,000 fail2ban.actions        [1]: WARNING [ssh-iptables] 2001:db8::1 already banned",
            ALREADY_BANNED.name,
            &[("jail", "ssh-iptables")],
        ),
        (
            "2026-11-22 23:14:30,000 fail2ban.utils          [23131]: ERROR   7f3a -- returned 1",
            ERRORS.name,
            &[("logger", "fail2ban.utils")],
        ),
        (
            "2026-11-22 23:14:30,000 fail2ban.actions        [23131]: CRITICAL Unhandled exception",
            ERRORS.name,
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
fn record_prefix_shapes() {
    let cases: &[(&str, Option<Record>)] = &[
        (
            "2026-11-24 10:03:52,011 fail2ban.server         [6604]: INFO    Daemon started",
            Some(("server", "INFO", "Daemon started")),
        ),
        (
            "2014-10-12 07:35:02,876 fail2ban.filter : INFO   x",
            Some(("filter", "INFO", "x")),
        ),
        (
            "fail2ban.utils[12]: Level 5 -- stdout: 'a'",
            Some(("utils", "Level 5", "-- stdout: 'a'")),
        ),
        ("fail2ban.server [1]: INFO", Some(("server", "INFO", ""))),
        ("host x-fail2ban.server[1]: INFO y", None),
        ("fail2ban.server[1]: INFOX y", None),
        ("fail2ban.server[1]:INFO y", None),
        ("fail2ban.server[]: INFO y", None),
        ("fail2ban.: INFO y", None),
        // Only where fail2ban's text starts (F3 of security-review-3).
        ("junk fail2ban. then fail2ban.jail: NOTICE ok", None),
        (
            "Nov 24 10:03:52 host fail2ban.jail: NOTICE ok",
            Some(("jail", "NOTICE", "ok")),
        ),
        (
            "2026-12-07T10:00:00.000000+00:00 web1 fail2ban.jail[1]: NOTICE ok",
            Some(("jail", "NOTICE", "ok")),
        ),
        (
            "Mon 2026-12-07 10:00:00 UTC web1 fail2ban-server[1]: fail2ban.jail [1]: NOTICE ok",
            Some(("jail", "NOTICE", "ok")),
        ),
        (
            "1764600000.123456 web1 fail2ban-server[1]: 2026-12-07 10:00:00,123 fail2ban.jail [1]: NOTICE ok",
            Some(("jail", "NOTICE", "ok")),
        ),
        (
            "Nov 24 10:03:52 host sshd[1]: fail2ban.jail: NOTICE ok",
            None,
        ),
        ("host fail2ban.jail: NOTICE ok", None),
        ("fail2ban.jail: Level  y", None),
        (
            "Nov 24 10:03:52 host fail2ban[x]: [sshd] Ban 192.0.2.7",
            None,
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(record(line), *expected, "{line}");
    }
}

#[test]
fn syslog_tags_without_logger() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "Nov 24 10:03:52 host fail2ban[6604]: [sshd] Ban 1.2.3.4",
            Some("[sshd] Ban 1.2.3.4"),
        ),
        (
            "Nov 24 10:03:52 host fail2ban-server: Jail 'sshd' started",
            Some("Jail 'sshd' started"),
        ),
        ("Nov 24 10:03:52 host fail2ban[x]: [sshd] Ban 1.2.3.4", None),
        (
            "Nov 24 10:03:52 host fail2banner[1]: [sshd] Ban 1.2.3.4",
            None,
        ),
        ("Nov 24 10:03:52 host sshd[1]: [sshd] Ban 1.2.3.4", None),
    ];
    for (line, expected) in cases {
        assert_eq!(tagged_message(line), *expected, "{line}");
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
    let unbans = |jail, cause| value(&store, UNBANS.name, &[("jail", jail), ("cause", cause)]);
    assert_eq!(unbans("sshd", "expiry"), 2);
    assert_eq!(unbans("sshd", "flush"), 1);
    assert_eq!(unbans("web", "expiry"), 1);
    assert_eq!(unbans("web", "flush"), 1);
    assert_eq!(value(&store, BAN_RESTORES.name, &[("jail", "sshd")]), 1);
    assert_eq!(store.sum(BANS.name, &[]), 0);
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
    assert_eq!(
        value(&store, ERRORS.name, &[("logger", "fail2ban.actions")]),
        1
    );
    assert_eq!(value(&store, BANS.name, &[("jail", "sshd")]), 1);
    assert_eq!(
        store.sum(LINES_UNPARSED.name, &[]),
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
    let unparsed = store.sum(LINES_UNPARSED.name, &[]);
    // Random bytes of length ≥ 1 nearly always hold a control byte or invalid UTF-8.
    assert!(
        unparsed > garbage * 95 / 100,
        "{unparsed} of {garbage} garbage lines unparsed"
    );
    assert_eq!(store.sum(BANS.name, &[]), 0);
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
                value(store, BANS.name, &[("jail", jail)]),
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
    assert_eq!(store.sum(BANS.name, &[]), bans_total, "{name}: bans");
    assert_eq!(store.sum(UNBANS.name, &[]), get("unbans"), "{name}: unbans");
    assert_eq!(
        store.sum(BAN_RESTORES.name, &[]),
        get("restores"),
        "{name}: restores"
    );
    assert_eq!(
        store.sum(FAILURES.name, &[]),
        get("failures"),
        "{name}: failures"
    );
    assert_eq!(
        store.sum(ALREADY_BANNED.name, &[]),
        get("already_banned"),
        "{name}: already banned"
    );
    assert_eq!(store.sum(ERRORS.name, &[]), get("errors"), "{name}: errors");
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
            value(&store, BANS.name, &[("jail", jail)]),
            expected,
            "bans of {jail}"
        );
    }
    assert_counts_agree("examples/logs/fail2ban.log", &store, &text);
    assert_eq!(store.sum(LINES_UNPARSED.name, &[]), 0);
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
        assert_eq!(store.sum(LINES_UNPARSED.name, &[]), 0, "{name}");
        check(
            &testdata(&format!("fail2ban/{name}.golden")),
            &render(&mut store, "fail2ban_"),
        );
        seen += 1;
    }
    assert_eq!(seen, 6, "every fail2ban sample is read");
}

/// `ip_label = true`: failures, bans, unbans and ban increases carry the id they
/// name; restores and echoes do not; the totals per jail stay the same.
#[test]
fn ip_label_is_opt_in() {
    let log = "\
2026-11-22 23:13:44,086 fail2ban.filter         [23131]: INFO    [sshd] Found 192.0.2.10 - 2026-11-22 23:13:43
2026-11-22 23:13:45,086 fail2ban.filter         [23131]: INFO    [sshd] Found 2001:db8::5 - 2026-11-22 23:13:44
2026-11-22 23:13:46,000 fail2ban.observer       [23131]: INFO    [sshd] Found 192.0.2.10, bad - 2026-11-22 23:13:44, 1 # -> 1, ban
2026-11-22 23:13:46,109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.10
2026-11-22 23:14:26,972 fail2ban.observer       [23131]: NOTICE  [sshd] Increase Ban 192.0.2.10 (2 # 40s -> 2026-11-22 23:15:06)
2026-11-22 23:15:06,200 fail2ban.actions        [23131]: NOTICE  [sshd] Unban 192.0.2.10
2026-11-22 23:16:00,000 fail2ban.actions        [23131]: NOTICE  [sshd] Restore Ban 198.51.100.7
";
    let mut on = Fail2banLog::new(true);
    let store = feed_all(&mut on, log, false);
    let v = |name, labels: &[(&str, &str)]| value(&store, name, labels);
    let sshd = |ip| [("jail", "sshd"), ("ip", ip)];
    assert_eq!(v(FAILURES.name, &sshd("192.0.2.10")), 1);
    assert_eq!(v(FAILURES.name, &sshd("2001:db8::5")), 1);
    assert_eq!(v(BANS.name, &sshd("192.0.2.10")), 1);
    assert_eq!(v(BAN_INCREASES.name, &sshd("192.0.2.10")), 1);
    let unban = [("jail", "sshd"), ("cause", "expiry"), ("ip", "192.0.2.10")];
    assert_eq!(v(UNBANS.name, &unban), 1);
    assert_eq!(v(BAN_RESTORES.name, &[("jail", "sshd")]), 1);

    let mut store_off = feed_all(&mut Fail2banLog::default(), log, false);
    for m in [FAILURES, BANS, BAN_INCREASES, UNBANS, BAN_RESTORES] {
        let name = m.name;
        assert_eq!(store.sum(name, &[]), store_off.sum(name, &[]), "{name}");
    }
    let snap = store_off.snapshot(0);
    assert!(snap.points.iter().all(|p| p.series.label("ip").is_none()));
}

/// `logtarget = SYSTEMD-JOURNAL`: the same records as fail2ban.log lines, given as
/// python-systemd's `JournalHandler` stores them (bare MESSAGE, LOGGER, PRIORITY).
#[test]
fn journal_entries_count_like_the_log_lines_they_stand_for() {
    let entry = |logger: &str, priority: u8, message: &str| crate::inputs::journal::Entry {
        message: message.to_string(),
        cursor: "c".into(),
        priority: Some(priority),
        logger: Some(logger.to_string()),
        ..Default::default()
    };
    let entries = [
        entry(
            "fail2ban.filter",
            6,
            "[sshd] Found 192.0.2.10 - 2026-11-22 23:13:43",
        ),
        entry(
            "fail2ban.observer",
            6,
            "[sshd] Found 192.0.2.10, bad - 2026-11-22 23:13:43, 1 # -> 3",
        ),
        entry("fail2ban.actions", 4, "[sshd] Ban 192.0.2.10"),
        entry(
            "fail2ban.actions",
            4,
            "[sshd] Flush ticket(s) with iptables-multiport",
        ),
        entry("fail2ban.actions", 4, "[sshd] Unban 192.0.2.10"),
        entry(
            "fail2ban.actions",
            3,
            "Failed to execute ban jail 'sshd' action\nTraceback (most recent call last):\n  File \"x\"",
        ),
        entry("fail2ban.server", 2, "Unhandled exception"),
    ];
    let lines = [
        "2026-11-22 23:13:44,086 fail2ban.filter         [23131]: INFO    [sshd] Found 192.0.2.10 - 2026-11-22 23:13:43",
        "2026-11-22 23:13:44,086 fail2ban.observer       [23131]: INFO    [sshd] Found 192.0.2.10, bad - 2026-11-22 23:13:43, 1 # -> 3",
        "2026-11-22 23:13:44,109 fail2ban.actions        [23131]: NOTICE  [sshd] Ban 192.0.2.10",
        "2026-11-22 23:13:45,109 fail2ban.actions        [23131]: NOTICE  [sshd] Flush ticket(s) with iptables-multiport",
        "2026-11-22 23:13:45,110 fail2ban.actions        [23131]: NOTICE  [sshd] Unban 192.0.2.10",
        "2026-11-22 23:13:46,000 fail2ban.actions        [23131]: ERROR   Failed to execute ban jail 'sshd' action",
        "Traceback (most recent call last):",
        "  File \"x\"",
        "2026-11-22 23:13:47,000 fail2ban.server         [23131]: CRITICAL Unhandled exception",
    ];
    let mut from_journal = Store::new(crate::store::Limits::default());
    let mut parser = Fail2banLog::default();
    for e in &entries {
        crate::sources::feed_entry(&mut parser, e, &mut from_journal);
    }
    let mut from_file = Store::new(crate::store::Limits::default());
    let mut parser = Fail2banLog::default();
    for l in lines {
        crate::sources::feed(&mut parser, l, &mut from_file);
    }
    for (name, labels) in [
        (FAILURES, &[("jail", "sshd")][..]),
        (BANS, &[("jail", "sshd")]),
        (UNBANS, &[("jail", "sshd"), ("cause", "flush")]),
        (ERRORS, &[("logger", "fail2ban.actions")]),
        (ERRORS, &[("logger", "fail2ban.server")]),
    ] {
        let name = name.name;
        assert_eq!(value(&from_journal, name, labels), 1, "{name} {labels:?}");
        assert_eq!(value(&from_file, name, labels), 1, "{name} {labels:?}");
    }
    assert_eq!(
        value(
            &from_journal,
            LINES_UNPARSED.name,
            &[("source", "fail2ban")]
        ),
        0
    );
    // fail2ban's stderr caught by journald has no LOGGER: its text is a log line.
    let stderr = crate::inputs::journal::Entry {
        message: lines[2].to_string(),
        ..Default::default()
    };
    crate::sources::feed_entry(&mut Fail2banLog::default(), &stderr, &mut from_journal);
    assert_eq!(value(&from_journal, BANS.name, &[("jail", "sshd")]), 2);
}

/// F3 of security-review-3: with `logtarget = SYSLOG` rme reads a syslog file
/// other daemons write to, and their messages quote what remote clients send.
/// A fail2ban record counts only where fail2ban's own text starts: the line's
/// start (after fail2ban's own time) or the syslog tag after `time host`.
#[test]
fn fail2ban_text_quoted_by_another_daemon_is_not_a_record() {
    let syslog = "\
2026-12-07T10:00:00.000000+00:00 web1 fail2ban.actions[812]: NOTICE [sshd] Ban 192.0.2.10
2026-12-07T10:00:01.000000+00:00 web1 postfix/smtpd[999]: warning: Illegal address syntax from unknown[203.0.113.5] in MAIL command: <x fail2ban.actions[1]: NOTICE [postfix] Ban 203.0.113.200>
2026-12-07T10:00:02.000000+00:00 web1 dovecot[77]: imap-login: Disconnected: Aborted login (auth failed, 1 attempts): user=<a fail2ban: [sshd] Ban 203.0.113.201>, method=PLAIN, rip=203.0.113.5
";
    let mut store = feed_all(&mut Fail2banLog::default(), syslog, false);
    assert_eq!(
        value(&store, BANS.name, &[("jail", "sshd")]),
        1,
        "{}",
        render(&mut store, "fail2ban_")
    );
    assert_eq!(store.sum(BANS.name, &[]), 1);
    assert_eq!(store.sum(LINES_UNPARSED.name, &[]), 2);

    // The same quoted text in every header shape rme reads, and in fail2ban's own.
    let quotes = [
        "x fail2ban.actions[1]: NOTICE [postfix] Ban 203.0.113.200",
        "x fail2ban.actions        [1]: NOTICE  [postfix] Ban 203.0.113.200",
        "x: fail2ban.actions: WARNING [postfix] Ban 203.0.113.200",
        "x fail2ban[1]: [postfix] Ban 203.0.113.200",
        "x fail2ban-server: [postfix] Ban 203.0.113.200",
        "x fail2ban-server[1]: fail2ban.actions [1]: NOTICE [postfix] Ban 203.0.113.200",
    ];
    let headers = [
        "Dec  7 10:00:01 web1 sshd[1]: Invalid user ",
        "Dec 07 10:00:01.123456 web1 sshd[1]: Invalid user ",
        "2026-12-07T10:00:01+0000 web1 sshd[1]: Invalid user ",
        "web1 sshd[1]: ",
        "2026-11-22 23:13:44,109 fail2ban.filter         [23131]: INFO    [sshd] Ignore ",
        "2026-11-22 23:13:44,109 fail2ban.actions        [23131]: ERROR   Failed: ",
        "Dec  7 10:00:01 web1 fail2ban-server[2]: ",
    ];
    for header in headers {
        for quote in quotes {
            let line = format!("{header}{quote}");
            let (_, store) = parse_one(&line);
            assert_eq!(store.sum(BANS.name, &[("jail", "postfix")]), 0, "{line}");
        }
    }
}
