//! One rme per state_dir: an exclusive `flock` on `state_dir/lock`, held for the
//! life of the process, with the holder's pid written in the file. A daemon and
//! a `push --once` sharing a state dir would read the same lines and both send
//! them (statsd summed 1.5x what was counted).
//!
//! A SIGHUP restart (exec of rme itself) keeps the lock: the fd stays open
//! across the exec and its number is passed in `RME_STATE_LOCK_FD`; the new rme
//! adopts it only when it is a flock it holds on this state_dir's lock file, so
//! no other rme can take the state_dir in between.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{LOCK as LOCK_FILE, safe_fs};

/// The lock's fd number, kept open across a SIGHUP restart's exec.
pub const INHERITED_FD_ENV: &str = "RME_STATE_LOCK_FD";

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    file: File,
}

impl StateLock {
    /// Lets the lock's fd survive an exec, for a restart of rme itself: the
    /// variable to set in the new process's environment.
    pub fn keep_across_exec(&self) -> std::io::Result<(&'static str, String)> {
        let fd = self.file.as_raw_fd();
        set_cloexec(fd, false)?;
        Ok((INHERITED_FD_ENV, fd.to_string()))
    }

    /// After a failed exec: child processes must not inherit the lock.
    pub fn close_on_exec(&self) {
        let _ = set_cloexec(self.file.as_raw_fd(), true);
    }

    /// The lock a restarted rme inherited from itself (see [`StateLock::keep_across_exec`]):
    /// the fd named by `RME_STATE_LOCK_FD` when it is this state_dir's lock file
    /// (same device and inode) and this process holds its flock; `None` otherwise.
    fn inherited(path: &Path) -> Option<File> {
        // Once per process: a second adoption of the same number would make two
        // owners of one fd.
        static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let fd = std::env::var(INHERITED_FD_ENV).ok()?.trim().parse().ok()?;
        if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        adopt(path, fd)
    }

    /// Creates `state_dir` if needed (0700), checks it is safe to write in, takes
    /// the lock or fails naming the pid that holds it, and removes temp files a
    /// crashed run left (no other rme can be writing them now).
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        let key = |reason: String| anyhow::anyhow!("state_dir {}: {reason}", state_dir.display());
        safe_fs::create_dir_private(state_dir, true).map_err(|e| key(e.to_string()))?;
        let path = state_dir.join(LOCK_FILE);
        if let Some(file) = StateLock::inherited(&path) {
            tracing::debug!(path = %path.display(), "kept the state_dir lock across the restart");
            remove_stale_temps(state_dir);
            return Ok(StateLock { file });
        }
        let mut file = safe_fs::open_private(&path)
            .with_context(|| format!("state_dir: opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                // Only a number is shown: the file's text is never echoed.
                let mut text = String::new();
                let _ = file.by_ref().take(32).read_to_string(&mut text);
                let pid = text.trim();
                let pid = if !pid.is_empty()
                    && pid.len() <= 10
                    && pid.bytes().all(|b| b.is_ascii_digit())
                {
                    pid
                } else {
                    "unknown"
                };
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
        Ok(StateLock { file })
    }
}

/// `fd` as the lock on `path`, when it is that file and its flock is (or can
/// be) held through it; the fd is then owned by the result.
fn adopt(path: &Path, fd: i32) -> Option<File> {
    if fd < 0 {
        return None;
    }
    // SAFETY: fstat only writes into the struct we pass; a closed fd fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let m = std::fs::symlink_metadata(path).ok()?;
    if m.dev() != st.st_dev || m.ino() != st.st_ino {
        return None;
    }
    // flock through the open file that holds it succeeds; held through another, it fails.
    // SAFETY: flock on an open fd.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    // SAFETY: the fd was kept open across exec and nothing in this process
    // owns it (only `inherited` makes a File from a raw number, once).
    let file = unsafe { File::from_raw_fd(fd) };
    let _ = set_cloexec(fd, true);
    Some(file)
}

fn set_cloexec(fd: i32, on: bool) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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

    #[test]
    fn only_a_pid_is_shown_never_the_lock_files_text() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path()).unwrap();
        held.file
            .write_all_at(b"4242\nERROR rme: forged\x1b[2K", 0)
            .unwrap();
        let err = format!("{:#}", StateLock::acquire(dir.path()).unwrap_err());
        assert!(
            err.contains("pid unknown") && !err.contains("forged"),
            "{err}"
        );
    }

    #[test]
    fn only_a_held_lock_on_this_state_dir_is_adopted() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let held = StateLock::acquire(dir.path()).unwrap();
        let _other_held = StateLock::acquire(other.path()).unwrap();
        let path = dir.path().join(LOCK_FILE);
        // SAFETY: dup of an fd we hold; the copy is owned by what adopts it.
        let dup = || unsafe { libc::dup(held.file.as_raw_fd()) };
        // the same open file (what an exec keeps): adopted
        let fd = dup();
        let adopted = adopt(&path, fd).expect("the held lock is adopted");
        assert_eq!(adopted.as_raw_fd(), fd);
        drop(adopted);
        // another state_dir's lock file, another open of this one (whose flock
        // is held through `held`), a closed fd, a non-file: refused
        let fd = dup();
        assert!(adopt(&other.path().join(LOCK_FILE), fd).is_none());
        // SAFETY: closing the dup made above, which nothing adopted.
        unsafe { libc::close(fd) };
        let again = File::open(&path).unwrap();
        assert!(adopt(&path, again.as_raw_fd()).is_none());
        assert!(adopt(&path, 999_999).is_none());
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt(&path, sock.as_raw_fd()).is_none());
        drop(held);
    }
}
