//! reaction's log lines.
//!
//! Reads v1 (Go: `2024/04/28 12:00:01 INFO  ssh.failedlogin: match [1.2.3.4]`)
//! and v2 (Rust: `INFO ssh.failedlogin: match ["1.2.3.4"]`) lines. The tricky
//! point is that match and run lines carry no shared id: a `run` line gets
//! pattern labels only from a recent match of its filter whose values (those
//! the action's command uses) appear in the command, else from the action's
//! command template in reaction's config (see [`ReactionLog`] and template.rs).

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use memchr::memmem;
use regex::Regex;

use super::FilterPatterns;
use super::template::Template;
use crate::sources::memo::Memo;
use crate::sources::{LineParser, Unparsed};
use crate::store::{Metric, Series, Store};

pub const MATCHES: Metric = Metric::counter(
    "reaction_match_total",
    "Lines a reaction filter matched, by stream and filter.",
);
pub const ACTIONS: Metric = Metric::counter(
    "reaction_action_total",
    "Actions reaction ran, by stream, filter and action.",
);
pub const ACTION_ERRORS: Metric = Metric::counter(
    "reaction_action_errors_total",
    "Action runs that failed, by stream, filter and action.",
);
pub const COMMANDS: Metric = Metric::counter(
    "reaction_commands_total",
    "Start and stop commands reaction ran, by moment.",
);
pub const COMMAND_ERRORS: Metric = Metric::counter(
    "reaction_command_errors_total",
    "Start and stop commands that failed, by moment.",
);
pub const STREAM_EVENTS: Metric = Metric::counter(
    "reaction_stream_events_total",
    "Stream starts, exits and errors, by stream and event.",
);

/// Every metric this module emits, for `describe`.
pub const METRICS: &[Metric] = &[
    MATCHES,
    ACTIONS,
    ACTION_ERRORS,
    COMMANDS,
    COMMAND_ERRORS,
    STREAM_EVENTS,
];

/// Labels rme sets itself; a pattern may not take their name.
pub const RESERVED: &[&str] = &["stream", "filter", "action", "moment", "event", "source"];

/// Recent matches kept per filter to label the `run` lines that follow them.
const RECENT_MATCHES: usize = 64;
/// A match holding a longer value is not kept to label `run` lines (it still
/// counts): addresses and user names are far shorter, and checking a `run`
/// line against up to [`RECENT_MATCHES`] values must not cost more with them.
const MAX_RECENT_VALUE: usize = 1024;
/// A longer `run` command is not read through the action's template (its
/// regex captures cost far more per byte than the rest of the parser).
const MAX_TEMPLATE_COMMAND: usize = 4096;
/// Substring searches of a `run` line's command, at most, for the values
/// holding a character that is not a word character (see [`CommandWords`]).
const MAX_SEARCHES_PER_RUN: usize = 4;

/// Optional v1 date, then the level word (v1 pads it, v2 does not), then the
/// message. What [`header`] reads by hand; the regex itself reads the lines
/// whose first bytes are not ASCII (where `\d` means more than 0-9).
pub(super) static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(DEBUG|INFO|WARN|ERROR|FATAL) +(.*)$")
        .expect("static regex")
});

/// The markers of the two events, searched with memchr's SIMD substring finder.
static MATCH: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(": match "));
static RUN: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(": run "));

/// `YYYY/MM/DD HH:MM:SS ` (v1's date), as the shape of its bytes.
const DATE: &[u8; 20] = b"0000/00/00 00:00:00 ";

/// (level, message) of a line, exactly as [`LINE`] captures them.
pub(super) fn header(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    if b.iter().take(DATE.len()).any(|&c| c >= 0x80) {
        let caps = LINE.captures(line)?;
        return Some((
            caps.get(1).map_or("", |m| m.as_str()),
            caps.get(2).map_or("", |m| m.as_str()),
        ));
    }
    let dated = b.len() >= DATE.len()
        && DATE.iter().zip(b).all(|(&d, &c)| {
            if d == b'0' {
                c.is_ascii_digit()
            } else {
                c == d
            }
        });
    dated
        .then(|| level_and_message(&line[DATE.len()..]))
        .flatten()
        .or_else(|| level_and_message(line))
}

/// `LEVEL +message` (the message has no newline: `.` stops at one).
fn level_and_message(s: &str) -> Option<(&str, &str)> {
    ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
        .into_iter()
        .find_map(|level| {
            let rest = s.strip_prefix(level)?;
            let msg = rest.trim_start_matches(' ');
            (msg.len() < rest.len() && memchr::memchr(b'\n', msg.as_bytes()).is_none())
                .then_some((level, msg))
        })
}

/// (pattern name, value) pairs of one match, all of them.
type PatternValues = Vec<(String, String)>;

/// A recent match kept to label `run` lines: its named values, and for each
/// whether it is made of word characters only ([`glue`]), found once here.
#[derive(Debug)]
struct Kept {
    pairs: PatternValues,
    plain: Vec<bool>,
}

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
/// 64 matches whose values appear, as whole words, in the command gives the
/// labels; with none, the run is counted without pattern labels. The values
/// checked are those of the patterns the action's `cmd` names in reaction's
/// config (a ban uses `<ip>`, not `<user>`: the match still labels it with both;
/// an action using no pattern takes the newest match, as reaction-metrics-exporter
/// does); without that knowledge, every labelled value must appear.
#[derive(Debug, Default)]
pub struct ReactionLog {
    patterns: FilterPatterns,
    pattern_labels: Vec<String>,
    recent: HashMap<(String, String), VecDeque<Kept>>,
    counts: crate::sources::LineCounts,
    /// Command templates of the actions whose `cmd` uses an opted-in pattern.
    templates: HashMap<(String, String, String), Template>,
    /// `reaction_match_total` handles by stream, filter and pattern labels.
    matches: Memo,
}

impl ReactionLog {
    pub fn new(patterns: FilterPatterns, pattern_labels: Vec<String>) -> ReactionLog {
        let templates = patterns
            .commands()
            .filter_map(|(key, cmd)| {
                let names = patterns.get(&key.0, &key.1)?;
                let opted: Vec<String> = names
                    .iter()
                    .filter(|n| pattern_labels.contains(n))
                    .cloned()
                    .collect();
                Some((key.clone(), Template::new(cmd, &opted)?))
            })
            .collect();
        ReactionLog {
            patterns,
            pattern_labels,
            recent: HashMap::new(),
            counts: crate::sources::LineCounts::default(),
            templates,
            matches: Memo::default(),
        }
    }

    fn on_match(&mut self, stream: &str, filter: &str, params: &str, store: &mut Store) {
        let named = self.named_values(stream, filter, params);
        let labelled = self.labelled(&named).count();
        if labelled == 0 {
            // The usual line: one lookup, no allocation.
            let h = self.matches.get(&[stream, filter]);
            store.inc_at(
                h,
                MATCHES.name,
                &[("stream", stream), ("filter", filter)],
                1,
            );
            return;
        }
        let mut labels = vec![("stream", stream), ("filter", filter)];
        labels.extend(self.labelled(&named));
        let parts = labels.iter().flat_map(|&(k, v)| [k, v]);
        let h = self.matches.get_with(parts);
        store.inc_at(h, MATCHES.name, &labels, 1);
        let recent = self
            .recent
            .entry((stream.to_string(), filter.to_string()))
            .or_default();
        if named.iter().any(|(_, v)| v.len() > MAX_RECENT_VALUE) {
            return;
        }
        if recent.len() == RECENT_MATCHES {
            recent.pop_front();
        }
        let plain = named.iter().map(|(_, v)| v.chars().all(glue)).collect();
        recent.push_back(Kept {
            pairs: named,
            plain,
        });
    }

    /// Matches of a filter kept to label its `run` lines.
    #[cfg(test)]
    pub(super) fn recent_len(&self, stream: &str, filter: &str) -> usize {
        self.recent
            .get(&(stream.to_string(), filter.to_string()))
            .map_or(0, VecDeque::len)
    }

    /// The opted-in pairs, as labels.
    fn labelled<'a>(&self, named: &'a PatternValues) -> impl Iterator<Item = (&'a str, &'a str)> {
        named
            .iter()
            .filter(|(n, _)| self.pattern_labels.contains(n))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The (pattern, value) pairs of a match, or none if they cannot be named
    /// (or no pattern is a label).
    fn named_values(&self, stream: &str, filter: &str, params: &str) -> PatternValues {
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
        names.iter().cloned().zip(values).collect()
    }

    fn on_run(&self, names: [&str; 3], command: &str, failed: bool, store: &mut Store) {
        let [stream, filter, action] = names;
        let key = (stream.to_string(), filter.to_string());
        let uses = self.patterns.action(stream, filter, action);
        let checked = |n: &String| match uses {
            Some(uses) => uses.contains(n),
            None => self.pattern_labels.contains(n),
        };
        let found = self
            .recent
            .get(&key)
            .filter(|r| !r.is_empty())
            .and_then(|recent| {
                // The command's words, once per line: checking a recent match
                // then costs the length of its values, not of the command.
                let words = CommandWords::new(command);
                let mut searches = MAX_SEARCHES_PER_RUN;
                recent.iter().rev().find(|kept| {
                    kept.pairs
                        .iter()
                        .zip(&kept.plain)
                        .filter(|((n, _), _)| checked(n))
                        .all(|((_, v), &plain)| words.contains(v, plain, &mut searches))
                })
            });
        // no recent match (a run replayed at start, or long after its match):
        // the action's cmd template names the values
        let from_template = match found {
            Some(_) => None,
            None if command.len() > MAX_TEMPLATE_COMMAND => None,
            None => self
                .templates
                .get(&(key.0, key.1, action.to_string()))
                .and_then(|t| t.values(command)),
        };
        let mut labels = vec![("stream", stream), ("filter", filter), ("action", action)];
        if let Some(kept) = found {
            labels.extend(self.labelled(&kept.pairs));
        }
        labels.extend(
            from_template
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let name = if failed {
            ACTION_ERRORS.name
        } else {
            ACTIONS.name
        };
        store.inc(Series::new(name, &labels), 1);
    }

    fn message(&mut self, level: &str, msg: &str, store: &mut Store) {
        let failed = level == "ERROR";
        for moment in ["start", "stop"] {
            if msg
                .strip_prefix(moment)
                .is_some_and(|m| m.starts_with(" command: run "))
            {
                let name = if failed {
                    COMMAND_ERRORS.name
                } else {
                    COMMANDS.name
                };
                store.inc(Series::new(name, &[("moment", moment)]), 1);
                return;
            }
        }
        if let Some((head, verb, rest)) = split_event(msg) {
            let mut parts = head.split('.');
            let [a, b, c, d] = [(); 4].map(|()| parts.next());
            match (verb, a, b, c, d) {
                ("match", Some(stream), Some(filter), None, _)
                    if !stream.is_empty() && !filter.is_empty() =>
                {
                    self.on_match(stream, filter, rest, store)
                }
                ("run", Some(s), Some(f), Some(a), None)
                    if [s, f, a].iter().all(|p| !p.is_empty()) =>
                {
                    self.on_run([s, f, a], rest, failed, store)
                }
                _ => {}
            }
            return;
        }
        if let Some((stream, event)) = stream_event(msg) {
            store.inc(
                Series::new(STREAM_EVENTS.name, &[("stream", stream), ("event", event)]),
                1,
            );
        }
    }
}

/// `<head>: match <rest>` or `<head>: run <rest>`, whichever marker comes first.
fn split_event(msg: &str) -> Option<(&str, &'static str, &str)> {
    let m = MATCH.find(msg.as_bytes()).map(|i| (i, "match"));
    let r = RUN.find(msg.as_bytes()).map(|i| (i, "run"));
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
pub(super) fn match_values(params: &str) -> Vec<String> {
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
pub(super) fn contains_word(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let glued = |c: Option<char>| c.is_some_and(glue);
    memmem::find_iter(hay.as_bytes(), needle.as_bytes()).any(|i| {
        // A match of valid UTF-8 in valid UTF-8 starts and ends at char boundaries.
        !glued(hay[..i].chars().next_back()) && !glued(hay[i + needle.len()..].chars().next())
    })
}

/// A character [`contains_word`] does not let stand next to a found value.
fn glue(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | ':' | '_')
}

/// The maximal runs of [`glue`] characters of `s`.
fn runs(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !glue(c)).filter(|r| !r.is_empty())
}

/// A `run` line's command, indexed by its runs of word characters, so that
/// many values are checked against it without searching it for each (F8 of
/// security-review-3: 64 values of 100 KB against 300 commands of 100 KB
/// cost 150× the same bytes as match lines).
///
/// A value found by [`contains_word`] has no word character on either side,
/// so each of its runs is a whole run of the command: a value of word
/// characters only is found exactly when it is one of the command's runs;
/// another one is searched for only when all its runs are there, at most
/// [`MAX_SEARCHES_PER_RUN`] times per command (after that, not found).
pub(super) struct CommandWords<'a> {
    command: &'a str,
    runs: std::collections::HashSet<&'a str, foldhash::fast::RandomState>,
}

impl<'a> CommandWords<'a> {
    pub(super) fn new(command: &'a str) -> CommandWords<'a> {
        CommandWords {
            command,
            runs: runs(command).collect(),
        }
    }

    /// [`contains_word`]`(command, value)`, within the search budget; `plain`
    /// says that `value` is made of [`glue`] characters only.
    pub(super) fn contains(&self, value: &str, plain: bool, searches: &mut usize) -> bool {
        if plain {
            return !value.is_empty() && self.runs.contains(value);
        }
        if value.is_empty() || !runs(value).all(|r| self.runs.contains(r)) {
            return false;
        }
        if *searches == 0 {
            return false;
        }
        *searches -= 1;
        contains_word(self.command, value)
    }
}

impl LineParser for ReactionLog {
    fn source(&self) -> &'static str {
        "reaction"
    }

    fn line_counts(&mut self) -> &mut crate::sources::LineCounts {
        &mut self.counts
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed> {
        let (level, msg) = header(line).ok_or(Unparsed { parser: "reaction" })?;
        self.message(level, msg, store);
        Ok(())
    }
}
