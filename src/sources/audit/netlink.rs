//! Kernel audit status over netlink: one `AUDIT_GET` request, its ACK and its
//! `struct audit_status` reply.
//!
//! The tricky point: the kernel acknowledges the request (`NLMSG_ERROR`, error 0)
//! *before* its own thread sends the status, so we read until both arrived,
//! matching our sequence number. Only `AUDIT_GET` is ever sent: `AUDIT_SET`
//! with the LOST.name mask would reset the kernel's counter for everyone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sources::probe::Live;
use crate::store::{Metric, Series, Store};

const NETLINK_AUDIT: libc::c_int = 9;
const AUDIT_GET: u16 = 1000;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const HEADER_LEN: usize = 16;
/// Oldest kernels send the status up to `backlog`; newer ones append fields.
const MIN_STATUS_LEN: usize = 32;

/// `struct audit_status` (linux/audit.h); fields a kernel did not send are `None`.
/// Serializable so a privileged helper can hand it over as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditStatus {
    pub enabled: u32,
    pub failure: u32,
    pub pid: u32,
    pub rate_limit: u32,
    pub backlog_limit: u32,
    pub lost: u32,
    pub backlog: u32,
    pub feature_bitmap: Option<u32>,
    pub backlog_wait_time: Option<u32>,
    pub backlog_wait_time_actual: Option<u32>,
}

/// A netlink message answering our request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `NLMSG_ERROR` with error 0.
    Ack,
    /// `NLMSG_ERROR` with an errno (positive, e.g. `libc::EPERM`).
    Refused(i32),
    Status(AuditStatus),
}

/// A datagram that is not valid netlink.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    #[error("netlink message truncated ({have} bytes left, header says {want})")]
    Truncated { have: usize, want: usize },
    #[error("audit_status reply of {0} bytes, fewer than {MIN_STATUS_LEN}")]
    ShortStatus(usize),
    #[error("NLMSG_ERROR without an error code")]
    ShortError,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{call}: {}", std::io::Error::from_raw_os_error(*errno))]
    Os { call: &'static str, errno: i32 },
    #[error("the kernel refused AUDIT_GET: {}", std::io::Error::from_raw_os_error(*.0))]
    Refused(i32),
    #[error("no audit_status reply within {0:?}")]
    Timeout(Duration),
    #[error("malformed reply: {0}")]
    Malformed(#[from] ReplyError),
}

impl QueryError {
    /// A short, bounded name for the `error` label.
    pub fn label(&self) -> &'static str {
        match self {
            QueryError::Os { errno, .. } | QueryError::Refused(errno) => errno_label(*errno),
            QueryError::Timeout(_) => "timeout",
            QueryError::Malformed(_) => "malformed",
        }
    }
}

fn errno_label(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "eperm",
        libc::EACCES => "eacces",
        libc::ECONNREFUSED => "econnrefused",
        libc::EPROTONOSUPPORT => "eprotonosupport",
        libc::EAFNOSUPPORT => "eafnosupport",
        libc::EINVAL => "einval",
        libc::ENOBUFS => "enobufs",
        libc::EMFILE | libc::ENFILE => "emfile",
        _ => "other",
    }
}

/// Splits one datagram into the messages with sequence number `seq`; others are skipped.
pub fn parse_datagram(buf: &[u8], seq: u32) -> Result<Vec<Reply>, ReplyError> {
    let mut replies = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < HEADER_LEN {
            return Err(ReplyError::Truncated {
                have: rest.len(),
                want: HEADER_LEN,
            });
        }
        let len = u32_at(rest, 0) as usize;
        if len < HEADER_LEN || len > rest.len() {
            return Err(ReplyError::Truncated {
                have: rest.len(),
                want: len,
            });
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let payload = &rest[HEADER_LEN..len];
        if u32_at(rest, 8) == seq {
            match kind {
                NLMSG_ERROR => replies.push(parse_error(payload)?),
                AUDIT_GET => replies.push(Reply::Status(parse_status(payload)?)),
                _ => {}
            }
        }
        // Messages are padded to 4 bytes; the last one may not be.
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(replies)
}

fn parse_error(payload: &[u8]) -> Result<Reply, ReplyError> {
    let code: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(ReplyError::ShortError)?;
    Ok(match i32::from_ne_bytes(code) {
        0 => Reply::Ack,
        e => Reply::Refused(e.checked_neg().unwrap_or(i32::MAX)),
    })
}

/// `struct audit_status`: 32 bytes on old kernels, 36, 40 or 44 on newer ones.
pub fn parse_status(payload: &[u8]) -> Result<AuditStatus, ReplyError> {
    if payload.len() < MIN_STATUS_LEN {
        return Err(ReplyError::ShortStatus(payload.len()));
    }
    let field = |i: usize| (payload.len() >= 4 * (i + 1)).then(|| u32_at(payload, 4 * i));
    let word = |i: usize| u32_at(payload, 4 * i);
    // Word 0 is `mask`, only meaningful in AUDIT_SET.
    Ok(AuditStatus {
        enabled: word(1),
        failure: word(2),
        pid: word(3),
        rate_limit: word(4),
        backlog_limit: word(5),
        lost: word(6),
        backlog: word(7),
        feature_bitmap: field(8),
        backlog_wait_time: field(9),
        backlog_wait_time_actual: field(10),
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The 16-byte `AUDIT_GET` request.
pub fn request(seq: u32) -> [u8; HEADER_LEN] {
    let mut m = [0u8; HEADER_LEN];
    m[0..4].copy_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// Asks the kernel for its audit status, waiting at most `timeout` in all.
pub fn query(seq: u32, timeout: Duration) -> Result<AuditStatus, QueryError> {
    let socket = open()?;
    let kernel = kernel_address();
    let req = request(seq);
    // SAFETY: `req` and `kernel` outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(last_error("sendto"));
    }
    collect(&socket, seq, Instant::now() + timeout, timeout)
}

/// Reads until both the ACK and the status came (in either order), or the deadline.
fn collect(
    socket: &OwnedFd,
    seq: u32,
    deadline: Instant,
    timeout: Duration,
) -> Result<AuditStatus, QueryError> {
    let mut buf = vec![0u8; 8192];
    let (mut acked, mut status) = (false, None);
    while !(acked && status.is_some()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        set_receive_timeout(socket, left)?;
        let Some(n) = receive_from_kernel(socket, &mut buf)? else {
            continue;
        };
        for reply in parse_datagram(&buf[..n], seq)? {
            match reply {
                Reply::Ack => acked = true,
                Reply::Refused(errno) => return Err(QueryError::Refused(errno)),
                Reply::Status(s) => status = Some(s),
            }
        }
    }
    // A status without its ACK is still the kernel's answer.
    status.ok_or(QueryError::Timeout(timeout))
}

fn open() -> Result<OwnedFd, QueryError> {
    // SAFETY: plain syscall; the fd is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        return Err(last_error("socket(AF_NETLINK, NETLINK_AUDIT)"));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let local = kernel_address(); // nl_pid 0: the kernel picks our port id
    // SAFETY: `local` is a valid sockaddr_nl for the duration of the call.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const local).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error("bind"));
    }
    Ok(socket)
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is valid.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

fn set_receive_timeout(socket: &OwnedFd, left: Duration) -> Result<(), QueryError> {
    let tv = libc::timeval {
        tv_sec: left.as_secs().min(60) as libc::time_t,
        tv_usec: left.subsec_micros().max(1) as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error("setsockopt(SO_RCVTIMEO)"));
    }
    Ok(())
}

/// One datagram from the kernel (port id 0); `None` after a timeout, an
/// interruption, or a datagram from anyone else.
fn receive_from_kernel(socket: &OwnedFd, buf: &mut [u8]) -> Result<Option<usize>, QueryError> {
    let mut from = kernel_address();
    let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf`, `from` and `from_len` are valid and sized for the call.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(last_error_of(e, "recvfrom")),
        };
    }
    Ok((from.nl_pid == 0).then_some(n as usize))
}

fn last_error(call: &'static str) -> QueryError {
    last_error_of(std::io::Error::last_os_error(), call)
}

fn last_error_of(e: std::io::Error, call: &'static str) -> QueryError {
    QueryError::Os {
        call,
        errno: e.raw_os_error().unwrap_or(0),
    }
}

/// Longest wait for the kernel's answer, per flush.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

const UP: Metric = Metric::gauge(
    "audit_status_up",
    "1 if the kernel's audit status (AUDIT_GET, directly or through rme helper) was read at the last flush, else 0.",
);
const ERRORS: Metric = Metric::counter(
    "audit_status_errors_total",
    "Failed audit status reads, by error (eperm, econnrefused, eprotonosupport, timeout, helper…).",
);
pub(super) const ENABLED: Metric = Metric::gauge(
    "audit_enabled",
    "Kernel auditing: 0 off, 1 on, 2 locked (immutable until reboot).",
);
const FAILURE_MODE: Metric = Metric::gauge(
    "audit_failure_mode",
    "What the kernel does on audit failure: 0 silent, 1 printk, 2 panic.",
);
const DAEMON_PID: Metric = Metric::gauge(
    "audit_daemon_pid",
    "PID of the registered audit daemon; 0 = none (records go to the kernel log).",
);
const RATE_LIMIT: Metric = Metric::gauge(
    "audit_rate_limit",
    "Kernel audit rate limit in messages per second; 0 = none.",
);
pub(super) const BACKLOG_LIMIT: Metric =
    Metric::gauge("audit_backlog_limit", "Kernel audit backlog queue size.");
const BACKLOG: Metric = Metric::gauge(
    "audit_backlog",
    "Records waiting in the kernel audit backlog queue.",
);
pub(super) const LOST: Metric = Metric::counter(
    "audit_lost_total",
    "Audit records the kernel dropped since boot (resets with auditctl --reset-lost).",
);
pub(super) const WAIT_TIME: Metric = Metric::gauge(
    "audit_backlog_wait_time_jiffies",
    "Kernel backlog_wait_time, in kernel jiffies (HZ is kernel-specific).",
);
pub(super) const WAIT_TIME_ACTUAL: Metric = Metric::counter(
    "audit_backlog_wait_time_actual_jiffies_total",
    "Time processes waited on a full audit backlog, in kernel jiffies (kernels ≥ 5.9).",
);

/// Every metric the status probe emits, for `describe`.
const METRICS: &[Metric] = &[
    UP,
    ERRORS,
    ENABLED,
    FAILURE_MODE,
    DAEMON_PID,
    RATE_LIMIT,
    BACKLOG_LIMIT,
    BACKLOG,
    LOST,
    WAIT_TIME,
    WAIT_TIME_ACTUAL,
];

/// Reads the kernel's audit status once per flush.
#[derive(Debug, Default)]
pub struct AuditStatusProbe {
    /// Ask this `rme helper` socket instead of the kernel.
    helper: Option<PathBuf>,
    /// The error of the previous probe, so a lasting one is logged once.
    last_error: Option<&'static str>,
}

impl AuditStatusProbe {
    pub fn new(helper: Option<PathBuf>) -> AuditStatusProbe {
        AuditStatusProbe {
            helper,
            last_error: None,
        }
    }
}

/// Asks the kernel directly, with a fresh sequence number.
pub fn query_kernel(timeout: Duration) -> Result<AuditStatus, QueryError> {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    query(SEQ.fetch_add(1, Ordering::Relaxed), timeout)
}

impl Live for AuditStatusProbe {
    /// The status, or the error label and a message saying what to do.
    type Reading = Result<AuditStatus, (&'static str, String)>;

    fn source(&self) -> &'static str {
        "audit"
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn read(&mut self) -> Self::Reading {
        let Some(socket) = &self.helper else {
            return query_kernel(QUERY_TIMEOUT)
                .map_err(|e| (e.label(), format!("{e}. {}", advice(&e))));
        };
        let asked = crate::helper_proto::ask(
            socket,
            crate::helper_proto::Request::AuditStatus,
            QUERY_TIMEOUT,
        )
        .and_then(|v| Ok(serde_json::from_value::<AuditStatus>(v)?));
        asked.map_err(|e| {
            let hint = "`rme helper` needs CAP_AUDIT_CONTROL (run it as root) and rme's user in its `--group`";
            ("helper", format!("{e:#}. {hint}"))
        })
    }

    fn record(&mut self, reading: Self::Reading, store: &mut Store) -> anyhow::Result<()> {
        match reading {
            Ok(status) => {
                if self.last_error.take().is_some() {
                    tracing::info!("audit status: readable again");
                }
                store.set(Series::new(UP.name, &[]), 1.0);
                record_status(&status, store);
            }
            Err((label, message)) => {
                if self.last_error != Some(label) {
                    tracing::warn!(error = label, "audit status: {message}");
                }
                self.last_error = Some(label);
                store.set(Series::new(UP.name, &[]), 0.0);
                store.inc(Series::new(ERRORS.name, &[("error", label)]), 1);
                store.inc(
                    Series::new(crate::sources::PROBE_ERRORS.name, &[("source", "audit")]),
                    1,
                );
            }
        }
        // Failures are counted above; returning them would log the warning again at every flush.
        Ok(())
    }
}

/// What the user can do about a failed query.
pub fn advice(e: &QueryError) -> &'static str {
    match e.label() {
        "eperm" => {
            "Reading the kernel audit status needs CAP_AUDIT_CONTROL (in the initial user and PID namespaces). \
             Grant it to rme.service with `AmbientCapabilities=CAP_AUDIT_CONTROL` and \
             `CapabilityBoundingSet=CAP_AUDIT_CONTROL`, or run `rme helper` as root and set `helper = \"/run/rme/helper.sock\"` in the audit source, \
             or set `netlink = false` in the audit source"
        }
        "econnrefused" => {
            "The kernel only answers AUDIT_GET in the initial user namespace: run rme on the host, \
             not in a container, or set `netlink = false` in the audit source"
        }
        "eprotonosupport" => {
            "This kernel has no audit support (CONFIG_AUDIT); set `netlink = false` in the audit source"
        }
        _ => "It is retried at the next flush",
    }
}

/// Sets the status metrics (also for a status relayed by a privileged helper).
pub fn record_status(s: &AuditStatus, store: &mut Store) {
    let gauges = [
        (ENABLED.name, s.enabled),
        (FAILURE_MODE.name, s.failure),
        (DAEMON_PID.name, s.pid),
        (RATE_LIMIT.name, s.rate_limit),
        (BACKLOG_LIMIT.name, s.backlog_limit),
        (BACKLOG.name, s.backlog),
    ];
    for (name, v) in gauges {
        store.set(Series::new(name, &[]), f64::from(v));
    }
    store.set_counter(Series::new(LOST.name, &[]), u64::from(s.lost));
    if let Some(v) = s.backlog_wait_time {
        store.set(Series::new(WAIT_TIME.name, &[]), f64::from(v));
    }
    if let Some(v) = s.backlog_wait_time_actual {
        store.set_counter(Series::new(WAIT_TIME_ACTUAL.name, &[]), u64::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = HEADER_LEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    fn ack(seq: u32, errno: i32) -> Vec<u8> {
        let mut p = (-errno).to_ne_bytes().to_vec();
        p.extend_from_slice(&request(seq)); // the kernel echoes the request header
        message(NLMSG_ERROR, seq, &p)
    }

    /// The status this sandbox's kernel sent (sources.md §3.1), cut to `len` bytes.
    fn status_payload(len: usize) -> Vec<u8> {
        let words = [0u32, 0, 1, 0, 0, 64, 7, 3, 127, 15000, 42];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        bytes[..len].to_vec()
    }

    #[test]
    fn ack_before_status_both_found_in_order() {
        let mut dgram = ack(7, 0);
        dgram.extend(message(AUDIT_GET, 7, &status_payload(44)));
        let replies = parse_datagram(&dgram, 7).unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0], Reply::Ack);
        let Reply::Status(s) = replies[1] else {
            panic!("{replies:?}")
        };
        assert_eq!((s.enabled, s.failure, s.pid, s.rate_limit), (0, 1, 0, 0));
        assert_eq!((s.backlog_limit, s.lost, s.backlog), (64, 7, 3));
        assert_eq!(
            (
                s.feature_bitmap,
                s.backlog_wait_time,
                s.backlog_wait_time_actual
            ),
            (Some(127), Some(15000), Some(42))
        );
    }

    #[test]
    fn shorter_status_of_older_kernels_leaves_new_fields_out() {
        let want = [
            (32, None, None, None),
            (36, Some(127), None, None),
            (40, Some(127), Some(15000), None),
            (44, Some(127), Some(15000), Some(42)),
        ];
        for (len, bitmap, wait, actual) in want {
            let s = parse_status(&status_payload(len)).unwrap();
            assert_eq!(
                (
                    s.feature_bitmap,
                    s.backlog_wait_time,
                    s.backlog_wait_time_actual
                ),
                (bitmap, wait, actual)
            );
            assert_eq!(s.backlog_limit, 64, "len {len}");
        }
        // a future, longer struct: extra words are ignored
        let mut long = status_payload(44);
        long.extend_from_slice(&9u32.to_ne_bytes());
        assert_eq!(
            parse_status(&long).unwrap().backlog_wait_time_actual,
            Some(42)
        );
    }

    #[test]
    fn refusal_carries_the_errno() {
        assert_eq!(
            parse_datagram(&ack(3, libc::EPERM), 3).unwrap(),
            vec![Reply::Refused(libc::EPERM)]
        );
    }

    #[test]
    fn other_sequence_numbers_are_skipped() {
        let mut dgram = message(AUDIT_GET, 99, &status_payload(44));
        dgram.extend(ack(5, 0));
        assert_eq!(parse_datagram(&dgram, 5).unwrap(), vec![Reply::Ack]);
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        assert_eq!(parse_datagram(&[], 1).unwrap(), vec![]);
        assert!(matches!(
            parse_datagram(&[1, 2, 3], 1),
            Err(ReplyError::Truncated { .. })
        ));
        let mut full = message(AUDIT_GET, 1, &status_payload(44));
        full.truncate(30);
        assert!(matches!(
            parse_datagram(&full, 1),
            Err(ReplyError::Truncated { .. })
        ));
        let short = message(AUDIT_GET, 1, &status_payload(28));
        assert_eq!(parse_datagram(&short, 1), Err(ReplyError::ShortStatus(28)));
        assert_eq!(
            parse_datagram(&message(NLMSG_ERROR, 1, &[0, 0]), 1),
            Err(ReplyError::ShortError)
        );
        // a header claiming fewer than 16 bytes would loop forever if accepted
        let mut tiny = message(AUDIT_GET, 1, &[]);
        tiny[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse_datagram(&tiny, 1).is_err());
        let mut rng = fastrand::Rng::with_seed(6);
        for _ in 0..20_000 {
            let len = rng.usize(0..120);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if len >= 4 && rng.bool() {
                bytes[0..4].copy_from_slice(&(rng.u32(0..len as u32 + 8)).to_ne_bytes());
            }
            let _ = parse_datagram(&bytes, rng.u32(0..3));
        }
    }

    #[test]
    fn request_is_an_audit_get_asking_for_an_ack() {
        let r = request(0x0102_0304);
        assert_eq!(u32_at(&r, 0), 16);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 1000);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 1 | 4);
        assert_eq!(u32_at(&r, 8), 0x0102_0304);
    }

    #[test]
    fn labels_are_bounded_names() {
        assert_eq!(QueryError::Refused(libc::EPERM).label(), "eperm");
        assert_eq!(
            QueryError::Refused(libc::ECONNREFUSED).label(),
            "econnrefused"
        );
        let no_audit = QueryError::Os {
            call: "socket",
            errno: libc::EPROTONOSUPPORT,
        };
        assert_eq!(no_audit.label(), "eprotonosupport");
        assert_eq!(QueryError::Refused(12345).label(), "other");
        assert_eq!(
            QueryError::Timeout(Duration::from_secs(1)).label(),
            "timeout"
        );
    }
}
