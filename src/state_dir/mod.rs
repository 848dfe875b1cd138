//! Everything rme keeps on disk, in one directory (`state_dir`), and its one
//! owner, [`StateDir`]: the lock that allows one rme per directory
//! (`lock.rs`), the state file of positions and counters (`state.rs`), each
//! sink's spool of bodies not delivered yet (`spool.rs`), and the file
//! operations that refuse planted symlinks and keep modes private
//! (`safe_fs.rs`).
//!
//! The layout, every name in the directory:
//!
//! ```text
//! state_dir/
//!   lock                  the flock, with the holder's pid
//!   state.checkpoint      the whole state, written atomically
//!   state.journal         the saves since the checkpoint
//!   state.json            rme 0.1's state, read once (then state.json.migrated)
//!   spool/<sink name>/    one file per body, <seq>.rec
//! ```

pub mod lock;
pub mod safe_fs;
pub mod spool;
pub mod state;

use std::path::{Path, PathBuf};

use lock::StateLock;
use spool::Spool;
use state::{Loaded, StateFile};

/// The lock file (see `lock.rs`).
const LOCK: &str = "lock";
/// The state file's checkpoint, its journal, and rme 0.1's state before and
/// after its migration (see `state.rs`).
const CHECKPOINT: &str = "state.checkpoint";
const JOURNAL: &str = "state.journal";
const JSON_STATE: &str = "state.json";
const MIGRATED_JSON: &str = "state.json.migrated";
/// The folder of the sinks' spools, one folder per sink name.
const SPOOLS: &str = "spool";

/// A state directory held by this process: created if needed (0700), checked
/// safe to write in, and locked for as long as this value lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    lock: StateLock,
}

impl StateDir {
    /// Takes the directory's lock (one rme per state_dir; failing names the
    /// pid that holds it), then reads its state file (an empty state when
    /// there is none yet).
    pub fn open(path: &Path) -> anyhow::Result<(StateDir, StateFile, Loaded)> {
        let lock = StateLock::acquire(path)?;
        let (file, loaded) = StateFile::open(path)?;
        let dir = StateDir {
            path: path.to_path_buf(),
            lock,
        };
        Ok((dir, file, loaded))
    }

    /// The spool of the sink named `sink` (a name [`check_sink_name`] accepts),
    /// bounded to `max_bytes`.
    pub fn spool(&self, sink: &str, max_bytes: u64) -> anyhow::Result<Spool> {
        Spool::open(&self.path.join(SPOOLS).join(sink), max_bytes)
    }

    /// The lock, to keep across a SIGHUP restart's exec.
    pub fn lock(&self) -> &StateLock {
        &self.lock
    }
}

/// A sink's name becomes a folder of the state directory: only letters,
/// digits, `_` and `-`, so it cannot leave `spool/` or name a hidden file.
pub fn check_sink_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        return Ok(());
    }
    Err(format!(
        "'{name}': only letters, digits, '_' and '-' (it names the sink's spool directory)"
    ))
}

/// Write failures of the spool and the state file, logged once per (what, kind)
/// until that write works again: a full disk does not log at every flush.
#[derive(Debug, Default)]
pub struct WriteErrors {
    warned: std::collections::BTreeSet<(String, &'static str)>,
}

impl WriteErrors {
    /// Logs the failure the first time for this kind; returns the kind, for the counter.
    pub fn failed(&mut self, what: &str, err: &anyhow::Error) -> &'static str {
        let kind = error_kind(err);
        if self.warned.insert((what.to_string(), kind)) {
            tracing::error!(
                what,
                kind,
                "{err:#}; already spooled bodies still go out; logged once until it works again"
            );
        }
        kind
    }

    /// A write of `what` worked: the next failure is logged again.
    pub fn ok(&mut self, what: &str) {
        let before = self.warned.len();
        self.warned.retain(|(w, _)| w != what);
        if self.warned.len() != before {
            tracing::info!(what, "writing works again");
        }
    }
}

/// The kind of a write failure, from the first OS error in its chain.
fn error_kind(err: &anyhow::Error) -> &'static str {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error);
    match code {
        Some(libc::ENOSPC) => "no_space",
        Some(libc::EDQUOT) => "quota",
        Some(libc::EROFS) => "read_only",
        Some(libc::EACCES | libc::EPERM) => "permission",
        Some(libc::EIO) => "io",
        _ => "other",
    }
}
