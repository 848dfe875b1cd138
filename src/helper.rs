//! `rme helper`: the only part of rme that needs privilege (fail2ban's root-only
//! socket; CAP_AUDIT_CONTROL for the kernel's audit status). It listens on a unix
//! socket (mode 0660, group chosen by the admin) and answers fixed requests with JSON,
//! so `rme push` can run as an unprivileged user.
//!
//! The tricky point is what it must NOT do: a client sends one line naming a request
//! (at most [`MAX_REQUEST`] bytes are read, nothing else), no byte from a client reaches
//! fail2ban or the kernel, and the connection closes after one answer. Clients are
//! served concurrently, each within one deadline, so a client that connects and waits
//! (or drips its line byte by byte) cannot delay another.
//!
//! Adding a request (e.g. `audit-status`, for the audit source's netlink status):
//! one [`Request`] variant and its name in `helper_proto.rs`, and one arm in [`answer`].

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::helper_proto::{Answer, MAX_REQUEST, Request};

/// How long a client may take to send its request line, and again to take its
/// answer: one deadline for the whole line, however slowly it drips in.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients served at once; a helper under a flood of idle connections still
/// answers once one of those times out.
pub const MAX_CLIENTS: usize = 32;

/// What `rme helper` is started with (command-line flags).
#[derive(Clone, Debug)]
pub struct HelperOptions {
    /// The socket to listen on.
    pub listen: PathBuf,
    /// Group given access to the socket (mode 0660); the helper's own group when absent.
    pub group: Option<String>,
    /// fail2ban's control socket.
    pub fail2ban_socket: PathBuf,
    /// Bound on each fail2ban exchange.
    pub timeout: Duration,
}

/// Answers one request; this is where the privileged reads happen.
pub fn answer(request: Request, options: &HelperOptions) -> Answer {
    let result = match request {
        Request::Fail2banStatus => {
            crate::sources::fail2ban::socket::read_status(&options.fail2ban_socket, options.timeout)
                .and_then(|s| Ok(serde_json::to_value(s)?))
        }
        Request::AuditStatus => crate::sources::audit::query_kernel(options.timeout)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(serde_json::to_value(s)?)),
    };
    match result {
        Ok(v) => Answer::Ok(v),
        Err(e) => Answer::Error(format!("{e:#}")),
    }
}

/// Runs the helper until killed. Each client is served on its own thread, so
/// an idle or slow client never delays another; at most [`MAX_CLIENTS`] at a
/// time (more are closed at once), each bounded by one deadline.
pub fn run(options: &HelperOptions) -> anyhow::Result<()> {
    let listener = bind(&options.listen, options.group.as_deref())?;
    let names: Vec<_> = Request::ALL.iter().map(|r| r.name()).collect();
    tracing::info!(socket = %options.listen.display(), requests = ?names, "rme helper listening");
    let options = std::sync::Arc::new(options.clone());
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                use std::sync::atomic::Ordering::SeqCst;
                if active.fetch_add(1, SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, SeqCst);
                    tracing::warn!("rme helper: {MAX_CLIENTS} clients at once; closing a new one");
                    continue;
                }
                let (options, done) = (options.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("helper-client".into())
                    .spawn(move || {
                        serve(stream, &options, Instant::now() + CLIENT_TIMEOUT);
                        done.fetch_sub(1, SeqCst);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, SeqCst);
                    tracing::warn!("rme helper: cannot start a thread for a client: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("rme helper: accept failed: {e}");
                // e.g. out of file descriptors: do not spin on it
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

/// Creates the socket: replaces a stale socket (never another kind of file), mode 0660.
fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    let gid = group.map(group_id).transpose()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ),
        Err(_) => {}
    }
    // Created 0600 so nobody can connect before the group and mode below are set.
    // SAFETY: umask only swaps the process's file-creation mask; the helper has no other
    // threads yet, so no file is created concurrently with the narrower mask.
    let before = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(before) };
    let listener = bound.with_context(|| format!("listening on {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// A group name (or number) to its id, through the system's group database (NSS).
fn group_id(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group).context("group name contains a NUL byte")?;
    // SAFETY: `name` is a valid C string; getgrnam's result is read at once, before any
    // other call could reuse its static buffer (the helper is single-threaded here).
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("no such group '{group}'");
    }
    // SAFETY: non-null pointer returned by getgrnam just above.
    Ok(unsafe { (*entry).gr_gid })
}

/// One client: read its request line by `deadline`, answer within as long
/// again, close. Errors are logged, never fatal.
fn serve(mut stream: UnixStream, options: &HelperOptions, deadline: Instant) {
    let answer = match read_request(&mut stream, deadline) {
        Ok(Some(request)) => answer(request, options),
        Ok(None) => {
            let known: Vec<_> = Request::ALL.iter().map(|r| r.name()).collect();
            Answer::Error(format!("unknown request; known: {}", known.join(", ")))
        }
        Err(e) => {
            tracing::debug!("rme helper: unreadable request: {e}");
            return;
        }
    };
    if let Answer::Error(e) = &answer {
        tracing::warn!("rme helper: {e}");
    }
    let mut body = serde_json::to_vec(&answer).unwrap_or_default();
    body.push(b'\n');
    if let Err(e) = write_all_by(&mut stream, &body, Instant::now() + CLIENT_TIMEOUT) {
        tracing::debug!("rme helper: client went away: {e}");
    }
}

/// The time left until `deadline`, as a socket timeout; an error once it passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(ErrorKind::TimedOut, "client too slow"));
    }
    Ok(left)
}

/// Reads up to [`MAX_REQUEST`] bytes, stopping at the first newline, end of input or `deadline`.
fn read_request(stream: &mut UnixStream, deadline: Instant) -> std::io::Result<Option<Request>> {
    let mut line = Vec::with_capacity(MAX_REQUEST);
    let mut byte = [0u8; 1];
    while line.len() < MAX_REQUEST {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(std::str::from_utf8(&line).ok().and_then(Request::parse))
}

/// Writes all of `bytes` by `deadline`, however slowly the client reads.
#[expect(
    clippy::disallowed_methods,
    reason = "a partial write is the point: each one gets the time left until the deadline"
)]
fn write_all_by(
    stream: &mut UnixStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper_proto::ask;

    fn options(dir: &Path) -> HelperOptions {
        HelperOptions {
            listen: dir.join("run/helper.sock"),
            group: None,
            fail2ban_socket: dir.join("no-fail2ban.sock"),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn request_names_are_fixed() {
        assert_eq!(
            Request::parse("fail2ban-status"),
            Some(Request::Fail2banStatus)
        );
        assert_eq!(
            Request::parse("fail2ban-status\r"),
            Some(Request::Fail2banStatus)
        );
        assert_eq!(Request::parse("fail2ban-status extra"), None);
        assert_eq!(Request::parse("audit-status"), Some(Request::AuditStatus));
        assert_eq!(Request::parse("status"), None);
    }

    #[test]
    fn socket_mode_and_stale_socket_replaced_but_not_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        drop(bind(&opts.listen, None).unwrap());
        let listener = bind(&opts.listen, None).expect("a stale socket is replaced");
        let mode = std::fs::metadata(&opts.listen)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        drop(listener);
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(bind(&file, None).is_err());
        assert!(bind(&dir.path().join("s2"), Some("no-such-group-rme")).is_err());
    }

    #[test]
    fn answers_json_errors_and_ignores_extra_input() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        let listener = bind(&opts.listen, None).unwrap();
        let server_opts = opts.clone();
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                let (s, _) = listener.accept().unwrap();
                serve(s, &server_opts, Instant::now() + CLIENT_TIMEOUT);
            }
        });
        // fail2ban is not there: the error travels back as JSON and names the socket.
        let e = ask(&opts.listen, Request::Fail2banStatus, opts.timeout).unwrap_err();
        assert!(format!("{e:#}").contains("no-fail2ban.sock"), "{e:#}");
        // An unknown request: an error answer, and the request is not echoed back.
        let mut raw = UnixStream::connect(&opts.listen).unwrap();
        raw.write_all(b"status sshd; rm -rf /\n").unwrap();
        let mut body = String::new();
        raw.read_to_string(&mut body).unwrap();
        let answer: Answer = serde_json::from_str(&body).unwrap();
        assert!(
            matches!(&answer, Answer::Error(e) if e.contains("unknown request") && !e.contains("rm"))
        );
        // A client that floods: the helper reads MAX_REQUEST bytes, answers, and moves on
        // (the client may see a reset as unread bytes are dropped).
        let mut raw = UnixStream::connect(&opts.listen).unwrap();
        let _ = raw.write_all(&[b'x'; 100_000]);
        server.join().unwrap();
    }
}
