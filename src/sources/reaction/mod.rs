//! reaction: its log (`log.rs`: matches and action runs per stream/filter/action,
//! with pattern labels from reaction's own config, read by `patterns.rs`) and
//! pending actions from `reaction show` (`show.rs`).

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

use super::{LineParser, Parts, log_input};
use crate::inputs::journal::JournalInput;
use crate::invalid::Invalid;

mod log;
mod patterns;
mod template;

pub use log::*;
pub mod show;
pub use patterns::{FilterPatterns, load_patterns};

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `reaction`.
    #[serde(default)]
    pub name: Option<String>,
    /// reaction's log file (its stderr redirected to a file).
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Read reaction's log from journald instead of a file: `unit` or `match`,
    /// and `file` or `directory` to read journal files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// Run `reaction show` once per flush for the live gauges (`reaction_pending_count`,
    /// `reaction_current_matches`, `reaction_up`). Pattern values never become labels there.
    #[serde(default)]
    pub show: bool,
    /// reaction's socket, passed to `reaction show -s`; reaction's own default
    /// (/run/reaction/reaction.sock) when absent. rme's user needs access to it.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The `reaction` binary, for `reaction show` and for `reaction test-config -c
    /// <config>` (which gives the fully evaluated config; when it cannot run, rme reads
    /// `config` itself, and .jsonnet needs the `jsonnet` command). Default `reaction` from PATH.
    #[serde(default = "default_command")]
    pub command: PathBuf,
    /// After a rename rotation, how many seconds the old log file is still
    /// read after it last grew (a writer reopening late). Default 30.
    #[serde(default)]
    pub rotate_wait_secs: crate::sources::RotateWait,
}

impl Default for ReactionConfig {
    fn default() -> Self {
        ReactionConfig {
            name: None,
            log: None,
            journal: None,
            config: None,
            pattern_labels: Vec::new(),
            show: false,
            socket: None,
            command: default_command(),
            rotate_wait_secs: Default::default(),
        }
    }
}

pub fn default_command() -> PathBuf {
    PathBuf::from("reaction")
}

impl ReactionConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.config.iter_mut())
            .chain(self.socket.iter_mut())
            .for_each(fix);
        if let Some(j) = &mut self.journal {
            j.resolve_paths(fix);
        }
    }

    /// `pattern_labels`, checked where the source is built: they need `config`, and none may be a label rme sets.
    fn check_pattern_labels(&self) -> Result<(), Invalid> {
        if !self.pattern_labels.is_empty() && self.config.is_none() {
            return Err(Invalid::new(
                "pattern_labels",
                "needs `config` (reaction's config names the pattern of each match value; \
                 `rme parse`: --reaction-config)",
            ));
        }
        if let Some(bad) = self
            .pattern_labels
            .iter()
            .find(|p| RESERVED.contains(&p.as_str()))
        {
            return Err(Invalid::new(
                "pattern_labels",
                format!("'{bad}' clashes with a label rme sets itself"),
            ));
        }
        Ok(())
    }
}

pub fn build(config: &ReactionConfig) -> anyhow::Result<Parts> {
    let input = log_input(&config.log, &config.journal, None)?;
    config.check_pattern_labels()?;
    let patterns = match &config.config {
        Some(path) if !config.pattern_labels.is_empty() => {
            load_patterns(path, Some(config.command.as_path()))
                .context("config (reaction's own config, read for `pattern_labels`)")?
        }
        _ => FilterPatterns::default(),
    };
    let parser = ReactionLog::new(patterns, config.pattern_labels.clone());
    let mut probes: Vec<Box<dyn super::Probe>> = Vec::new();
    if config.show {
        let show = show::ReactionShow::new(config.command.clone(), config.socket.clone());
        probes.push(Box::new(super::probe::Fetched::new(show)));
    }
    Ok((
        input.map(|i| (i, Box::new(parser) as Box<dyn LineParser>)),
        probes,
    ))
}

#[cfg(test)]
mod tests;
