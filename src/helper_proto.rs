//! What `rme helper` and its clients say to each other: the closed set of
//! [`Request`]s, the [`Answer`] on the wire, and the client [`ask`] the sources
//! call. The privileged server that answers is `helper.rs`.

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Where `rme helper` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rme/helper.sock";
/// The longest request line read from a client; every request name is shorter.
pub const MAX_REQUEST: usize = 64;
/// Answers larger than this are refused by [`ask`].
const MAX_ANSWER: usize = 16 << 20;

/// The closed set of questions the helper answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// fail2ban's jails and counts, as the fail2ban source's `Fail2banStatus`.
    Fail2banStatus,
    /// The kernel's audit status (AUDIT_GET), as the audit source's `AuditStatus`.
    AuditStatus,
}

impl Request {
    pub const ALL: [Request; 2] = [Request::Fail2banStatus, Request::AuditStatus];

    /// The line a client sends (without its newline).
    pub fn name(self) -> &'static str {
        match self {
            Request::Fail2banStatus => "fail2ban-status",
            Request::AuditStatus => "audit-status",
        }
    }

    pub fn parse(line: &str) -> Option<Request> {
        Request::ALL
            .into_iter()
            .find(|r| r.name() == line.trim_end())
    }
}

/// One answer on the wire: `{"ok": …}` or `{"error": "…"}`, then the helper closes.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ok(serde_json::Value),
    Error(String),
}

/// Client side: asks the helper at `path` one request and returns its JSON value.
pub fn ask(path: &Path, request: Request, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::PermissionDenied => ": add rme's user to the helper's `--group`",
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => ": is `rme helper` running?",
            _ => "",
        };
        anyhow::Error::new(e).context(format!(
            "connecting to rme helper at {}{hint}",
            path.display()
        ))
    })?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{}\n", request.name()).as_bytes())?;
    let mut body = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("rme helper did not answer in time");
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading rme helper's answer"),
        }
        if body.len() > MAX_ANSWER {
            bail!("rme helper's answer exceeds {MAX_ANSWER} bytes");
        }
    }
    match serde_json::from_slice(&body).context("rme helper's answer is not JSON")? {
        Answer::Ok(v) => Ok(v),
        Answer::Error(e) => bail!("rme helper ({}): {e}", request.name()),
    }
}
