//! The state file: where each source stopped reading and what each counter
//! held, so counters stay monotonic and no line is counted twice across
//! restarts and `push --once` runs.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory): a
//! crash leaves the old state or the new one, never a torn mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::store::SavedCounter;
use crate::tail::FilePos;

const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

/// Where one source stopped reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// File identity and offset, for file inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePos>,
    /// Rotated files still read because their writer may not have reopened yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated: Vec<FilePos>,
    /// journald cursor of the last entry read, for journal inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceState>,
    #[serde(default)]
    pub counters: Vec<SavedCounter>,
    /// Per-sink bookkeeping (statsd's last sent values), keyed by sink name.
    #[serde(default)]
    pub sinks: BTreeMap<String, serde_json::Value>,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads the state, or an empty one when there is none yet.
    pub fn load(dir: &Path) -> anyhow::Result<State> {
        let path = State::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                });
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading state file {}", path.display()));
            }
        };
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("reading state file {}", path.display()))?;
        if state.version != VERSION {
            anyhow::bail!(
                "state file {}: version {} is not the {} this rme writes",
                path.display(),
                state.version,
                VERSION
            );
        }
        Ok(state)
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let mut state = self.clone();
        state.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&state)?;
        let path = State::path(dir);
        crate::safe_fs::write_atomic(&path, &bytes)
            .with_context(|| format!("writing state file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Series;

    #[test]
    fn state_round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = State::load(dir.path()).unwrap();
        assert!(empty.sources.is_empty());
        let mut s = State::default();
        s.sources.insert(
            "fail2ban".into(),
            SourceState {
                file: Some(FilePos {
                    dev: 1,
                    ino: 2,
                    offset: 3,
                    head: 4,
                }),
                cursor: None,
                rotated: Vec::new(),
            },
        );
        s.counters.push(SavedCounter {
            series: Series::new("a_total", &[("j", "x")]),
            value: 9,
            start_ms: 5,
        });
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap();
        assert_eq!(back.sources, s.sources);
        assert_eq!(back.counters, s.counters);
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(State::path(dir.path()), "{not json").unwrap();
        let msg = format!("{:#}", State::load(dir.path()).unwrap_err());
        assert!(msg.contains("state.json"), "{msg}");
    }
}
