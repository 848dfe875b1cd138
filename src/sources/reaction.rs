//! reaction: its log (matches and action runs per stream/filter/action, with
//! pattern labels from reaction's own config) and pending actions from `reaction show`.
//!
//! Reads v1 (Go: `2024/04/28 12:00:01 INFO  ssh.failedlogin: match [1.2.3.4]`)
//! and v2 (Rust: `INFO ssh.failedlogin: match ["1.2.3.4"]`) lines. The tricky
//! point is that match and run lines carry no shared id: a `run` line gets
//! pattern labels only from a recent match of its filter whose values all
//! appear in the command (see [`ReactionLog`]).

use std::collections::{HashMap, VecDeque};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::{Input, JournalInput, LineParser, Parts, Unparsed};
use crate::config::Invalid;
use crate::store::{Kind, Series, Store};

mod config;
pub use config::{FilterPatterns, load_patterns};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `reaction`.
    #[serde(default)]
    pub name: Option<String>,
    /// reaction's log file (its stderr redirected to a file).
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Read reaction's log from journald instead of a file.
    #[serde(default)]
    pub journal: Option<JournalInput>,
    /// reaction's config (YAML, JSON, jsonnet, or a v2 directory of them), to learn
    /// which pattern names each filter uses. Read once at start, only when
    /// `pattern_labels` is set.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Pattern names (e.g. `ip`) whose values become labels. Empty by default:
    /// IPs as labels are unbounded cardinality, so this is opt-in.
    #[serde(default)]
    pub pattern_labels: Vec<String>,
    /// reaction's binary. When it runs, `reaction test-config -c <config>` gives the
    /// fully evaluated config; otherwise rme reads `config` itself (.jsonnet needs
    /// the `jsonnet` command). Default: `reaction` from PATH.
    #[serde(default)]
    pub reaction: Option<PathBuf>,
}

impl ReactionConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.config.iter_mut())
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_some() && self.journal.is_some() {
            return Err(Invalid::new(key, "set `log` or `journal`, not both"));
        }
        if !self.pattern_labels.is_empty() && self.config.is_none() {
            return Err(Invalid::new(
                format!("{key}.pattern_labels"),
                "needs `config` (reaction's config names the pattern of each match value)",
            ));
        }
        if let Some(bad) = self
            .pattern_labels
            .iter()
            .find(|p| RESERVED.contains(&p.as_str()))
        {
            return Err(Invalid::new(
                format!("{key}.pattern_labels"),
                format!("'{bad}' clashes with a label rme sets itself"),
            ));
        }
        Ok(())
    }
}

pub fn build(config: &ReactionConfig) -> anyhow::Result<Parts> {
    let input = match (&config.log, &config.journal) {
        (Some(p), _) => Some(Input::File(p.clone())),
        (None, Some(j)) => Some(Input::Journal(j.clone())),
        _ => None,
    };
    let patterns = match (&config.config, config.pattern_labels.is_empty()) {
        (Some(path), false) => load_patterns(path, config.reaction.as_deref())?,
        _ => FilterPatterns::default(),
    };
    let parser = ReactionLog::new(patterns, config.pattern_labels.clone());
    Ok((
        input.map(|i| (i, Box::new(parser) as Box<dyn LineParser>)),
        Vec::new(),
    ))
}

pub const MATCHES: &str = "reaction_match_total";
pub const ACTIONS: &str = "reaction_action_total";
pub const ACTION_ERRORS: &str = "reaction_action_errors_total";
pub const COMMANDS: &str = "reaction_commands_total";
pub const COMMAND_ERRORS: &str = "reaction_command_errors_total";
pub const STREAM_EVENTS: &str = "reaction_stream_events_total";

/// Labels rme sets itself; a pattern may not take their name.
const RESERVED: &[&str] = &["stream", "filter", "action", "moment", "event", "source"];

/// Recent matches kept per filter to label the `run` lines that follow them.
const RECENT_MATCHES: usize = 64;

/// Optional v1 date, then the level word (v1 pads it, v2 does not), then the message.
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(DEBUG|INFO|WARN|ERROR|FATAL) +(.*)$")
        .expect("static regex")
});

/// (pattern name, value) pairs of one match, the ones opted in as labels.
type PatternValues = Vec<(String, String)>;

/// Parses reaction log lines (v1 Go and v2 Rust formats).
///
/// Counts every `match` and `run` line. v1 logs `INFO … run [cmd]` before running
/// an action and, if it fails, `ERROR … run [cmd], code …` after: the first is
/// counted in `reaction_action_total`, the second in `reaction_action_errors_total`
/// (likewise for start/stop commands).
///
/// Pattern labels (opt-in): a match's values are zipped with its filter's pattern
/// names, sorted alphabetically (reaction-metrics-exporter's convention). A run
/// line names no value, and runs are concurrent or delayed (`after: 48h`), so "the
/// previous match" would often be wrong: instead the newest of the filter's last
/// 64 matches whose values all appear, as whole words, in the command gives the
/// labels; with none, the run is counted without pattern labels.
#[derive(Debug, Default)]
pub struct ReactionLog {
    patterns: FilterPatterns,
    pattern_labels: Vec<String>,
    recent: HashMap<(String, String), VecDeque<PatternValues>>,
}

impl ReactionLog {
    pub fn new(patterns: FilterPatterns, pattern_labels: Vec<String>) -> ReactionLog {
        ReactionLog {
            patterns,
            pattern_labels,
            recent: HashMap::new(),
        }
    }

    fn on_match(&mut self, stream: &str, filter: &str, params: &str, store: &mut Store) {
        let labelled = self.match_labels(stream, filter, params);
        let mut labels = vec![("stream", stream), ("filter", filter)];
        labels.extend(labelled.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        store.inc(Series::new(MATCHES, &labels), 1);
        if !labelled.is_empty() {
            let recent = self
                .recent
                .entry((stream.to_string(), filter.to_string()))
                .or_default();
            if recent.len() == RECENT_MATCHES {
                recent.pop_front();
            }
            recent.push_back(labelled);
        }
    }

    /// The opted-in (pattern, value) pairs of a match, or none if they cannot be named.
    fn match_labels(&self, stream: &str, filter: &str, params: &str) -> Vec<(String, String)> {
        if self.pattern_labels.is_empty() {
            return Vec::new();
        }
        let Some(names) = self.patterns.get(stream, filter) else {
            return Vec::new();
        };
        let values = match_values(params);
        if values.len() != names.len() {
            return Vec::new();
        }
        names
            .iter()
            .zip(values)
            .filter(|(n, _)| self.pattern_labels.contains(n))
            .map(|(n, v)| (n.clone(), v))
            .collect()
    }

    fn on_run(&self, names: [&str; 3], command: &str, failed: bool, store: &mut Store) {
        let [stream, filter, action] = names;
        let key = (stream.to_string(), filter.to_string());
        let labelled = self.recent.get(&key).and_then(|recent| {
            recent
                .iter()
                .rev()
                .find(|pairs| pairs.iter().all(|(_, v)| contains_word(command, v)))
        });
        let mut labels = vec![("stream", stream), ("filter", filter), ("action", action)];
        labels.extend(
            labelled
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let name = if failed { ACTION_ERRORS } else { ACTIONS };
        store.inc(Series::new(name, &labels), 1);
    }

    fn message(&mut self, level: &str, msg: &str, store: &mut Store) {
        let failed = level == "ERROR";
        for moment in ["start", "stop"] {
            if msg
                .strip_prefix(moment)
                .is_some_and(|m| m.starts_with(" command: run "))
            {
                let name = if failed { COMMAND_ERRORS } else { COMMANDS };
                store.inc(Series::new(name, &[("moment", moment)]), 1);
                return;
            }
        }
        if let Some((head, verb, rest)) = split_event(msg) {
            let parts: Vec<&str> = head.split('.').collect();
            match (verb, parts.as_slice()) {
                ("match", [stream, filter]) if !stream.is_empty() && !filter.is_empty() => {
                    self.on_match(stream, filter, rest, store)
                }
                ("run", [s, f, a]) if [s, f, a].iter().all(|p| !p.is_empty()) => {
                    self.on_run([s, f, a], rest, failed, store)
                }
                _ => {}
            }
            return;
        }
        if let Some((stream, event)) = stream_event(msg) {
            store.inc(
                Series::new(STREAM_EVENTS, &[("stream", stream), ("event", event)]),
                1,
            );
        }
    }
}

/// `<head>: match <rest>` or `<head>: run <rest>`, whichever marker comes first.
fn split_event(msg: &str) -> Option<(&str, &'static str, &str)> {
    let m = msg.find(": match ").map(|i| (i, "match"));
    let r = msg.find(": run ").map(|i| (i, "run"));
    let (i, verb) = match (m, r) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let head = &msg[..i];
    (!head.contains(' ')).then(|| (head, verb, &msg[i + verb.len() + 3..]))
}

/// The first word of `s` (up to a space or colon), if any.
fn first_word(s: &str) -> Option<&str> {
    s.split([' ', ':']).next().filter(|w| !w.is_empty())
}

/// Stream lifecycle lines, v1 and v2 (reaction-metrics-exporter's event names).
fn stream_event(msg: &str) -> Option<(&str, &'static str)> {
    if let Some(rest) = msg.strip_prefix("could not execute stream ") {
        return Some((first_word(rest)?, "exec"));
    }
    if let Some(rest) = msg.strip_prefix("impossible to read output from stream ") {
        return Some((first_word(rest)?, "read"));
    }
    if let Some(rest) = msg.strip_prefix("child process of stream ") {
        return Some((first_word(rest)?, "timeout"));
    }
    if let Some(rest) = msg.strip_prefix("stream ") {
        let (stream, tail) = rest.split_once(' ')?;
        return tail.starts_with("exited").then_some((stream, "exit"));
    }
    if let Some(stream) = msg.strip_suffix(" stream finished") {
        return (!stream.contains(' ')).then_some((stream, "exit"));
    }
    let (stream, rest) = msg.split_once(": start ")?;
    (!stream.contains([' ', '.']) && !rest.is_empty()).then_some((stream, "start"))
}

/// Values of a match: v1 `[value]` (one value, `.` when the filter has no
/// pattern), v2 `["a", "b"]` (a Rust debug list: `\"` and `\\` escaped).
fn match_values(params: &str) -> Vec<String> {
    let params = params.trim_end();
    let Some(inner) = params.strip_prefix('[').and_then(|p| p.strip_suffix(']')) else {
        return Vec::new();
    };
    if !inner.starts_with('"') {
        return if inner == "." {
            Vec::new()
        } else {
            vec![inner.to_string()]
        };
    }
    let mut values = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Vec::new(),
                Some('"') => break,
                Some('\\') => value.push(chars.next().unwrap_or('\\')),
                Some(c) => value.push(c),
            }
        }
        values.push(value);
    }
    values
}

/// `needle` occurs in `hay` with no word character or `.`/`:` glued to either side
/// (so 1.2.3.4 is not found in 11.2.3.45).
fn contains_word(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let glued =
        |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | ':' | '_'));
    hay.match_indices(needle).any(|(i, _)| {
        !glued(hay[..i].chars().next_back()) && !glued(hay[i + needle.len()..].chars().next())
    })
}

impl LineParser for ReactionLog {
    fn source(&self) -> &'static str {
        "reaction"
    }

    fn describe(&self, store: &mut Store) {
        use Kind::Counter;
        store.describe(
            MATCHES,
            Counter,
            "Lines a reaction filter matched, by stream and filter.",
        );
        store.describe(
            ACTIONS,
            Counter,
            "Actions reaction ran, by stream, filter and action.",
        );
        store.describe(
            ACTION_ERRORS,
            Counter,
            "Action runs that failed, by stream, filter and action.",
        );
        store.describe(
            COMMANDS,
            Counter,
            "Start and stop commands reaction ran, by moment.",
        );
        store.describe(
            COMMAND_ERRORS,
            Counter,
            "Start and stop commands that failed, by moment.",
        );
        store.describe(
            STREAM_EVENTS,
            Counter,
            "Stream starts, exits and errors, by stream and event.",
        );
    }

    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed> {
        let caps = LINE.captures(line).ok_or(Unparsed { parser: "reaction" })?;
        let (level, msg) = (
            caps.get(1).map_or("", |m| m.as_str()),
            caps.get(2).map_or("", |m| m.as_str()),
        );
        self.message(level, msg, store);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::LINES_UNPARSED;
    use crate::sources::golden::{check, feed_all, render, samples, testdata};

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
                MATCHES,
                &[("stream", "ssh"), ("filter", "failedlogin")],
            ),
            (
                "2024/04/28 12:00:01 INFO  ssh.failedlogin: match [.]",
                MATCHES,
                &[("stream", "ssh"), ("filter", "failedlogin")],
            ),
            (
                "2024/04/28 12:00:01 INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 203.0.113.9 -j DROP]",
                ACTIONS,
                &[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "ban"),
                ],
            ),
            (
                "2024/04/28 12:00:01 ERROR ssh.failedlogin.ban: run [ip46tables -w -A reaction -s 203.0.113.9 -j DROP], code exit status 1",
                ACTION_ERRORS,
                &[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "ban"),
                ],
            ),
            (
                "2024/04/28 12:00:00 INFO  start command: run [ip46tables -w -N reaction]",
                COMMANDS,
                &[("moment", "start")],
            ),
            (
                "2024/04/28 12:00:00 ERROR stop command: run [ip46tables -w -X reaction]: exit status 1",
                COMMAND_ERRORS,
                &[("moment", "stop")],
            ),
            (
                "2024/04/28 12:00:01 INFO  ssh: start [journalctl -fn0 -u sshd.service]",
                STREAM_EVENTS,
                &[("stream", "ssh"), ("event", "start")],
            ),
            (
                "2024/04/28 12:00:01 ERROR ssh stream finished",
                STREAM_EVENTS,
                &[("stream", "ssh"), ("event", "exit")],
            ),
            // v2 (Rust), shapes from reaction-metrics-exporter's regexes
            (
                "INFO ssh.failedlogin: match [\"203.0.113.9\"]",
                MATCHES,
                &[("stream", "ssh"), ("filter", "failedlogin")],
            ),
            (
                "INFO ssh.failedlogin.ban: run [\"nft\" \"add\" \"element\" \"inet\" \"reaction\" \"bans\" \"{ 203.0.113.9 }\"]",
                ACTIONS,
                &[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "ban"),
                ],
            ),
            (
                "ERROR stop command: run [\"nft\" \"delete\" \"table\" \"inet\" \"reaction\"]: exit code: 1",
                COMMAND_ERRORS,
                &[("moment", "stop")],
            ),
            (
                "INFO start command: run [\"nft\" \"-f\" \"/etc/nft.conf\"]",
                COMMANDS,
                &[("moment", "start")],
            ),
            (
                "ERROR could not execute stream ssh cmd: No such file",
                STREAM_EVENTS,
                &[("stream", "ssh"), ("event", "exec")],
            ),
            (
                "ERROR stream web exited: exit status: 1",
                STREAM_EVENTS,
                &[("stream", "web"), ("event", "exit")],
            ),
            (
                "ERROR child process of stream ssh did not terminate",
                STREAM_EVENTS,
                &[("stream", "ssh"), ("event", "timeout")],
            ),
            (
                "ERROR impossible to read output from stream ssh: broken pipe",
                STREAM_EVENTS,
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
                MATCHES,
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
            value(&store, ACTIONS, &l)
        };
        // The run names 203.0.113.9: the older match is found, not the latest one.
        assert_eq!(a(&[("ip", "203.0.113.9")]), 1);
        // No recent match appears in this command: counted without pattern labels.
        assert_eq!(a(&[]), 1);
        assert_eq!(
            value(
                &store,
                MATCHES,
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
        assert_eq!(value(&store, MATCHES, &labels), 1);

        let mut none = ReactionLog::new(multi_pattern(), Vec::new());
        let store = feed_all(&mut none, log, false);
        assert_eq!(
            value(
                &store,
                MATCHES,
                &[("stream", "ssh"), ("filter", "failedlogin")]
            ),
            2
        );
    }

    #[test]
    fn config_pattern_names() {
        let p = multi_pattern();
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
        let p =
            load_patterns(&dir, Some(Path::new("/nonexistent/reaction"))).expect("v2 directory");
        let ip = Some(&["ip".to_string()][..]);
        assert_eq!(p.get("ssh", "dropbear_failed"), ip);
        assert!(p.len() >= 2, "{p:?}");
        let merged = config::read_config(&dir).expect("v2 directory");
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
                    config::read_config(&entry.path()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
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
            store.sum(LINES_UNPARSED, &[]) >= 1990,
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
        assert_eq!(store.sum(MATCHES, &[]), count(": match [", " INFO "));
        assert_eq!(
            store.sum(ACTIONS, &[]),
            count(": run [", " INFO  ") - count("command: run", " INFO  ")
        );
        assert_eq!(
            store.sum(ACTION_ERRORS, &[]),
            count(": run [", " ERROR ") - count("command: run", " ERROR ")
        );
        assert_eq!(store.sum(COMMANDS, &[]), count("command: run", " INFO  "));
        assert_eq!(store.sum(LINES_UNPARSED, &[]), 0);
        check(
            &testdata("reaction/example-log.golden"),
            &render(&mut store, "reaction_"),
        );
    }
}
