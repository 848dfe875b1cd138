//! Placeholder: the remote_write sink is being built (see the issue tracker).

use serde::Deserialize;

use super::{SendError, Sink};
use crate::config::Invalid;
use crate::store::Snapshot;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Sink name (spool directory, self-metric label). Default `remote_write`.
    #[serde(default)]
    pub name: Option<String>,
}

impl RemoteWriteConfig {
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        Err(Invalid::new(key, "the remote_write sink is not built yet"))
    }
}

pub struct RemoteWrite {
    name: String,
}

impl RemoteWrite {
    pub fn new(name: String, _config: &RemoteWriteConfig) -> anyhow::Result<RemoteWrite> {
        anyhow::bail!("sink {name}: the remote_write sink is not built yet")
    }
}

impl Sink for RemoteWrite {
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
