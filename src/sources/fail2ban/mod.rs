//! fail2ban: its log (`log.rs`: Found, Ban, Unban, Restore/Increase Ban per
//! jail), from a file or from journald (`logtarget = SYSTEMD-JOURNAL`), and,
//! with `socket` or `helper`, its live state (`socket.rs`).

use std::path::PathBuf;

use serde::Deserialize;

mod log;
pub mod socket;

pub use log::*;

use super::{LineParser, Parts, log_input};
use crate::inputs::journal::JournalInput;
use crate::invalid::Invalid;

/// The entries of fail2ban's unit, chosen by a field journald sets itself
/// (`_SYSTEMD_UNIT`, from the sender's cgroup): `SYSLOG_IDENTIFIER`, `LOGGER`
/// and `PRIORITY` are set by the sender, and any local user can send an entry
/// (`logger --journald`), so a match on them alone is forgeable. `_COMM` is no
/// better: a user names their own process. This reads fail2ban's journal
/// handler (`logtarget = SYSTEMD-JOURNAL`) and its stdout (`--logtarget=sysout`,
/// Debian's unit comment) alike.
const JOURNAL_MATCH: &str = "_SYSTEMD_UNIT=fail2ban.service";

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fail2banConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `fail2ban`.
    #[serde(default)]
    pub name: Option<String>,
    /// fail2ban's log file (`logtarget`), e.g. /var/log/fail2ban.log.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Read fail2ban's log from journald instead (`logtarget = SYSTEMD-JOURNAL`):
    /// `unit`, `match` (default `_SYSTEMD_UNIT=fail2ban.service`), `file` or `directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalInput>,
    /// fail2ban's control socket, e.g. /var/run/fail2ban/fail2ban.sock, read once per
    /// flush for the live gauges (`fail2ban_up`, `fail2ban_jail_banned_current`, …).
    /// It is root-only: see `helper`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Ask `rme helper` listening on this socket (e.g. /run/rme/helper.sock) for the
    /// live gauges instead of reading `socket`, so rme itself needs no privilege.
    #[serde(default)]
    pub helper: Option<PathBuf>,
    /// Label failures, bans, unbans and ban increases with the `ip` they name
    /// (fail2ban's id; usually an address). Off by default: one series per
    /// attacker, so pair it with a `top`, `geoip`, `hash` or `prefix` label rule.
    #[serde(default)]
    pub ip_label: bool,
    /// After a rename rotation, how many seconds the old log file is still
    /// read after it last grew (a writer reopening late). Default 30.
    #[serde(default)]
    pub rotate_wait_secs: crate::sources::RotateWait,
}

impl Fail2banConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.socket.iter_mut())
            .chain(self.helper.iter_mut())
            .for_each(fix);
        if let Some(j) = &mut self.journal {
            j.resolve_paths(fix);
        }
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none()
            && self.journal.is_none()
            && self.socket.is_none()
            && self.helper.is_none()
        {
            return Err(Invalid::new(
                key,
                "a fail2ban source needs `log`, `journal`, `socket` or `helper`",
            ));
        }
        if self.socket.is_some() && self.helper.is_some() {
            let why =
                "set `socket` or `helper`, not both (the helper has its own --fail2ban-socket)";
            return Err(Invalid::new(key, why));
        }
        Ok(())
    }
}

pub fn build(config: &Fail2banConfig) -> anyhow::Result<Parts> {
    let input = log_input(&config.log, &config.journal, Some(JOURNAL_MATCH))?.map(|i| {
        (
            i,
            Box::new(Fail2banLog::new(config.ip_label)) as Box<dyn LineParser>,
        )
    });
    use socket::{Fail2banSocket, PROBE_TIMEOUT, Via};
    let via = match (&config.socket, &config.helper) {
        (_, Some(h)) => Some(Via::Helper(h.clone())),
        (Some(s), None) => Some(Via::Socket(s.clone())),
        (None, None) => None,
    };
    let probes = via
        .map(|v| {
            Box::new(super::probe::Fetched::new(Fail2banSocket::new(
                v,
                PROBE_TIMEOUT,
            ))) as Box<dyn super::Probe>
        })
        .into_iter()
        .collect();
    Ok((input, probes))
}

#[cfg(test)]
mod tests;
