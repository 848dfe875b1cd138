//! fail2ban: its log (`log.rs`: Found, Ban, Unban, Restore/Increase Ban per
//! jail) and, with `socket` or `helper`, its live state (`socket.rs`).

use std::path::PathBuf;

use serde::Deserialize;

mod log;
pub mod socket;

pub use log::*;

use super::{Input, LineParser, Parts};
use crate::invalid::Invalid;

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fail2banConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `fail2ban`.
    #[serde(default)]
    pub name: Option<String>,
    /// fail2ban's log file (`logtarget`), e.g. /var/log/fail2ban.log.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// fail2ban's control socket, e.g. /var/run/fail2ban/fail2ban.sock, read once per
    /// flush for the live gauges (`fail2ban_up`, `fail2ban_jail_banned_current`, …).
    /// It is root-only: see `helper`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Ask `rme helper` listening on this socket (e.g. /run/rme/helper.sock) for the
    /// live gauges instead of reading `socket`, so rme itself needs no privilege.
    #[serde(default)]
    pub helper: Option<PathBuf>,
}

impl Fail2banConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.socket.iter_mut())
            .chain(self.helper.iter_mut())
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none() && self.socket.is_none() && self.helper.is_none() {
            return Err(Invalid::new(
                key,
                "a fail2ban source needs `log`, `socket` or `helper`",
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
    let input = config.log.clone().map(|p| {
        (
            Input::File(p),
            Box::new(Fail2banLog::default()) as Box<dyn LineParser>,
        )
    });
    use socket::{Fail2banSocket, PROBE_TIMEOUT, Via};
    let via = match (&config.socket, &config.helper) {
        (_, Some(h)) => Some(Via::Helper(h.clone())),
        (Some(s), None) => Some(Via::Socket(s.clone())),
        (None, None) => None,
    };
    let probes = via
        .map(|v| Box::new(Fail2banSocket::new(v, PROBE_TIMEOUT)) as Box<dyn super::Probe>)
        .into_iter()
        .collect();
    Ok((input, probes))
}

#[cfg(test)]
mod tests;
