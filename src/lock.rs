//! One rme per state_dir: an exclusive `flock` on `state_dir/lock`, held for the
//! life of the process, with the holder's pid written in the file. A daemon and
//! a `push --once` sharing a state dir would read the same lines and both send
//! them (statsd summed 1.5x what was counted).

use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::safe_fs;

const LOCK_FILE: &str = "lock";

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Creates `state_dir` if needed (0700), checks it is safe to write in, takes
    /// the lock or fails naming the pid that holds it, and removes temp files a
    /// crashed run left (no other rme can be writing them now).
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        let key = |reason: String| anyhow::anyhow!("state_dir {}: {reason}", state_dir.display());
        safe_fs::create_dir_private(state_dir, true).map_err(|e| key(e.to_string()))?;
        let path = state_dir.join(LOCK_FILE);
        let mut file = safe_fs::open_private(&path)
            .with_context(|| format!("state_dir: opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim();
                let pid = if pid.is_empty() { "unknown" } else { pid };
                return Err(key(format!(
                    "in use by another rme (pid {pid}); one rme per state_dir (a daemon and a `push --once` must not share one)"
                )));
            }
            return Err(key(format!("locking {}: {err}", path.display())));
        }
        // Best effort (a full disk must not stop rme): overwrite in place, then cut.
        let pid = format!("{}\n", std::process::id());
        let written = file
            .write_all_at(pid.as_bytes(), 0)
            .and_then(|()| file.set_len(pid.len() as u64));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "could not write rme's pid into the lock file: {e}");
        }
        remove_stale_temps(state_dir);
        Ok(StateLock { _file: file })
    }
}

fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with('.') && n.ends_with(safe_fs::TEMP_SUFFIX)
        })
        .map(|e| e.path())
        .collect();
    for p in stale {
        // unlink removes the name (a planted symlink), never its target
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = format!("{:#}", StateLock::acquire(dir.path()).unwrap_err());
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("state_dir"),
            "{err}"
        );
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
