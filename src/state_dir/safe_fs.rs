//! Files in rme's state directory, written so that another local user cannot
//! point them elsewhere: the last path component is never followed when it is a
//! symlink, temp files have names unique per process and are created
//! exclusively, and modes are 0600 (files) and 0700 (directories) whatever the umask.
//!
//! A leaf module: std and libc only.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of every temp file written here; a crash may leave some, removed at start.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file:
/// a temp file `.NAME.PID.N.tmp` beside it (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600),
/// fsync, rename over `path`, fsync of the directory. The temp file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}{TEMP_SUFFIX}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        // unlink removes the name itself, never what a symlink points to
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Opens a file for reading; a symlink as last component is an error (ELOOP)
/// that says so, and so is anything but a regular file owned by rme's user
/// (see [`owned_regular`]).
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    open_checked(OpenOptions::new().read(true), path)
}

/// Opens (creating, mode 0600) a file for reading and writing, not following a
/// symlink; a file that is not regular or not rme's user's is refused.
pub fn open_private(path: &Path) -> io::Result<File> {
    let f = open_checked(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
        path,
    )?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Opens an existing file for appending, checked as [`open_nofollow`].
pub fn open_append(path: &Path) -> io::Result<File> {
    open_checked(OpenOptions::new().append(true), path)
}

/// Opens with O_NOFOLLOW (a symlink is an error that says so) and O_NONBLOCK (a
/// FIFO planted in the state dir cannot hang rme), then [`owned_regular`].
fn open_checked(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let f = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("is a symbolic link; refusing to follow it ({e})"),
                )
            } else {
                e
            }
        })?;
    owned_regular(&f)?;
    Ok(f)
}

/// Refuses an open file that is not a regular file owned by rme's (effective)
/// user with one link: in a sticky state dir another user can create a name before rme does
/// (a hostile checkpoint, a FIFO, a `lock` they hold), and rme must not trust it.
pub fn owned_regular(f: &File) -> io::Result<()> {
    let m = f.metadata()?;
    let refuse = |reason: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
    if !m.file_type().is_file() {
        return refuse("is not a regular file; refusing it (remove it)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        return refuse(format!(
            "is owned by uid {}, not by rme's user (uid {me}); another user may have planted it: refusing it (remove it, or chown it if it is rme's)",
            m.uid()
        ));
    }
    if m.nlink() != 1 {
        // rme never links its files; a hard link to another file (root's, for
        // a root rme) would have it written or cut to the pid.
        return refuse(format!(
            "has {} hard links; rme's files have one: refusing it (remove it)",
            m.nlink()
        ));
    }
    Ok(())
}

/// Creates `dir` (and missing parents) mode 0700 if it does not exist, then
/// checks it with [`check_dir`]: the error's text is the reason.
pub fn create_dir_private(dir: &Path, follow: bool) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Err(e) => return Err(e),
    }
    check_dir(dir, follow)
}

/// A directory rme may keep state in: a directory (not a symlink unless
/// `follow`), owned by rme's user or root, and writable by nobody else unless
/// it is sticky and owned by rme's user (then others cannot remove or rename
/// rme's files, and O_EXCL|O_NOFOLLOW keeps what they plant from being used).
pub fn check_dir(dir: &Path, follow: bool) -> io::Result<()> {
    let m = if follow {
        std::fs::metadata(dir)?
    } else {
        std::fs::symlink_metadata(dir)?
    };
    let refuse = |reason: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
    if m.file_type().is_symlink() {
        return refuse("is a symbolic link; refusing to write through it".into());
    }
    if !m.is_dir() {
        return refuse("is not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = m.mode() & 0o7777;
    if m.uid() != me && m.uid() != 0 {
        return refuse(format!(
            "is owned by uid {}, not by rme's user (uid {me}) or root",
            m.uid()
        ));
    }
    let others_write = mode & 0o022 != 0;
    let sticky_mine = mode & 0o1000 != 0 && m.uid() == me;
    if others_write && !sticky_mine {
        return refuse(format!(
            "is writable by group or others (mode {mode:04o}); make it 0700 (or sticky and owned by uid {me})"
        ));
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn write_atomic_is_0600_and_ignores_a_planted_temp_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        // the old fixed temp name, and this process's next one
        for n in 0..4 {
            let planted = dir
                .path()
                .join(format!(".s.json.{}.{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&target, planted).unwrap();
        }
        let p = dir.path().join("s.json");
        // a planted name makes that write fail; never writes through it
        let mut ok = false;
        for _ in 0..8 {
            ok |= write_atomic(&p, b"new").is_ok();
        }
        assert!(ok);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn private_dir_is_0700_and_unsafe_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_dir_private(&d, false).unwrap();
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_dir(&d, false).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_dir(&d, false).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let err = create_dir_private(&link, false).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(open_nofollow(&link).is_err());
    }
}
