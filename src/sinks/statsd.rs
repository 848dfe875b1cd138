//! Placeholder: the statsd sink is being built (see the issue tracker).

use serde::Deserialize;

use super::{SendError, Sink};
use crate::config::Invalid;
use crate::store::Snapshot;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsdConfig {
    /// Sink name (spool directory, self-metric label). Default `statsd`.
    #[serde(default)]
    pub name: Option<String>,
}

impl StatsdConfig {
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        Err(Invalid::new(key, "the statsd sink is not built yet"))
    }
}

pub struct Statsd {
    name: String,
}

impl Statsd {
    pub fn new(name: String, _config: &StatsdConfig) -> anyhow::Result<Statsd> {
        anyhow::bail!("sink {name}: the statsd sink is not built yet")
    }
}

impl Sink for Statsd {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, _snap: &Snapshot) -> anyhow::Result<Vec<Vec<u8>>> {
        anyhow::bail!("not built yet")
    }

    async fn send(&mut self, _body: &[u8]) -> Result<(), SendError> {
        Err(SendError::Reject {
            reason: "not built yet".into(),
        })
    }
}
