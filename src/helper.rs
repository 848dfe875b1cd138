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
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::helper_proto::{Answer, MAX_REQUEST, Request};

/// How long a client may take to send its request line (one short write):
/// one deadline for the whole line, however slowly it drips in.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a client may take to take its answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients served at once. When full, a new client takes the place of the
/// oldest one still waiting for its request line (security review 3, F11: 32
/// idle connections re-opened at once used to shut every other client out);
/// only when all are being answered is the new one closed.
pub const MAX_CLIENTS: usize = 32;

/// Clients still waiting for their request line, oldest first: a clone of
/// each stream, to shut it down when a newcomer needs its place.
#[derive(Default)]
struct Waiting(std::sync::Mutex<std::collections::VecDeque<(u64, UnixStream)>>);

impl Waiting {
    fn add(&self, id: u64, stream: &UnixStream) {
        if let Ok(clone) = stream.try_clone() {
            self.lock().push_back((id, clone));
        }
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|(i, _)| *i != id);
    }

    /// Shuts the oldest waiting client's connection (its read ends at once); false if none waits.
    fn evict(&self) -> bool {
        let oldest = self.lock().pop_front();
        match oldest {
            Some((_, s)) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, UnixStream)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
/// time (a newcomer replaces the oldest still waiting for its line), each
/// bounded by one deadline.
pub fn run(options: &HelperOptions) -> anyhow::Result<()> {
    let listener = bind(&options.listen, options.group.as_deref())?;
    let names: Vec<_> = Request::ALL.iter().map(|r| r.name()).collect();
    tracing::info!(socket = %options.listen.display(), requests = ?names, "rme helper listening");
    let options = std::sync::Arc::new(options.clone());
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let waiting = std::sync::Arc::new(Waiting::default());
    let mut warned = None::<Instant>;
    for (id, conn) in (0u64..).zip(listener.incoming()) {
        match conn {
            Ok(stream) => {
                use std::sync::atomic::Ordering::SeqCst;
                if active.load(SeqCst) >= MAX_CLIENTS && !waiting.evict() {
                    if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(
                            "rme helper: {MAX_CLIENTS} clients being answered at once; closing a new one"
                        );
                        warned = Some(Instant::now());
                    }
                    continue;
                }
                active.fetch_add(1, SeqCst);
                waiting.add(id, &stream);
                let (options, done, waits) = (options.clone(), active.clone(), waiting.clone());
                let spawned = std::thread::Builder::new()
                    .name("helper-client".into())
                    .spawn(move || {
                        serve(stream, &options, Instant::now() + REQUEST_TIMEOUT, || {
                            waits.remove(id)
                        });
                        waits.remove(id);
                        done.fetch_sub(1, SeqCst);
                    });
                if let Err(e) = spawned {
                    waiting.remove(id);
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
///
/// Nothing here follows a symlink someone could swap in for the new socket
/// (security review 3, F10: `chown`/`chmod` by path gave a symlink's target to
/// the group): the directories on its path must be writable by their owner
/// only (root or the helper's user) or sticky, the group is set with `lchown` and the mode
/// with `fchmodat(AT_SYMLINK_NOFOLLOW)`, which refuses a symlink.
fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    let gid = group.map(group_id).transpose()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    check_dir(dir)?;
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
        std::os::unix::fs::lchown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    chmod_nofollow(path, 0o660).with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// The socket's directory, and every directory above it, must not let anyone
/// but root or us replace the socket (or a directory on its path) between its
/// creation and its chown/chmod: owned by root or us, and not writable by
/// group or others unless sticky (as /tmp, where others cannot rename what
/// they do not own).
fn check_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let full =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for d in full.ancestors() {
        let m = std::fs::metadata(d).with_context(|| format!("reading {}", d.display()))?;
        if m.uid() != 0 && m.uid() != me {
            bail!(
                "{}: owned by uid {}; the helper's socket needs directories owned by root or uid {me} on its path",
                d.display(),
                m.uid()
            );
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            bail!(
                "{}: writable by group or others (mode {:04o}), who could swap the socket for a symlink; put the socket in a directory only its owner can write (e.g. /run/rme, 0755)",
                d.display(),
                m.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// `chmod` that refuses a symlink instead of following it.
fn chmod_nofollow(path: &Path, mode: libc::mode_t) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid C string; fchmodat reads it and changes nothing else.
    let r = unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
fn serve(mut stream: UnixStream, options: &HelperOptions, deadline: Instant, read: impl FnOnce()) {
    let request = read_request(&mut stream, deadline);
    read();
    let answer = match request {
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
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

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
                serve(s, &server_opts, Instant::now() + REQUEST_TIMEOUT, || {});
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

    /// Security review 3, F10: a member of the socket's group who can write
    /// its directory swaps the new socket for a symlink (on inotify's
    /// IN_CREATE, as the review's racer.c) between bind() and chown/chmod;
    /// root then gave the symlink's target to the group, mode 0660. Here a
    /// thread races every bind the same way: the victim keeps its owner, group
    /// and mode, and every start the racer won is refused.
    #[test]
    fn a_symlink_swapped_in_for_the_socket_never_redirects_chown_or_chmod() {
        use std::os::unix::ffi::OsStrExt as _;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let sockdir = dir.path().join("run");
        std::fs::create_dir(&sockdir).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        let sock = sockdir.join("helper.sock");
        let stop = Arc::new(AtomicBool::new(false));
        let racer = {
            let (sockdir, victim, sock, stop) =
                (sockdir.clone(), victim.clone(), sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let lnk = sockdir.join(".lnk");
                // SAFETY: plain inotify calls on a descriptor owned by this thread.
                let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK) };
                assert!(fd >= 0);
                let cdir = std::ffi::CString::new(sockdir.as_os_str().as_bytes()).unwrap();
                // SAFETY: valid descriptor and C string.
                assert!(
                    unsafe { libc::inotify_add_watch(fd, cdir.as_ptr(), libc::IN_CREATE) } >= 0
                );
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&lnk);
                    let _ = std::os::unix::fs::symlink(&victim, &lnk);
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                        continue;
                    }
                    // SAFETY: reads into a buffer of the given size.
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    let n = usize::try_from(n).unwrap_or(0);
                    let created = buf[..n].windows(11).any(|w| w == b"helper.sock");
                    if created {
                        let _ = std::fs::rename(&lnk, &sock);
                    }
                }
                // SAFETY: closing the descriptor opened above.
                unsafe { libc::close(fd) };
            })
        };
        let (mut won, mut starts) = (0, 0);
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while (won < 5 || starts < 200) && std::time::Instant::now() < end {
            if std::fs::symlink_metadata(&sock).is_ok() {
                std::fs::remove_file(&sock).unwrap();
            }
            starts += 1;
            let bound = bind(&sock, Some("65534"));
            if std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_symlink()) {
                won += 1;
            }
            drop(bound);
            let now = std::fs::metadata(&victim).unwrap();
            assert_eq!(
                (now.mode() & 0o7777, now.uid(), now.gid()),
                (before.mode() & 0o7777, before.uid(), before.gid()),
                "start {starts}: the victim was changed through the swapped symlink"
            );
        }
        stop.store(true, Ordering::Relaxed);
        racer.join().unwrap();
        eprintln!("{starts} starts, racer swapped the socket in {won}");
        assert!(won > 0, "the race was never run: {starts} starts");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", bind(&open.join("helper.sock"), None).unwrap_err());
        assert!(e.contains("writable by group or others"), "{e}");
        assert!(std::fs::symlink_metadata(open.join("helper.sock")).is_err());
    }
}
