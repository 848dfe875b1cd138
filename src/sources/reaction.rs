//! reaction: its log (matches and action runs per stream/filter/action, with
//! pattern labels from reaction's own config) and pending actions from `reaction show`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Input, JournalInput, LineParser, Parts, Unparsed};
use crate::config::Invalid;
use crate::store::Store;

#[derive(Debug, Deserialize)]
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
    /// reaction's config (YAML, JSON, jsonnet, or a directory), to learn pattern names.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Pattern names (e.g. `ip`) whose values become labels. Empty by default:
    /// IPs as labels are unbounded cardinality, so this is opt-in.
    #[serde(default)]
    pub pattern_labels: Vec<String>,
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
        Ok(())
    }
}

pub fn build(config: &ReactionConfig) -> anyhow::Result<Parts> {
    let input = match (&config.log, &config.journal) {
        (Some(p), _) => Some(Input::File(p.clone())),
        (None, Some(j)) => Some(Input::Journal(j.clone())),
        _ => None,
    };
    Ok((
        input.map(|i| (i, Box::new(ReactionLog::default()) as Box<dyn LineParser>)),
        Vec::new(),
    ))
}

/// Parses reaction log lines (v1 Go and v2 Rust formats).
#[derive(Debug, Default)]
pub struct ReactionLog {}

impl LineParser for ReactionLog {
    fn source(&self) -> &'static str {
        "reaction"
    }

    fn describe(&self, _store: &mut Store) {}

    fn parse(&mut self, _line: &str, _store: &mut Store) -> Result<(), Unparsed> {
        Err(Unparsed { parser: "reaction" })
    }
}
