//! Following inputs: log files across rotation ([`tail`]), journald through
//! `journalctl` ([`journal`]), and the progress line of a long first read
//! ([`progress`]), and where an input stands ([`SourceState`], which the state
//! file keeps). Nothing here knows a parser: each input hands out lines (or
//! journal entries) to a callback, and `agent/read.rs` feeds them to a source.

pub mod journal;
pub mod progress;
pub mod tail;

use serde::{Deserialize, Serialize};

use tail::FilePos;

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
