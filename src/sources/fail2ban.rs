//! fail2ban: its log (Found, Ban, Unban, Restore/Increase Ban per jail) and,
//! with `socket`, its live state.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Input, LineParser, Parts, Unparsed};
use crate::config::Invalid;
use crate::store::Store;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail2banConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `fail2ban`.
    #[serde(default)]
    pub name: Option<String>,
    /// fail2ban's log file (`logtarget`), e.g. /var/log/fail2ban.log.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// fail2ban's control socket, e.g. /var/run/fail2ban/fail2ban.sock.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl Fail2banConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.socket.iter_mut())
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none() && self.socket.is_none() {
            return Err(Invalid::new(
                key,
                "a fail2ban source needs `log` or `socket`",
            ));
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
    Ok((input, Vec::new()))
}

/// Parses fail2ban.log lines.
#[derive(Debug, Default)]
pub struct Fail2banLog {}

impl LineParser for Fail2banLog {
    fn source(&self) -> &'static str {
        "fail2ban"
    }

    fn describe(&self, _store: &mut Store) {}

    fn parse(&mut self, _line: &str, _store: &mut Store) -> Result<(), Unparsed> {
        Err(Unparsed { parser: "fail2ban" })
    }
}
