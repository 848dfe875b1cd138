//! The programs rme reads: one module each.
//!
//! A source has up to two parts: a [`LineParser`] fed with log lines (no I/O,
//! tests feed it strings) and a [`Probe`] that reads live state once per flush.
//! Files and journald are followed by `agent/read.rs` (through `inputs/tail` and
//! `inputs/journal.rs`), once for all: every source takes `log = PATH` or
//! `journal = { … }` ([`log_input`]).

pub mod audit;
pub mod fail2ban;
pub mod memo;
pub mod probe;
pub mod reaction;
pub mod scan;

#[cfg(test)]
#[path = "testdata/golden.rs"]
pub(crate) mod golden;

use serde::Deserialize;

use crate::inputs::journal::{Entry, JournalInput};
use crate::invalid::{Invalid, Read};
use crate::store::{Handle, Metric, Store};

/// Turns one log line into store updates. No files, no clock.
pub trait LineParser: Send {
    /// Name used in self-metrics and the state file, e.g. `fail2ban`.
    fn source(&self) -> &'static str;
    /// Registers the metrics this parser may emit, so /metrics shows HELP/TYPE from the start.
    fn describe(&self, store: &mut Store);
    /// Updates the store from one line (without its newline).
    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed>;
    /// Where [`feed`] keeps the handles of this parser's line counters.
    fn line_counts(&mut self) -> &mut LineCounts;
    /// Updates the store from one journal entry; by default its message is a line.
    /// A source whose program gives journald more than the text (a logger name, a
    /// level, an audit header) reads those fields here.
    fn parse_entry(&mut self, entry: &Entry, store: &mut Store) -> Result<(), Unparsed> {
        self.parse(&entry.message, store)
    }
    /// Counts what the parser still holds open, when the whole input was read (`rme parse`).
    fn finish(&mut self, _store: &mut Store) {}
}

/// Reads live state once per flush (fail2ban socket, audit netlink, `reaction show`),
/// in two steps so that no I/O happens under the store's lock.
pub trait Probe: Send {
    fn source(&self) -> &'static str;
    fn describe(&self, store: &mut Store);
    /// Does the I/O (socket, netlink, subprocess) without the store; the
    /// result waits in the probe for [`Probe::apply`].
    fn fetch(&mut self);
    /// Writes what [`Probe::fetch`] got into the store: no I/O, so the store's
    /// lock is held only for this.
    fn apply(&mut self, store: &mut Store) -> anyhow::Result<()>;
    /// Both, for a store of one's own (tests).
    fn probe(&mut self, store: &mut Store) -> anyhow::Result<()> {
        self.fetch();
        self.apply(store)
    }
}

/// A line we did not understand. The reader counts it under the source's name and moves on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unrecognised {parser} line")]
pub struct Unparsed {
    pub parser: &'static str,
}

/// Self-metric names shared by all sources.
pub const LINES_READ: Metric =
    Metric::counter("rme_lines_read_total", "Log lines read, by source.");
pub const LINES_UNPARSED: Metric = Metric::counter(
    "rme_lines_unparsed_total",
    "Log lines that matched no known format, by source; they are skipped.",
);
pub const PROBE_ERRORS: Metric = Metric::counter(
    "rme_probe_errors_total",
    "Failed live-state probes, by source.",
);

/// Every metric this module emits, for `describe`.
pub const METRICS: &[Metric] = &[LINES_READ, LINES_UNPARSED, PROBE_ERRORS];

/// Registers the self-metrics every source reports.
pub fn describe_self_metrics(store: &mut Store) {
    store.describe_all(METRICS);
}

/// The handles of a parser's `rme_lines_read_total` and `rme_lines_unparsed_total`.
#[derive(Debug, Default)]
pub struct LineCounts {
    read: Handle,
    unparsed: Handle,
}

/// Feeds one line to a parser and counts it (read, and unparsed when it failed)
/// under the parser's type name (`rme parse`, tests).
pub fn feed(parser: &mut dyn LineParser, line: &str, store: &mut Store) {
    let source = parser.source();
    feed_as(source, parser, line, store);
}

/// [`feed`], counted under `source`: the configured name of the source, so
/// two fail2ban sources named apart are counted apart. (A parser is always fed
/// under one name, so its cached handles stay right.)
pub fn feed_as(source: &str, parser: &mut dyn LineParser, line: &str, store: &mut Store) {
    let failed = parser.parse(line, store).is_err();
    count(source, parser, store, failed);
}

/// Feeds one journal entry to a parser and counts it as a line (under the parser's type name).
pub fn feed_entry(parser: &mut dyn LineParser, entry: &Entry, store: &mut Store) {
    let source = parser.source();
    feed_entry_as(source, parser, entry, store);
}

/// [`feed_entry`], counted under the source's configured name.
pub fn feed_entry_as(source: &str, parser: &mut dyn LineParser, entry: &Entry, store: &mut Store) {
    let failed = parser.parse_entry(entry, store).is_err();
    count(source, parser, store, failed);
}

fn count(source: &str, parser: &mut dyn LineParser, store: &mut Store, failed: bool) {
    let source = [("source", source)];
    let counts = parser.line_counts();
    store.inc_at(&mut counts.read, LINES_READ.name, &source, 1);
    if failed {
        store.inc_at(&mut counts.unparsed, LINES_UNPARSED.name, &source, 1);
    }
}

/// A source's `rotate_wait_secs`: after a rename rotation the old file is still
/// read until it has not grown for this long (a writer that reopens late, as
/// fail2ban until its postrotate `flushlogs`). Default 30 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct RotateWait(pub u64);

impl Default for RotateWait {
    fn default() -> Self {
        RotateWait(crate::inputs::tail::DEFAULT_ROTATE_WAIT.as_secs())
    }
}

impl RotateWait {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// Where a source's lines come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(std::path::PathBuf),
    Journal(JournalInput),
}

/// A source's `log` or `journal` (not both), checked where the source is built;
/// error keys are relative to the source (`journal.match`). A `journal` table
/// without `unit` or `match` reads `default_match`, the entries the source's
/// program writes wherever it runs (refused when it has none).
pub fn log_input(
    log: &Option<std::path::PathBuf>,
    journal: &Option<JournalInput>,
    default_match: Option<&str>,
) -> Result<Option<Input>, Invalid> {
    match (log, journal) {
        (Some(_), Some(_)) => Err(Invalid::new("", "set `log` or `journal`, not both")),
        (Some(p), None) => Ok(Some(Input::File(p.clone()))),
        (None, Some(j)) => Ok(Some(Input::Journal(j.or_match("journal", default_match)?))),
        (None, None) => Ok(None),
    }
}

/// A source ready to run: its log input with the parser for it, and its probes.
pub struct Built {
    pub name: String,
    pub input: Option<(Input, Box<dyn LineParser>)>,
    /// How long a renamed log file is still read (`rotate_wait_secs`).
    pub rotate_wait: std::time::Duration,
    pub probes: Vec<Box<dyn Probe>>,
}

/// The closed set of sources; `type` picks one (read by [`crate::invalid::tagged`],
/// so an error names the key inside the source).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "toml::Table")]
pub enum SourceConfig {
    Reaction(reaction::ReactionConfig),
    Fail2ban(fail2ban::Fail2banConfig),
    Audit(audit::AuditConfig),
}

impl TryFrom<toml::Table> for SourceConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<SourceConfig, String> {
        crate::invalid::tagged(table, &READERS)
    }
}

/// The closed set's `type` names, in one list: the config reader, the CLI's
/// `rme parse SOURCE` and [`SourceConfig::named`] all read it.
pub const NAMES: [&str; 3] = [READERS[0].0, READERS[1].0, READERS[2].0];

/// Each source's `type` name with the reader of its table.
const READERS: [(&str, Read<SourceConfig>); 3] = [
    ("reaction", |v| v.try_into().map(SourceConfig::Reaction)),
    ("fail2ban", |v| v.try_into().map(SourceConfig::Fail2ban)),
    ("audit", |v| v.try_into().map(SourceConfig::Audit)),
];

impl SourceConfig {
    /// The source whose `type` is `name`, every key at its default.
    pub fn named(name: &str) -> Result<SourceConfig, String> {
        let mut table = toml::Table::new();
        table.insert("type".into(), name.into());
        SourceConfig::try_from(table)
    }

    /// The name that keys this source in the state file; defaults to its type.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Reaction(c) => c.name.as_deref().unwrap_or("reaction"),
            SourceConfig::Fail2ban(c) => c.name.as_deref().unwrap_or("fail2ban"),
            SourceConfig::Audit(c) => c.name.as_deref().unwrap_or("audit"),
        }
    }

    /// Its `rotate_wait_secs`.
    pub fn rotate_wait(&self) -> RotateWait {
        match self {
            SourceConfig::Reaction(c) => c.rotate_wait_secs,
            SourceConfig::Fail2ban(c) => c.rotate_wait_secs,
            SourceConfig::Audit(c) => c.rotate_wait_secs,
        }
    }

    /// Makes the source's relative paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut std::path::PathBuf)) {
        match self {
            SourceConfig::Reaction(c) => c.resolve_paths(fix),
            SourceConfig::Fail2ban(c) => c.resolve_paths(fix),
            SourceConfig::Audit(c) => c.resolve_paths(fix),
        }
    }

    /// Checks what serde cannot; `key` is where the source sits, e.g. `sources[0]`.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        match self {
            // reaction's keys are all checked where it is built.
            SourceConfig::Reaction(_) => Ok(()),
            SourceConfig::Fail2ban(c) => c.validate(key),
            SourceConfig::Audit(c) => c.validate(key),
        }
    }
}

/// Builds the parser and probes a source's config asks for.
pub fn build(config: &SourceConfig) -> anyhow::Result<Built> {
    let name = config.name().to_string();
    let (input, probes) = match config {
        SourceConfig::Reaction(c) => reaction::build(c)?,
        SourceConfig::Fail2ban(c) => fail2ban::build(c)?,
        SourceConfig::Audit(c) => audit::build(c)?,
    };
    Ok(Built {
        name,
        input,
        rotate_wait: config.rotate_wait().duration(),
        probes,
    })
}

/// What a source module's `build` returns.
pub type Parts = (Option<(Input, Box<dyn LineParser>)>, Vec<Box<dyn Probe>>);
