//! Writes each snapshot to standard output as OpenMetrics text: the embedded
//! default, and a way to see what the other sinks would send.

use std::io::Write as _;

use serde::Deserialize;

use super::{Accepted, Batch, SendError, Sink};
use crate::store::Snapshot;
use crate::store::text::{Format, render};

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Sink name (spool directory, self-metric label). Default `stdout`.
    #[serde(default)]
    pub name: Option<String>,
}

pub struct Stdout {
    name: String,
}

impl Stdout {
    pub fn new(name: String, _config: &StdoutConfig) -> Stdout {
        Stdout { name }
    }
}

impl Sink for Stdout {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        Ok(vec![Batch {
            body: render(snap, Format::OpenMetrics).into_bytes(),
            samples: snap.points.len() as u64,
            note: Vec::new(),
        }])
    }

    async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
        let mut out = std::io::stdout().lock();
        match out.write_all(body).and_then(|_| out.flush()) {
            Ok(()) => Ok(Accepted::default()),
            // A closed pipe (`rme push --once | head`) will not take it later either.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Accepted::default()),
            Err(e) => Err(SendError::Retry {
                reason: format!("stdout: {e}"),
                after: None,
            }),
        }
    }
}
