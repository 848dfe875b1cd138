//! Journal input against the real `journalctl --file`: journal files written by
//! systemd-journal-remote from export-format entries made of real sample logs,
//! read by `rme push --once` twice (entries appended between the runs), must
//! give the same counters as the same lines read from a log file in the same
//! two runs, each line counted once.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// One journal entry: its fields, `MESSAGE` included.
type Entry = Vec<(&'static str, String)>;

/// Appends `entries` to the journal file `file` (created on first use) with
/// systemd-journal-remote, which reads the export format on stdin. `first` is
/// the index of the first entry, for its timestamps.
fn write_journal(file: &Path, entries: &[Entry], first: usize) {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} not found: install systemd-journal-remote (integration/peers/peers.sh install)"
    );
    let mut export = Vec::new();
    for (i, fields) in entries.iter().enumerate() {
        let n = (first + i) as u64;
        let time = [
            (
                "__REALTIME_TIMESTAMP",
                (1_764_600_000_000_000 + n * 1_000_000).to_string(),
            ),
            (
                "__MONOTONIC_TIMESTAMP",
                (1_000_000 + n * 1_000_000).to_string(),
            ),
            ("_BOOT_ID", "6c0a8e3f2b7d4e1a9c5b0d2e4f6a8b1c".to_string()),
        ];
        for (k, v) in time.iter().chain(fields) {
            if v.contains('\n') {
                // Binary form: name, newline, little-endian length, data.
                export.extend_from_slice(k.as_bytes());
                export.push(b'\n');
                export.extend_from_slice(&(v.len() as u64).to_le_bytes());
                export.extend_from_slice(v.as_bytes());
            } else {
                export.extend_from_slice(format!("{k}={v}").as_bytes());
            }
            export.push(b'\n');
        }
        export.push(b'\n');
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running systemd-journal-remote");
    child.stdin.take().unwrap().write_all(&export).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The source's own counters and its line counts in a text exposition.
fn counters(text: &str, prefix: &str, source: &str) -> BTreeMap<String, String> {
    let own = format!("source=\"{source}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_created"))
        .filter(|l| l.starts_with(prefix) || (l.starts_with("rme_lines_") && l.contains(&own)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.to_string()))
        })
        .collect()
}

/// Reads `lines` as a log file and their `entries` as a journal file, each in
/// two `--once` runs split at `split`, and compares what the two inputs count.
fn same_counters_as_the_log_file(
    source_toml: &str,
    journal_toml: &str,
    prefix: &str,
    source: &str,
    lines: &[String],
    entries: &[Entry],
    split: usize,
) {
    assert_eq!(lines.len(), entries.len());
    assert!(
        split > 0 && split < lines.len(),
        "split {split} of {}",
        lines.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, input: &str| -> PathBuf {
        write(
            dir.path(),
            &format!("{name}.toml"),
            &format!(
                "state_dir = \"{}\"\n[[sources]]\n{source_toml}{input}\n[[sinks]]\ntype = \"stdout\"\n",
                dir.path().join(format!("state-{name}")).display()
            ),
        )
    };
    let log = dir.path().join("source.log");
    let journal = dir.path().join("source.journal");
    let by_file = config("file", &format!("log = \"{}\"", log.display()));
    let by_journal = config(
        "journal",
        &format!(
            "[sources.journal]\n{journal_toml}file = \"{}\"",
            journal.display()
        ),
    );
    let mut runs = Vec::new();
    for (from, to) in [(0, split), (split, lines.len())] {
        append(&log, &lines[from..to].concat());
        write_journal(&journal, &entries[from..to], from);
        let file = counters(&push_once(&by_file), prefix, source);
        let journal = counters(&push_once(&by_journal), prefix, source);
        assert!(file.keys().any(|k| k.starts_with(prefix)), "{file:?}");
        assert_eq!(journal, file, "journal vs file after lines {from}..{to}");
        runs.push(journal);
    }
    let read = format!("rme_lines_read_total{{source=\"{source}\"}}");
    assert_eq!(runs[0][&read], split.to_string());
    assert_eq!(
        runs[1][&read],
        lines.len().to_string(),
        "each entry counted once"
    );
    assert!(runs[1] != runs[0], "the second run counted nothing new");
}

/// syslog level python-systemd's JournalHandler gives a Python logging level.
fn priority(level: &str) -> &'static str {
    match level {
        "CRITICAL" => "2",
        "ERROR" => "3",
        "WARNING" | "NOTICE" => "4",
        "INFO" => "6",
        _ => "7",
    }
}

/// fail2ban with `logtarget = SYSTEMD-JOURNAL`: the bare message, LOGGER and
/// PRIORITY, as its JournalHandler writes them; the log file gets the records of
/// real fail2ban logs (0.8 and 0.9–1.1 formats) as fail2ban wrote them.
#[test]
fn fail2ban_journal_file_counts_like_its_log() {
    let record =
        regex::Regex::new(r"fail2ban\.(\w+)\s*(?:\[\d+\])?\s*:\s+([A-Z]+)\s+(.*)$").unwrap();
    let (mut lines, mut entries) = (Vec::new(), Vec::new());
    for sample in [
        "fail2ban-0.9.5-0.10.4-guilbod.log",
        "fail2ban-0.8.6-cs102.log",
        "fail2ban-tests-recidive.log",
    ] {
        let text = std::fs::read_to_string(samples().join("fail2ban").join(sample)).unwrap();
        for line in text.lines() {
            let Some(c) = record.captures(line) else {
                continue;
            };
            lines.push(format!("{line}\n"));
            entries.push(vec![
                ("_TRANSPORT", "journal".to_string()),
                ("_SYSTEMD_UNIT", "fail2ban.service".to_string()),
                ("SYSLOG_IDENTIFIER", "fail2ban".to_string()),
                ("LOGGER", format!("fail2ban.{}", &c[1])),
                ("PRIORITY", priority(&c[2]).to_string()),
                ("THREAD_NAME", "f2b/a.sshd".to_string()),
                ("MESSAGE", c[3].to_string()),
            ]);
        }
    }
    let split = lines.len() / 2;
    same_counters_as_the_log_file(
        "type = \"fail2ban\"\n",
        "",
        "fail2ban_",
        "fail2ban",
        &lines,
        &entries,
        split,
    );
}

/// reaction under systemd: its stderr lines are the journal messages.
#[test]
fn reaction_journal_file_counts_like_its_log() {
    let text = std::fs::read_to_string(root().join("examples/logs/reaction.log")).unwrap();
    let lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
    let entries: Vec<Entry> = text
        .lines()
        .map(|l| {
            vec![
                ("_TRANSPORT", "stdout".to_string()),
                ("_SYSTEMD_UNIT", "reaction.service".to_string()),
                ("SYSLOG_IDENTIFIER", "reaction".to_string()),
                ("MESSAGE", l.to_string()),
            ]
        })
        .collect();
    let split = lines.len() / 2;
    same_counters_as_the_log_file(
        "type = \"reaction\"\n",
        "unit = \"reaction.service\"\n",
        "reaction_",
        "reaction",
        &lines,
        &entries,
        split,
    );
    // The unit is the usual way to pick reaction's entries.
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("r.journal");
    write_journal(&journal, &entries, 0);
    let mut other = entries[0].clone();
    other[1].1 = "other.service".to_string();
    write_journal(&journal, &[other], entries.len());
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"{}\"\n[[sources]]\ntype = \"reaction\"\n[sources.journal]\nunit = \"reaction.service\"\nfile = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.path().join("state").display(),
            journal.display()
        ),
    );
    let read = metric_value(
        &push_once(&config),
        "rme_lines_read_total{source=\"reaction\"}",
    );
    assert_eq!(read, Some(entries.len() as f64));
}

/// The numbers of the audit record types in the samples (linux/audit.h).
fn audit_type(name: &str) -> u32 {
    let types = [
        ("LOGIN", 1006),
        ("USER_AUTH", 1100),
        ("USER_ACCT", 1101),
        ("USER_MGMT", 1102),
        ("CRED_ACQ", 1103),
        ("CRED_DISP", 1104),
        ("USER_START", 1105),
        ("USER_END", 1106),
        ("USER_ERR", 1109),
        ("CRED_REFR", 1110),
        ("USYS_CONFIG", 1111),
        ("USER_LOGIN", 1112),
        ("USER_LOGOUT", 1113),
        ("ADD_USER", 1114),
        ("ADD_GROUP", 1116),
        ("USER_CMD", 1123),
        ("USER_TTY", 1124),
        ("SYSTEM_BOOT", 1127),
        ("SYSTEM_RUNLEVEL", 1129),
        ("SERVICE_START", 1130),
        ("SERVICE_STOP", 1131),
        ("GRP_MGMT", 1132),
        ("SYSCALL", 1300),
        ("PATH", 1302),
        ("CONFIG_CHANGE", 1305),
        ("SOCKADDR", 1306),
        ("CWD", 1307),
        ("EXECVE", 1309),
        ("TTY", 1319),
        ("EOE", 1320),
        ("BPRM_FCAPS", 1321),
        ("NETFILTER_CFG", 1325),
        ("PROCTITLE", 1327),
        ("USER_ROLE_CHANGE", 2300),
        ("CRYPTO_KEY_USER", 2404),
        ("CRYPTO_SESSION", 2407),
    ];
    let unknown = name
        .strip_prefix("UNKNOWN[")
        .and_then(|n| n.strip_suffix(']'));
    unknown.map(|n| n.parse().unwrap()).unwrap_or_else(|| {
        types
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("add audit type {name} to the table"))
            .1
    })
}

/// journald's own audit records (`_TRANSPORT=audit`, no auditd): MESSAGE is the
/// type name (`AUDIT1334` for one journald cannot name) and the text, the
/// header is in `_AUDIT_TYPE`, `_AUDIT_ID` and `_SOURCE_REALTIME_TIMESTAMP`.
#[test]
fn audit_journal_file_counts_like_audit_log() {
    let record =
        regex::Regex::new(r"^type=([A-Z_]+(?:\[\d+\])?) msg=audit\((\d+)\.(\d{3}):(\d+)\): ?(.*)$")
            .unwrap();
    let (mut lines, mut entries) = (Vec::new(), Vec::new());
    for sample in ["testdata_normal.log", "auparse_testdata_audit-rhel7.log"] {
        let text =
            std::fs::read_to_string(samples().join("audit/go-libaudit").join(sample)).unwrap();
        for line in text.lines() {
            // auditd's own records and multi-node logs never pass through journald.
            let Some(c) = record
                .captures(line)
                .filter(|c| !c[1].starts_with("DAEMON_"))
            else {
                continue;
            };
            let kind = audit_type(&c[1]);
            let name = if c[1].starts_with("UNKNOWN[") {
                format!("AUDIT{kind:04}")
            } else {
                c[1].to_string()
            };
            let us = c[2].parse::<u64>().unwrap() * 1_000_000 + c[3].parse::<u64>().unwrap() * 1000;
            lines.push(format!("{line}\n"));
            entries.push(vec![
                ("_TRANSPORT", "audit".to_string()),
                ("_AUDIT_TYPE", kind.to_string()),
                ("_AUDIT_ID", c[4].to_string()),
                ("_SOURCE_REALTIME_TIMESTAMP", us.to_string()),
                ("SYSLOG_FACILITY", "4".to_string()),
                ("MESSAGE", format!("{name} {}", &c[5])),
            ]);
        }
    }
    // Split between two events, so neither run holds half of one.
    let split = (lines.len() / 2..lines.len())
        .find(|&i| {
            let serial = |l: &str| record.captures(l.trim_end()).map(|c| c[4].to_string());
            serial(&lines[i]) != serial(&lines[i - 1])
        })
        .unwrap();
    same_counters_as_the_log_file(
        "type = \"audit\"\nnetlink = false\n",
        "",
        "audit_",
        "audit",
        &lines,
        &entries,
        split,
    );
}

/// F2 of security-review-3: `SYSLOG_IDENTIFIER`, `LOGGER` and `PRIORITY` are
/// fields a client sets, and journald's socket takes entries from any local
/// user (`logger --journald`). The default fail2ban match must select entries
/// by what journald sets itself: fail2ban's unit (`_SYSTEMD_UNIT`, from the
/// sender's cgroup). Entries as fail2ban 1.0 under Debian's fail2ban.service
/// writes them count; the same fields from uid 1001's `logger` (and from a
/// process of that user named `fail2ban-server`) do not.
#[test]
fn fail2ban_default_match_ignores_entries_a_local_user_forges() {
    let trusted = |extra: &[(&'static str, &str)]| -> Entry {
        let mut e = vec![
            ("_UID", "0".to_string()),
            ("_GID", "0".to_string()),
            ("_COMM", "fail2ban-server".to_string()),
            ("_EXE", "/usr/bin/python3.11".to_string()),
            (
                "_CMDLINE",
                "/usr/bin/python3 /usr/bin/fail2ban-server -xf start".to_string(),
            ),
            (
                "_SYSTEMD_CGROUP",
                "/system.slice/fail2ban.service".to_string(),
            ),
            ("_SYSTEMD_UNIT", "fail2ban.service".to_string()),
        ];
        e.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        e
    };
    let forged = |comm: &str, extra: &[(&'static str, &str)]| -> Entry {
        let mut e = vec![
            ("_UID", "1001".to_string()),
            ("_GID", "1001".to_string()),
            ("_COMM", comm.to_string()),
            ("_EXE", format!("/usr/bin/{comm}")),
            (
                "_SYSTEMD_CGROUP",
                "/user.slice/user-1001.slice/session-3.scope".to_string(),
            ),
            ("_SYSTEMD_UNIT", "session-3.scope".to_string()),
            ("_SYSTEMD_SLICE", "user-1001.slice".to_string()),
            ("_TRANSPORT", "journal".to_string()),
        ];
        e.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        e
    };
    let handler = |logger: &str, priority: &str, msg: &str| {
        [
            ("_TRANSPORT", "journal".to_string()),
            ("SYSLOG_IDENTIFIER", "fail2ban".to_string()),
            ("LOGGER", logger.to_string()),
            ("PRIORITY", priority.to_string()),
            ("THREAD_NAME", "f2b/a.sshd".to_string()),
            ("MESSAGE", msg.to_string()),
        ]
    };
    let mut entries: Vec<Entry> = Vec::new();
    // Genuine: logtarget = SYSTEMD-JOURNAL, and Debian's `--logtarget=sysout` (stdout).
    for ip in ["192.0.2.10", "192.0.2.11"] {
        let mut e = trusted(&[]);
        e.extend(handler(
            "fail2ban.actions",
            "4",
            &format!("[sshd] Ban {ip}"),
        ));
        entries.push(e);
    }
    entries.push(trusted(&[
        ("_TRANSPORT", "stdout"),
        ("SYSLOG_IDENTIFIER", "fail2ban-server"),
        ("PRIORITY", "6"),
        (
            "MESSAGE",
            "fail2ban.actions        [812]: NOTICE  [sshd] Ban 192.0.2.12",
        ),
    ]));
    let genuine = entries.len();
    // Forged by uid 1001 with `logger --journald`: a ban, a jail name built to
    // break the exposition, an error, and 300 jails.
    for (logger, priority, msg) in [
        (
            "fail2ban.actions",
            "5",
            "[sshd] Ban 198.51.100.7".to_string(),
        ),
        (
            "fail2ban.actions",
            "5",
            "[evil\"} 1e9 # x] Ban 198.51.100.9".to_string(),
        ),
        ("fail2ban.actions", "3", "Traceback: forged".to_string()),
    ]
    .into_iter()
    .chain((2..=300).map(|i| {
        (
            "fail2ban.actions",
            "5",
            format!("[jail{i}] Ban 198.51.100.1"),
        )
    })) {
        let mut e = forged("logger", &[]);
        e.extend(handler(logger, priority, &msg).into_iter().skip(1));
        entries.push(e);
    }
    // A process of that user named like fail2ban's (`_COMM` is the process's
    // own name, so a user chooses it): still not fail2ban's unit.
    let mut e = forged("fail2ban-server", &[]);
    e.extend(
        handler("fail2ban.actions", "4", "[sshd] Ban 198.51.100.8")
            .into_iter()
            .skip(1),
    );
    entries.push(e);

    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("f2b.journal");
    write_journal(&journal, &entries, 0);
    let config = write(
        dir.path(),
        "rme.toml",
        &format!(
            "state_dir = \"{}\"\n[[sources]]\ntype = \"fail2ban\"\n[sources.journal]\nfile = \"{}\"\n[[sinks]]\ntype = \"stdout\"\n",
            dir.path().join("state").display(),
            journal.display()
        ),
    );
    let text = push_once(&config);
    let bans: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("fail2ban_bans_total"))
        .collect();
    assert_eq!(
        (bans.len(), bans.first().copied()),
        (1, Some("fail2ban_bans_total{jail=\"sshd\"} 3")),
        "{}",
        bans.join("\n")
    );
    assert!(!text.contains("fail2ban_errors_total{"), "{text}");
    assert_eq!(
        metric_value(&text, "rme_lines_read_total{source=\"fail2ban\"}"),
        Some(genuine as f64),
        "{text}"
    );
    // journalctl itself holds the forged entries: they were there to be read.
    let out = Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "--file"])
        .arg(&journal)
        .arg("SYSLOG_IDENTIFIER=fail2ban")
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stdout);
    assert_eq!(all.lines().count(), 2 + 302 + 1, "{all}");
}
