//! Linux audit: the kernel's audit status over netlink, and audit records from
//! auditd's log or, on hosts where no auditd runs, from journald.
//!
//! Two independent parts: [`AuditStatusProbe`] (`netlink.rs`) asks the kernel
//! (`AUDIT_GET`, needs CAP_AUDIT_CONTROL) once per flush, itself or through
//! `rme helper`; [`AuditLog`] (`log.rs`) counts records and events from auditd's
//! log. The tricky point of each is in its module.

mod events;
mod log;
mod netlink;
mod record;
#[cfg(test)]
mod samples;

use std::path::PathBuf;

use serde::Deserialize;

pub use log::AuditLog;
pub use netlink::*;

use super::{LineParser, Parts, Probe, log_input};
use crate::inputs::journal::JournalInput;
use crate::invalid::Invalid;

/// The kernel audit records journald reads itself when no auditd holds the socket.
const JOURNAL_MATCH: &str = "_TRANSPORT=audit";

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `audit`.
    #[serde(default)]
    pub name: Option<String>,
    /// auditd's log, e.g. /var/log/audit/audit.log (raw or ENRICHED `log_format`;
    /// readable by group `adm` on Debian).
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Read the audit records journald keeps instead (hosts without auditd):
    /// `match` (default `_TRANSPORT=audit`), `file` or `directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalInput>,
    /// Ask the kernel for its audit status (enabled, lost, backlog…) over netlink
    /// at each flush. Needs CAP_AUDIT_CONTROL in the initial namespaces, e.g.
    /// `AmbientCapabilities=CAP_AUDIT_CONTROL` in rme.service. Default true.
    #[serde(default = "default_netlink")]
    pub netlink: bool,
    /// Ask `rme helper` listening on this socket (e.g. /run/rme/helper.sock) for the
    /// kernel status instead of asking the kernel, so rme itself needs no capability.
    #[serde(default)]
    pub helper: Option<PathBuf>,
    /// After a rename rotation, how many seconds the old log file is still
    /// read after it last grew (a writer reopening late). Default 30.
    #[serde(default)]
    pub rotate_wait_secs: crate::sources::RotateWait,
}

fn default_netlink() -> bool {
    true
}

impl AuditConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.helper.iter_mut())
            .for_each(fix);
        if let Some(j) = &mut self.journal {
            j.resolve_paths(fix);
        }
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none() && self.journal.is_none() && !self.netlink {
            return Err(Invalid::new(
                key,
                "an audit source needs `log`, `journal` or `netlink = true`",
            ));
        }
        if self.helper.is_some() && !self.netlink {
            let why = "`helper` only serves the netlink status: remove it or set `netlink = true`";
            return Err(Invalid::new(key, why));
        }
        Ok(())
    }
}

pub fn build(config: &AuditConfig) -> anyhow::Result<Parts> {
    let input = log_input(&config.log, &config.journal, Some(JOURNAL_MATCH))?
        .map(|i| (i, Box::new(AuditLog::default()) as Box<dyn LineParser>));
    let mut probes: Vec<Box<dyn Probe>> = Vec::new();
    if config.netlink {
        probes.push(Box::new(super::probe::Fetched::new(AuditStatusProbe::new(
            config.helper.clone(),
        ))));
    }
    Ok((input, probes))
}

#[cfg(test)]
mod tests;
