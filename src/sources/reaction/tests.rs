//! reaction parser tests: line tables, golden files, random bytes.
use super::*;

use crate::sources::LINES_UNPARSED;
use crate::sources::golden::{check, feed_all, render, samples, testdata};
use crate::store::{Series, Store};

fn value(store: &Store, name: &str, labels: &[(&str, &str)]) -> u64 {
    match store.get(&Series::new(name, labels)) {
        Some(crate::store::Value::Counter(n)) => n,
        _ => 0,
    }
}

type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

#[test]
fn one_line_gives_one_series() {
    let cases: &[Case] = &[
        // v1 (Go), format strings of app/daemon.go
        (
            "2024/04/28 12:00:01 INFO  ssh.failedlogin: match [203.0.113.9]",
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "failedlogin")],
        ),
        (
            "2024/04/28 12:00:01 INFO  ssh.failedlogin: match [.]",
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "failedlogin")],
        ),
        (
            "2024/04/28 12:00:01 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 203.0.113.9 -j DROP]",
            ACTIONS.name,
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("action", "ban"),
            ],
        ),
        (
            "2024/04/28 12:00:01 ERROR ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 203.0.113.9 -j DROP], code exit status 1",
            ACTION_ERRORS.name,
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("action", "ban"),
            ],
        ),
        (
            "2024/04/28 12:00:00 INFO  start command: run [ip46tables -w -N reaction]",
            COMMANDS.name,
            &[("moment", "start")],
        ),
        (
            "2024/04/28 12:00:00 ERROR stop command: run [ip46tables -w -X reaction]: exit status 1",
            COMMAND_ERRORS.name,
            &[("moment", "stop")],
        ),
        (
            "2024/04/28 12:00:01 INFO  ssh: start [journalctl -fn0 -u sshd.service]",
            STREAM_EVENTS.name,
            &[("stream", "ssh"), ("event", "start")],
        ),
        (
            "2024/04/28 12:00:01 ERROR ssh stream finished",
            STREAM_EVENTS.name,
            &[("stream", "ssh"), ("event", "exit")],
        ),
        // v2 (Rust), shapes from reaction-metrics-exporter's regexes
        (
            "INFO ssh.failedlogin: match [\"203.0.113.9\"]",
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "failedlogin")],
        ),
        (
            "INFO ssh.failedlogin.ban: run [\"nft\" \"add\" \"element\" \"inet\" \"reaction\" \"bans\" \"{ 203.0.113.9 }\"]",
            ACTIONS.name,
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("action", "ban"),
            ],
        ),
        (
            "ERROR stop command: run [\"nft\" \"delete\" \"table\" \"inet\" \"reaction\"]: exit code: 1",
            COMMAND_ERRORS.name,
            &[("moment", "stop")],
        ),
        (
            "INFO start command: run [\"nft\" \"-f\" \"/etc/nft.conf\"]",
            COMMANDS.name,
            &[("moment", "start")],
        ),
        (
            "ERROR could not execute stream ssh cmd: No such file",
            STREAM_EVENTS.name,
            &[("stream", "ssh"), ("event", "exec")],
        ),
        (
            "ERROR stream web exited: exit status: 1",
            STREAM_EVENTS.name,
            &[("stream", "web"), ("event", "exit")],
        ),
        (
            "ERROR child process of stream ssh did not terminate",
            STREAM_EVENTS.name,
            &[("stream", "ssh"), ("event", "timeout")],
        ),
        (
            "ERROR impossible to read output from stream ssh: broken pipe",
            STREAM_EVENTS.name,
            &[("stream", "ssh"), ("event", "read")],
        ),
    ];
    for (line, name, labels) in cases {
        let mut store = Store::new(crate::store::Limits::default());
        assert_eq!(
            ReactionLog::default().parse(line, &mut store),
            Ok(()),
            "{line}"
        );
        assert_eq!(value(&store, name, labels), 1, "{line} → {name}{labels:?}");
        assert_eq!(store.len(), 1, "{line} gave more than one series");
    }
}

#[test]
fn known_but_uninteresting_lines_count_nothing() {
    for line in [
        "2024/04/28 12:00:01 INFO  Received SIGINT/SIGTERM, exiting",
        "2024/04/28 12:00:01 INFO   Waiting for Streams to finish...",
        "2024/04/28 12:00:01 WARN  No DB found at ./reaction-matches.db. It's ok if this is the first time reaction is running.",
        "2024/04/28 12:00:01 FATAL Bad configuration: no streams",
        "INFO received SIGTERM, closing streams...",
        "INFO bad.head.with.dots: match [1.2.3.4]",
    ] {
        let mut store = Store::new(crate::store::Limits::default());
        assert_eq!(
            ReactionLog::default().parse(line, &mut store),
            Ok(()),
            "{line}"
        );
        assert!(store.is_empty(), "{line}");
    }
    for line in [
        "ssh.failedlogin: match [1.2.3.4]",
        "info ssh.failedlogin: match [1.2.3.4]",
        "\u{fffd}\u{1}",
    ] {
        let mut store = Store::new(crate::store::Limits::default());
        assert!(
            ReactionLog::default().parse(line, &mut store).is_err(),
            "{line}"
        );
    }
}

#[test]
fn pattern_labels_need_a_config_and_a_free_name() {
    let mut c = ReactionConfig {
        log: Some("reaction.log".into()),
        pattern_labels: vec!["ip".into()],
        ..Default::default()
    };
    let check = |c: &ReactionConfig| c.check_pattern_labels().map_err(|e| e.under("sources[1]"));
    let e = check(&c).unwrap_err().to_string();
    assert!(
        e.contains("sources[1].pattern_labels") && e.contains("config"),
        "{e}"
    );
    c.config = Some("reaction.yml".into());
    assert!(check(&c).is_ok());
    c.pattern_labels.push("stream".into());
    let e = check(&c).unwrap_err().to_string();
    assert!(e.contains("'stream'"), "{e}");
}

#[test]
fn match_values_of_both_formats() {
    assert_eq!(match_values("[203.0.113.9]"), ["203.0.113.9"]);
    assert_eq!(match_values("[2001:db8::5]"), ["2001:db8::5"]);
    assert_eq!(match_values("[.]"), Vec::<String>::new());
    assert_eq!(match_values("[\"203.0.113.9\"]"), ["203.0.113.9"]);
    assert_eq!(
        match_values("[\"1.2.3.4\", \"ro\\\"ot\"]"),
        ["1.2.3.4", "ro\"ot"]
    );
    assert_eq!(match_values("[\"unterminated]"), Vec::<String>::new());
    assert_eq!(match_values("no brackets"), Vec::<String>::new());
}

#[test]
fn whole_word_search() {
    assert!(contains_word("[ip46tables -s 1.2.3.4 -j DROP]", "1.2.3.4"));
    assert!(contains_word("[\"nft\" \"{ 1.2.3.4 }\"]", "1.2.3.4"));
    assert!(!contains_word(
        "[ip46tables -s 11.2.3.45 -j DROP]",
        "1.2.3.4"
    ));
    assert!(!contains_word("[x 2001:db8::55]", "2001:db8::5"));
    assert!(!contains_word("anything", ""));
}

fn multi_pattern() -> FilterPatterns {
    load_patterns(
        &testdata("reaction/multi-pattern.yml"),
        Some(Path::new("/nonexistent/reaction")),
    )
    .expect("multi-pattern.yml")
}

#[test]
fn pattern_labels_are_named_sorted_and_opt_in() {
    let log = "\
INFO ssh.failedlogin: match [\"203.0.113.9\", \"root\"]
INFO ssh.failedlogin: match [\"198.51.100.1\", \"admin\"]
INFO ssh.failedlogin.ban: run [\"nft\" \"add\" \"element\" \"inet\" \"reaction\" \"bans\" \"{\" \"203.0.113.9\" \"}\"]
INFO ssh.failedlogin.ban: run [\"nft\" \"add\" \"element\" \"inet\" \"reaction\" \"bans\" \"{\" \"192.0.2.1\" \"}\"]
INFO ssh.nopattern: match [.]
";
    let mut parser = ReactionLog::new(multi_pattern(), vec!["ip".into()]);
    let store = feed_all(&mut parser, log, false);
    let m = |ip| {
        value(
            &store,
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "failedlogin"), ("ip", ip)],
        )
    };
    assert_eq!((m("203.0.113.9"), m("198.51.100.1")), (1, 1));
    let a = |labels: &[(&str, &str)]| {
        let mut l = vec![
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban"),
        ];
        l.extend_from_slice(labels);
        value(&store, ACTIONS.name, &l)
    };
    // The run names 203.0.113.9: the older match is found, not the latest one.
    assert_eq!(a(&[("ip", "203.0.113.9")]), 1);
    // No recent match appears in this command (a replay at start, say): the
    // action's cmd template in reaction's config names the value.
    assert_eq!(a(&[("ip", "192.0.2.1")]), 1);
    assert_eq!(a(&[]), 0);
    assert_eq!(
        value(
            &store,
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "nopattern")]
        ),
        1
    );

    let mut both = ReactionLog::new(multi_pattern(), vec!["ip".into(), "user".into()]);
    let store = feed_all(&mut both, log, false);
    let labels = [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("ip", "203.0.113.9"),
        ("user", "root"),
    ];
    assert_eq!(value(&store, MATCHES.name, &labels), 1);
    // The ban's command uses only <ip> (reaction's config says so): the match whose
    // <ip> it names labels it with <user> too.
    let ban = [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("action", "ban"),
        ("ip", "203.0.113.9"),
        ("user", "root"),
    ];
    assert_eq!(value(&store, ACTIONS.name, &ban), 1);

    let mut none = ReactionLog::new(multi_pattern(), Vec::new());
    let store = feed_all(&mut none, log, false);
    assert_eq!(
        value(
            &store,
            MATCHES.name,
            &[("stream", "ssh"), ("filter", "failedlogin")]
        ),
        2
    );
}

/// A v1 daemon restarting replays the actions of its saved matches: `run` lines
/// with no match before them. The cmd templates of reaction's own v1 example
/// config (`ip46tables … -s <ip> …`) name their values.
#[test]
fn replayed_runs_take_values_from_the_command_template() {
    let log = "\
2026/11/24 10:00:00 INFO  start command: run [ip46tables -w -N reaction]
2026/11/24 10:00:00 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 203.0.113.9 -j DROP]
2026/11/24 10:00:00 INFO  ssh.failedlogin.unban: run [ip46tables -w -D reaction -s 198.51.100.23 -j DROP]
2026/11/24 10:00:01 ERROR ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 2001:db8::5 -j DROP], code exit status 1
2026/11/24 10:03:12 INFO  ssh.failedlogin: match [192.0.2.14]
2026/11/24 10:03:13 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 192.0.2.14 -j DROP]
";
    let v1 = load_patterns(
        &testdata("reaction/v1-app_example.yml"),
        Some(Path::new("/nonexistent/reaction")),
    )
    .expect("v1 example");
    let store = feed_all(&mut ReactionLog::new(v1, vec!["ip".into()]), log, false);
    let run = |name, action, ip| {
        let labels = [
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", action),
            ("ip", ip),
        ];
        value(&store, name, &labels)
    };
    assert_eq!(run(ACTIONS.name, "ban", "203.0.113.9"), 1);
    assert_eq!(run(ACTIONS.name, "unban", "198.51.100.23"), 1);
    assert_eq!(run(ACTION_ERRORS.name, "ban", "2001:db8::5"), 1);
    assert_eq!(run(ACTIONS.name, "ban", "192.0.2.14"), 1, "from the match");
    assert_eq!(store.sum(ACTIONS.name, &[]), 3);
    assert_eq!(
        store.sum(COMMANDS.name, &[]),
        1,
        "start commands are no actions"
    );
}

#[test]
fn config_pattern_names() {
    let p = multi_pattern();
    assert_eq!(
        p.action("ssh", "failedlogin", "ban"),
        Some(&["ip".to_string()][..])
    );
    assert_eq!(p.action("ssh", "nopattern", "alert"), Some(&[][..]));
    assert_eq!(p.action("ssh", "failedlogin", "nope"), None);
    assert_eq!(
        p.get("ssh", "failedlogin"),
        Some(&["ip".to_string(), "user".to_string()][..])
    );
    assert_eq!(
        p.get("ssh", "nopattern"),
        Some(&[][..]),
        "<notapattern> is not declared"
    );
    let v1 = load_patterns(
        &testdata("reaction/v1-app_example.yml"),
        Some(Path::new("/nonexistent/reaction")),
    )
    .expect("v1 example");
    assert_eq!(v1.get("ssh", "failedlogin"), Some(&["ip".to_string()][..]));
}

#[test]
fn v2_config_directory_is_merged() {
    let dir = testdata("reaction/v2-dir");
    let p = load_patterns(&dir, Some(Path::new("/nonexistent/reaction"))).expect("v2 directory");
    let ip = Some(&["ip".to_string()][..]);
    assert_eq!(p.get("ssh", "dropbear_failed"), ip);
    assert!(p.len() >= 2, "{p:?}");
    let merged = patterns::read_config(&dir).expect("v2 directory");
    assert!(
        merged["patterns"]["ip"].is_object(),
        "patterns come from config.jsonnet"
    );
    assert!(
        merged["streams"].is_object(),
        "streams come from streams.jsonnet"
    );
}

/// Every standalone sample config, read in place (lib.jsonnet and streams.jsonnet are the
/// two halves of the v2 directory tested above).
#[test]
fn every_sample_config_names_its_patterns() {
    let mut seen = 0;
    for dir in ["v1-go-ppom", "v2-openwrt-zerogiven"] {
        for entry in std::fs::read_dir(samples().join("reaction").join(dir))
            .expect("samples")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lib.jsonnet" || name == "streams.jsonnet" {
                continue;
            }
            let config =
                patterns::read_config(&entry.path()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let p = FilterPatterns::from_config(&config);
            if name == "config.jsonnet" {
                assert!(p.is_empty(), "v2 config.jsonnet holds no streams");
            } else {
                assert!(!p.is_empty(), "{name}");
                assert!(p.names().all(|names| names.len() == 1), "{name}: {p:?}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 12);
}

#[test]
fn unreadable_configs_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "streams: [unclosed").expect("write");
    let e = format!(
        "{:#}",
        load_patterns(&bad, Some(Path::new("/nonexistent/reaction"))).unwrap_err()
    );
    assert!(e.contains("bad.yml") && e.contains("invalid YAML"), "{e}");
    let missing = dir.path().join("missing.json");
    let e = format!(
        "{:#}",
        load_patterns(&missing, Some(Path::new("/nonexistent/reaction"))).unwrap_err()
    );
    assert!(e.contains("missing.json"), "{e}");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{\"patterns\": {}}").expect("write");
    let e = format!(
        "{:#}",
        load_patterns(&empty, Some(Path::new("/nonexistent/reaction"))).unwrap_err()
    );
    assert!(e.contains("no streams"), "{e}");
}

#[test]
fn garbage_is_unparsed_and_never_panics() {
    let mut parser = ReactionLog::new(multi_pattern(), vec!["ip".into(), "user".into()]);
    let mut store = Store::new(crate::store::Limits::default());
    for _ in 0..2000 {
        let len = fastrand::usize(1..200);
        let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
        crate::sources::feed(&mut parser, &String::from_utf8_lossy(&bytes), &mut store);
        let mut line = b"INFO ssh.failedlogin: match [\"".to_vec();
        line.extend_from_slice(&bytes);
        crate::sources::feed(&mut parser, &String::from_utf8_lossy(&line), &mut store);
    }
    assert!(
        store.sum(LINES_UNPARSED.name, &[]) >= 1990,
        "random bytes are unparsed"
    );
}

/// The demo log (synthetic, built from v1's format strings): golden file plus grep-like counts.
#[test]
fn golden_example_log() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/logs/reaction.log");
    let text = std::fs::read_to_string(path).expect("examples/logs/reaction.log");
    let mut store = feed_all(&mut ReactionLog::default(), &text, false);
    let count = |needle: &str, level: &str| {
        text.lines()
            .filter(|l| l.contains(needle) && l.contains(level))
            .count() as u64
    };
    assert_eq!(store.sum(MATCHES.name, &[]), count(": match [", " INFO "));
    assert_eq!(
        store.sum(ACTIONS.name, &[]),
        count(": run [", " INFO  ") - count("command: run", " INFO  ")
    );
    assert_eq!(
        store.sum(ACTION_ERRORS.name, &[]),
        count(": run [", " ERROR ") - count("command: run", " ERROR ")
    );
    assert_eq!(
        store.sum(COMMANDS.name, &[]),
        count("command: run", " INFO  ")
    );
    assert_eq!(store.sum(LINES_UNPARSED.name, &[]), 0);
    check(
        &testdata("reaction/example-log.golden"),
        &render(&mut store, "reaction_"),
    );
}

/// A stand-in `reaction` that answers `test-config -c FILE` like v2 does (the
/// evaluated config as YAML on stdout); here FILE is jsonnet-free YAML, so `cat` is an
/// honest evaluator. The second one fails, as v1 (which lacks `test-config`) would.
#[test]
fn reaction_test_config_is_asked_first() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let v2 = script(
        "reaction-v2",
        r#"[ "$1 $2" = "test-config -c" ] && exec cat "$3"; exit 2"#,
    );
    let v1 = script(
        "reaction-v1",
        "echo 'unknown command test-config' >&2; exit 1",
    );
    // A config that only the stand-in can read: rme cannot parse `.conf` itself.
    let conf = dir.path().join("reaction.conf");
    std::fs::copy(testdata("reaction/multi-pattern.yml"), &conf).expect("copy");
    let p = load_patterns(&conf, Some(&v2)).expect("via test-config");
    assert_eq!(p, multi_pattern());
    let e = format!("{:#}", load_patterns(&conf, Some(&v1)).unwrap_err());
    assert!(
        e.contains("reaction.conf") && e.contains("invalid JSON"),
        "fell back to the file: {e}"
    );
}

#[test]
fn hand_read_header_captures_what_the_line_regex_captures() {
    use super::log::{LINE, header};
    let pieces = [
        "2024",
        "/04",
        "/28",
        " ",
        "12",
        ":00",
        ":01",
        "  ",
        "INFO",
        "WARN",
        "WARNING",
        "ERROR",
        "DEBUG",
        "FATAL",
        "x",
        "\n",
        "\r",
        "٣",
        "é",
        "0",
        "ssh.f: match [1.2.3.4]",
    ];
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..50_000 {
        let line = crate::sources::golden::pieces_joined(&mut rng, &pieces, 12);
        let want = LINE.captures(&line).map(|c| {
            (
                c.get(1).map_or("", |m| m.as_str()),
                c.get(2).map_or("", |m| m.as_str()),
            )
        });
        assert_eq!(header(&line), want, "{line:?}");
    }
    for line in [
        "2024/04/28 12:00:01 INFO  ssh.failedlogin: match [1.2.3.4]",
        "INFO ssh.failedlogin: match [\"1.2.3.4\"]",
        "٢٠٢٤/04/28 12:00:01 INFO x",
        "2024/04/28 12:00:01 INFOx",
    ] {
        let want = LINE
            .captures(line)
            .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()));
        assert_eq!(header(line), want, "{line:?}");
    }
}

/// The command index answers what the search answers, for values of word
/// characters, of others, and across char boundaries.
#[test]
fn command_words_agree_with_the_search() {
    let pieces = [
        "1.2.3.4",
        "11.2.3.45",
        "2001:db8::5",
        " ",
        "-",
        "[",
        "]",
        "\"",
        "root",
        "ro",
        "é",
        "a b",
        "x-y",
        "_",
        ".",
        ":",
        "{",
        "}",
    ];
    let mut rng = fastrand::Rng::with_seed(8);
    for _ in 0..20_000 {
        let command = crate::sources::golden::pieces_joined(&mut rng, &pieces, 12);
        let value = crate::sources::golden::pieces_joined(&mut rng, &pieces, 3);
        let mut budget = usize::MAX;
        let plain = value
            .chars()
            .all(|c| c.is_alphanumeric() || ".:_".contains(c));
        assert_eq!(
            CommandWords::new(&command).contains(&value, plain, &mut budget),
            contains_word(&command, &value),
            "{value:?} in {command:?}"
        );
    }
}

/// CPU time of this thread, in seconds.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// F8 of security-review-3: each `run` line was searched for the values of up
/// to 64 recent matches (and read through the action's template regex), so
/// long values made run lines cost ~150× match lines of the same bytes. Now a
/// run line costs about what a match line does, with recent values at the
/// kept limit (1000 bytes) or beyond it (20 000), and 20 KB commands (CPU time
/// of this thread, best of three, so other load does not count).
#[test]
fn long_values_do_not_make_run_lines_expensive() {
    let v1 = load_patterns(
        &testdata("reaction/v1-app_example.yml"),
        Some(Path::new("/nonexistent/reaction")),
    )
    .expect("v1 example");
    let long = "A".repeat(20_000);
    let runs: String = (0..100)
        .map(|i| {
            format!(
                "2026/11/24 09:00:02 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s {long}{i:08} -j DROP]\n"
            )
        })
        .collect();
    let same_bytes_as_matches: String = (0..100)
        .map(|i| {
            format!(
                "2026/11/24 09:00:02 INFO  ssh.failedlogin: match [{long}{i:08} -j DROP xxxxxxxxxxxxxxxxxxxxxxxxxx]\n"
            )
        })
        .collect();
    for value_len in [1000, 20_000] {
        let value = "A".repeat(value_len - 8);
        let matches: String = (0..64)
            .map(|i| format!("2026/11/24 09:00:01 INFO  ssh.failedlogin: match [{i:08}{value}]\n"))
            .collect();
        let cost = |tail: &str| {
            (0..3)
                .map(|_| {
                    let mut parser = ReactionLog::new(v1.clone(), vec!["ip".into()]);
                    feed_all(&mut parser, &matches, false);
                    let t = thread_cpu();
                    let store = feed_all(&mut parser, tail, false);
                    let spent = thread_cpu() - t;
                    assert_eq!(store.sum("rme_lines_read_total", &[]), 100);
                    spent
                })
                .fold(f64::MAX, f64::min)
        };
        let (run, matched) = (cost(&runs), cost(&same_bytes_as_matches));
        assert!(
            run < 3.0 * matched,
            "values of {value_len} bytes: 100 run lines took {run:.3} s, 100 match lines of the same bytes {matched:.3} s"
        );
    }
}

/// A match value longer than 1 KiB labels no `run` line (it counts as a match).
#[test]
fn long_values_are_not_kept_for_run_lines() {
    let long = format!("1.{}", "2".repeat(1100));
    let log = format!(
        "2026/11/24 10:03:12 INFO  ssh.failedlogin: match [{long}]\n\
         2026/11/24 10:03:13 INFO  ssh.failedlogin: match [192.0.2.14]\n\
         2026/11/24 10:03:14 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 192.0.2.14 -j DROP]\n"
    );
    let v1 = load_patterns(
        &testdata("reaction/v1-app_example.yml"),
        Some(Path::new("/nonexistent/reaction")),
    )
    .expect("v1 example");
    let mut parser = ReactionLog::new(v1, vec!["ip".into()]);
    let store = feed_all(&mut parser, &log, false);
    assert_eq!(store.sum(MATCHES.name, &[]), 2);
    assert_eq!(
        store.sum(ACTIONS.name, &[("ip", "192.0.2.14"), ("action", "ban")]),
        1
    );
    assert_eq!(parser.recent_len("ssh", "failedlogin"), 1);
}
