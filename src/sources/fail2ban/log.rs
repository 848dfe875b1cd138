//! fail2ban's log lines.
//!
//! The log comes in several shapes (0.8 without PID, 0.9–1.1 padded, syslog and
//! journal headers, `padding=0`), so a line is recognised by its
//! `fail2ban.<logger>[pid]: LEVEL` part, and the event is read from the
//! message. That part counts only where fail2ban's own text starts: at the
//! line's start (after fail2ban's own time, if any), or as the program tag
//! after a syslog or `journalctl` header (time and host), never inside another
//! program's message, which may quote what a remote client sent (a postfix or
//! dovecot line in a shared syslog file). The tricky point is telling new activity from echoes: the
//! observer repeats filter `Found` lines (`Found …, bad`), a restart restores
//! bans (`Restore Ban`) and a stopping jail unbans everything it holds.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use memchr::memmem;

use crate::inputs::journal::Entry;

use crate::sources::memo::{Hasher, MAX_MEMO};
use crate::sources::{LineCounts, LineParser, Unparsed, scan};
use crate::store::{Handle, Metric, Store};

pub const FAILURES: Metric = Metric::counter(
    "fail2ban_failures_total",
    "Failures found by a jail's filter (`Found`).",
);
pub const BANS: Metric = Metric::counter(
    "fail2ban_bans_total",
    "New bans by jail (`Ban`, not restored ones).",
);
pub const BAN_RESTORES: Metric = Metric::counter(
    "fail2ban_ban_restores_total",
    "Bans restored from the database at start (`Restore Ban`).",
);
pub const UNBANS: Metric = Metric::counter(
    "fail2ban_unbans_total",
    "Unbans by jail; cause=flush when the jail stops or is flushed, else expiry.",
);
pub const BAN_INCREASES: Metric = Metric::counter(
    "fail2ban_ban_increases_total",
    "Ban times increased for repeat offenders (`Increase Ban`).",
);
pub const ALREADY_BANNED: Metric = Metric::counter(
    "fail2ban_already_banned_total",
    "Bans asked for ids already banned.",
);
pub const ERRORS: Metric = Metric::counter(
    "fail2ban_errors_total",
    "ERROR and CRITICAL records by fail2ban logger.",
);

/// Every metric this module emits, for `describe`.
pub const METRICS: &[Metric] = &[
    FAILURES,
    BANS,
    BAN_RESTORES,
    UNBANS,
    BAN_INCREASES,
    ALREADY_BANNED,
    ERRORS,
];

/// The literal every record or tagged line holds, searched with memchr's
/// SIMD substring finder before anything else is looked at.
static FAIL2BAN: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("fail2ban"));

/// Lines a multi-line record may add before we stop believing it.
const MAX_CONTINUATION: u32 = 500;

/// A record's (logger, level, message).
pub(super) type Record<'a> = (&'a str, &'a str, &'a str);

/// The levels fail2ban logs with, its own (`MSG`, `TRACE`, `HEAVY`) included.
fn is_level(level: &str) -> bool {
    matches!(
        level,
        "CRITICAL" | "ERROR" | "WARNING" | "NOTICE" | "INFO" | "DEBUG" | "MSG" | "TRACE" | "HEAVY"
    )
}

/// What a line of fail2ban's holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found<'a> {
    /// `fail2ban.<logger>[<pid>]: <LEVEL> <message>`.
    Record(Record<'a>),
    /// A message after a `fail2ban[pid]:` / `fail2ban-server:` tag, without logger or level.
    Tagged(&'a str),
}

/// The record or tagged message of a line, where fail2ban writes it:
/// - at the start, after fail2ban's own `YYYY-MM-DD HH:MM:SS,mmm` if present
///   (its log file, `STDOUT`, `SYSOUT`, `datetime=off`);
/// - as the tag after a syslog or `journalctl` header (`logtarget = SYSLOG`:
///   `… host fail2ban.actions[812]: NOTICE …`);
/// - after a `fail2ban-server[pid]:` or `fail2ban[pid]:` tag there (journalctl's
///   text of `SYSOUT` or `SYSTEMD-JOURNAL`), as a record (with fail2ban's time
///   if present) or else a bare message.
///
/// A hand-written scan: this is the hot path and a capturing regex search made
/// it several times slower.
pub(super) fn find(line: &str) -> Option<Found<'_>> {
    FAIL2BAN.find(line.as_bytes())?;
    let line = scan::trim_ws_start(line);
    if let Some(r) = record_here(skip_own_time(line)) {
        return Some(Found::Record(r));
    }
    let tag = after_syslog_header(line)?;
    if let Some(r) = record_here(tag) {
        return Some(Found::Record(r));
    }
    let msg = after_fail2ban_tag(tag)?;
    Some(match record_here(skip_own_time(msg)) {
        Some(r) => Found::Record(r),
        None => Found::Tagged(msg),
    })
}

/// The record of a line (see [`find`]); spaces around `[pid]` and the PID
/// itself are optional. Returns (logger, level, message).
#[cfg(test)]
pub(super) fn record(line: &str) -> Option<Record<'_>> {
    match find(line)? {
        Found::Record(r) => Some(r),
        Found::Tagged(_) => None,
    }
}

/// `s` past fail2ban's own time (`2026-11-22 23:13:44,109 `), if it starts with one.
fn skip_own_time(s: &str) -> &str {
    let b = s.as_bytes();
    let own = b.len() > 24
        && is_date(&b[..10])
        && b[10] == b' '
        && is_hms(&b[11..19])
        && b[19] == b','
        && b[20..23].iter().all(u8::is_ascii_digit)
        && scan::ascii_ws(b[23]);
    if own {
        scan::trim_ws_start(&s[24..])
    } else {
        s
    }
}

/// `YYYY-MM-DD`.
fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// `HH:MM:SS`.
fn is_hms(b: &[u8]) -> bool {
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

/// The text after a syslog or `journalctl` header, `<time> <host> `, i.e. where
/// the program tag starts. The time is one of: `2026-12-07T10:00:00.000000+00:00`
/// (RFC 3339, `journalctl -o short-iso`), `Dec  7 10:00:00[.123456]` (RFC 3164,
/// `journalctl -o short`/`short-precise`), `Mon 2026-12-07 10:00:00 UTC`
/// (`short-full`), `1764600000.123456` (`short-unix`). The host is one word.
fn after_syslog_header(line: &str) -> Option<&str> {
    let mut words = Words(line);
    let first = words.next()?;
    let host = if is_iso_time(first) || is_unix_time(first) {
        words.next()?
    } else if is_month(first) {
        let day = words.next()?;
        let time = words.next()?;
        let day_ok = (1..=2).contains(&day.len()) && day.bytes().all(|b| b.is_ascii_digit());
        (day_ok && is_hms_frac(time)).then_some(())?;
        words.next()?
    } else if is_weekday(first) {
        let date = words.next()?;
        let time = words.next()?;
        let _zone = words.next()?;
        (is_date(date.as_bytes()) && is_hms_frac(time)).then_some(())?;
        words.next()?
    } else {
        return None;
    };
    // A host is a name or an address, never a tag (`sshd[1]:`) or a word of text.
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        .then_some(())?;
    (!host.ends_with(':')).then_some(())?;
    Some(words.0)
}

/// Whitespace-separated words, the rest kept in `.0` (leading whitespace trimmed).
struct Words<'a>(&'a str);

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = scan::trim_ws_start(self.0);
        if s.is_empty() {
            return None;
        }
        let end = scan::find_ws(s).unwrap_or(s.len());
        self.0 = scan::trim_ws_start(&s[end..]);
        Some(&s[..end])
    }
}

fn is_month(w: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.contains(&w)
}

fn is_weekday(w: &str) -> bool {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&w)
}

/// `HH:MM:SS` with an optional `.fraction`.
fn is_hms_frac(t: &str) -> bool {
    let (hms, frac) = t.as_bytes().split_at(t.len().min(8));
    is_hms(hms)
        && (frac.is_empty()
            || frac
                .strip_prefix(b".")
                .is_some_and(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit)))
}

/// `2026-12-07T10:00:00[.frac][Z|±hh:mm|±hhmm]`.
fn is_iso_time(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 19
        && is_date(&b[..10])
        && b[10] == b'T'
        && is_hms(&b[11..19])
        && b[19..]
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-' | b':' | b'Z'))
}

/// `1764600000.123456` (`journalctl -o short-unix`).
fn is_unix_time(w: &str) -> bool {
    w.split_once('.').is_some_and(|(s, f)| {
        !s.is_empty()
            && !f.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && f.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `s` past `fail2ban.` and the rest of a record there.
fn record_here(s: &str) -> Option<Record<'_>> {
    record_at(s.strip_prefix("fail2ban.")?)
}

/// The message after a `fail2ban[<pid>]: ` / `fail2ban-server: ` tag at the start of `s`.
fn after_fail2ban_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("fail2ban")?;
    let rest = rest.strip_prefix("-server").unwrap_or(rest);
    let rest = match rest.strip_prefix('[') {
        Some(pid) => {
            pid.split_once(']')
                .filter(|(p, _)| p.bytes().all(|b| b.is_ascii_digit()))?
                .1
        }
        None => rest,
    };
    Some(scan::trim_ws_start(rest.strip_prefix(": ")?))
}

/// The level a journal `PRIORITY` stands for where it matters: python-systemd's
/// `JournalHandler` maps CRITICAL to 2 (crit) and ERROR to 3 (err); NOTICE,
/// fail2ban's own level between INFO and WARNING, becomes 4 (warning) like WARNING.
fn priority_level(priority: Option<u8>) -> &'static str {
    match priority {
        Some(0..=2) => "CRITICAL",
        Some(3) => "ERROR",
        _ => "",
    }
}

/// A syslog line of `logtarget = SYSTEMD-JOURNAL` (or `SYSLOG` with no logger name):
/// `… host fail2ban[<pid>]: <message>` or `… host fail2ban-server: <message>`. There is no
/// level, so such lines never count as errors.
#[cfg(test)]
pub(super) fn tagged_message(line: &str) -> Option<&str> {
    match find(line)? {
        Found::Tagged(msg) => Some(msg),
        Found::Record(_) => None,
    }
}

/// The part after `fail2ban.`: `<logger>\s*([pid])?\s*:\s+<LEVEL>(\s+<message>)?`.
fn record_at(s: &str) -> Option<Record<'_>> {
    let word_end = |s: &str, ok: fn(u8) -> bool| s.bytes().position(|b| !ok(b)).unwrap_or(s.len());
    let n = word_end(s, |b| b.is_ascii_alphanumeric() || b == b'_');
    let (logger, mut rest) = s.split_at(n);
    if logger.is_empty() {
        return None;
    }
    rest = scan::trim_ws_start(rest);
    if let Some(pid) = rest.strip_prefix('[') {
        let n = word_end(pid, |b| b.is_ascii_digit());
        rest = scan::trim_ws_start(pid[n..].strip_prefix(']').filter(|_| n > 0)?);
    }
    let rest = rest.strip_prefix(':')?;
    let after = scan::trim_ws_start(rest);
    if after.len() == rest.len() {
        return None;
    }
    // Python prints `Level 5` for a level without a name.
    let n = match after.strip_prefix("Level ") {
        Some(num) => "Level ".len() + word_end(num, |b| b.is_ascii_digit()),
        None => word_end(after, |b| b.is_ascii_uppercase()),
    };
    let (level, msg) = after.split_at(n);
    let unnamed = level.len() > "Level ".len() && level.starts_with("Level ");
    if !(unnamed || is_level(level)) {
        return None;
    }
    let trimmed = scan::trim_ws_start(msg);
    if trimmed.len() == msg.len() && !msg.is_empty() {
        return None;
    }
    Some((logger, level, trimmed))
}

/// Parses fail2ban.log lines.
///
/// Multi-line records: fail2ban writes tracebacks and multi-line exception texts
/// after an ERROR or CRITICAL record, as lines without any prefix. Such a line is
/// accepted (and ignored) only while such a record is open: right after it or
/// after its other continuation lines, at most `MAX_CONTINUATION` of them, and
/// only if it is printable text (no control character, no U+FFFD left by invalid
/// UTF-8). Anything else that is not a record is unparsed and closes the record.
/// Blank lines are accepted and ignored.
#[derive(Debug, Default)]
pub struct Fail2banLog {
    /// Continuation lines seen since the last ERROR/CRITICAL record, if one is open.
    open_record: Option<u32>,
    /// Jails that logged `Flush ticket(s)` and have not started or banned since:
    /// their unbans are the jail letting go, not bans expiring.
    flushing: HashSet<String, Hasher>,
    /// The server logged `Stopping all jails` / `Shutdown in progress` (a stop
    /// without flushable actions logs no `Flush` line).
    stopping: bool,
    /// Each jail's handles, resolved at its first event of each kind, found
    /// by one lookup of its name in `jail_index`.
    jails: Vec<JailHandles>,
    jail_index: HashMap<Box<str>, usize, Hasher>,
    /// `fail2ban_errors_total` per logger: the `logger` label and its handle.
    errors: HashMap<String, (String, Handle), Hasher>,
    counts: LineCounts,
    /// Add the event's id as an `ip` label (`ip_label`).
    ip_label: bool,
}

/// The series one jail's events go to.
#[derive(Debug, Default)]
struct JailHandles {
    failures: Handle,
    bans: Handle,
    restores: Handle,
    increases: Handle,
    already: Handle,
    unban_flush: Handle,
    unban_expiry: Handle,
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
        // The observer's repeats: `Found <id>, bad - <time>, …` (looked for at
        // each comma: a plain `Found` line has none).
        let b = rest.as_bytes();
        if memchr::memchr_iter(b',', b).any(|i| b[i..].starts_with(b", bad - ")) {
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

/// The id an event names: the word after `Found `, `Ban `, `Unban ` or `Increase Ban `.
fn event_id(rest: &str) -> &str {
    ["Found ", "Ban ", "Unban ", "Increase Ban "]
        .iter()
        .find_map(|p| rest.strip_prefix(p))
        .and_then(|id| id.split_whitespace().next())
        .unwrap_or("")
}

/// `[jail] rest` → (jail, rest). Jail names hold anything but `]`.
fn split_jail(msg: &str) -> Option<(&str, &str)> {
    let inner = msg.strip_prefix('[')?;
    let end = memchr::memchr(b']', inner.as_bytes())?;
    let (jail, rest) = (&inner[..end], inner[end + 1..].strip_prefix(' ')?);
    (!jail.is_empty() && memchr::memchr(b'[', jail.as_bytes()).is_none()).then_some((jail, rest))
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
    /// A parser that labels events with the id they name when `ip_label` is set.
    pub fn new(ip_label: bool) -> Fail2banLog {
        Fail2banLog {
            ip_label,
            ..Fail2banLog::default()
        }
    }

    fn record(&mut self, logger: &str, level: &str, msg: &str, store: &mut Store) {
        let multi_line = matches!(level, "ERROR" | "CRITICAL");
        self.open_record = multi_line.then_some(0);
        if multi_line {
            if self.errors.len() >= MAX_MEMO && !self.errors.contains_key(logger) {
                self.errors.clear();
            }
            let (label, h) = match self.errors.get_mut(logger) {
                Some(e) => e,
                None => self
                    .errors
                    .entry(logger.to_string())
                    .or_insert_with(|| (format!("fail2ban.{logger}"), Handle::default())),
            };
            store.inc_at(h, ERRORS.name, &[("logger", label)], 1);
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
        let event = jail_event(rest);
        // with `ip_label`, one series per id: resolved per event, not kept per jail
        let ip = self.ip_label.then(|| event_id(rest));
        match event {
            JailEvent::Found if logger == "observer" => {}
            JailEvent::ObserverFound | JailEvent::Other => {}
            JailEvent::Flush => {
                self.flushing.insert(jail.to_string());
                return;
            }
            JailEvent::Unban => {
                let flush = self.stopping || self.flushing.contains(jail);
                let h = self.handles(jail);
                let (h, cause) = if flush {
                    (&mut h.unban_flush, "flush")
                } else {
                    (&mut h.unban_expiry, "expiry")
                };
                match ip {
                    Some(ip) => {
                        let labels = [("jail", jail), ("cause", cause), ("ip", ip)];
                        store.inc_at(&mut Handle::default(), UNBANS.name, &labels, 1);
                    }
                    None => store.inc_at(h, UNBANS.name, &[("jail", jail), ("cause", cause)], 1),
                }
                return;
            }
            _ => {
                let h = self.handles(jail);
                let (h, name) = match event {
                    JailEvent::Found => (&mut h.failures, FAILURES.name),
                    JailEvent::Ban => (&mut h.bans, BANS.name),
                    JailEvent::RestoreBan => (&mut h.restores, BAN_RESTORES.name),
                    JailEvent::IncreaseBan => (&mut h.increases, BAN_INCREASES.name),
                    _ => (&mut h.already, ALREADY_BANNED.name),
                };
                let labelled = matches!(
                    event,
                    JailEvent::Found | JailEvent::Ban | JailEvent::IncreaseBan
                );
                match ip.filter(|_| labelled) {
                    Some(ip) => {
                        let labels = [("jail", jail), ("ip", ip)];
                        store.inc_at(&mut Handle::default(), name, &labels, 1);
                    }
                    None => store.inc_at(h, name, &[("jail", jail)], 1),
                }
            }
        }
        if !self.flushing.is_empty() {
            self.flushing.remove(jail);
        }
    }

    /// The handles of a jail's series (allocates only for a jail not seen yet).
    fn handles(&mut self, jail: &str) -> &mut JailHandles {
        let i = match self.jail_index.get(jail) {
            Some(&i) => i,
            None => {
                if self.jails.len() >= MAX_MEMO {
                    self.jails.clear();
                    self.jail_index.clear();
                }
                self.jails.push(JailHandles::default());
                self.jail_index.insert(jail.into(), self.jails.len() - 1);
                self.jails.len() - 1
            }
        };
        &mut self.jails[i]
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

    fn line_counts(&mut self) -> &mut LineCounts {
        &mut self.counts
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed> {
        if scan::trim_ws_start(line).is_empty() {
            return Ok(());
        }
        match find(line) {
            Some(Found::Record((logger, level, msg))) => self.record(logger, level, msg, store),
            Some(Found::Tagged(msg)) => self.record("", "", msg, store),
            None => return self.continuation(line),
        }
        Ok(())
    }

    /// An entry of `logtarget = SYSTEMD-JOURNAL`: python-systemd's `JournalHandler`
    /// sets no format, so `MESSAGE` is the bare message (`[sshd] Ban 1.2.3.4`, a
    /// traceback on lines of its own inside it) and the logger and level are in
    /// `LOGGER` (`fail2ban.actions`) and `PRIORITY`. An entry without `LOGGER`
    /// (fail2ban's stderr caught by journald) is a log line like any other.
    fn parse_entry(&mut self, entry: &Entry, store: &mut Store) -> Result<(), Unparsed> {
        let logger = entry.logger.as_deref().and_then(|l| {
            l.strip_prefix("fail2ban.")
                .or_else(|| (l == "fail2ban").then_some(""))
        });
        let Some(logger) = logger else {
            return self.parse(&entry.message, store);
        };
        let msg = entry.message.lines().next().unwrap_or("");
        self.record(logger, priority_level(entry.priority), msg, store);
        // The entry holds its whole record: no later line continues it.
        self.open_record = None;
        Ok(())
    }
}
