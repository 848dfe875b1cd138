//! Writes snapshots as statsd lines (`name:value|c`, `name:value|g`) over UDP
//! or TCP, for Etsy statsd and its graphite backend, or any DogStatsD agent.
//!
//! The tricky point: statsd adds counters up within each of its flushes, so a
//! cumulative total re-sent every interval would be counted again and again.
//! This sink sends each counter's *change* since the value it last encoded, and
//! keeps those last values in the state file (`save_state`) so restarts and
//! `rme push --once` runs do not send anything twice. `last` moves on at encode
//! time: the body is spooled before it is sent, so an encoded delta is still
//! owed until the spool delivers it.
//!
//! A crash between spooling a body and saving the state file would leave the
//! spooled delta *and* the old `last` (the re-read lines then make the same
//! delta again). So each body's spool record carries a note with the values
//! its deltas were taken to (`Batch::note`), committed by the same rename, and
//! a starting sink replays the notes of what is still spooled over its saved
//! state (`replay_note`). What is left is the window between `sendto` and the
//! record's removal: that one body goes out again after a crash.
//!
//! What statsd cannot promise: it never answers, so `Ok` from a send means
//! only that the kernel took the bytes. Over UDP a lost datagram is lost; over
//! TCP what the kernel took before statsd died is lost; and statsd keeps what
//! it read in memory until its next flush. rme keeps a body when it *knows*
//! it was not taken (connection refused or closed, ICMP port unreachable, a
//! write that does not drain within 5 s, a failed `health` probe on the
//! management port) and never counts it as sent; it cannot know more. Exact
//! counts need remote_write or OTLP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};

use super::{Accepted, Batch, SendError, Sink};
use crate::invalid::Invalid;
use crate::store::{Series, Snapshot, Value};

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatsdConfig {
    /// Sink name (spool directory, self-metric label). Default `statsd`.
    #[serde(default)]
    pub name: Option<String>,
    /// statsd's `host:port`. Default `127.0.0.1:8125`.
    #[serde(default = "default_address")]
    pub address: String,
    /// `udp` (default) or `tcp` (statsd with `server: "./servers/tcp"`).
    /// Neither can confirm delivery: statsd never answers. Over UDP a datagram
    /// lost on the way (or dropped by a statsd too busy to read it) is lost for
    /// good; only a local statsd that is down is noticed (ICMP port
    /// unreachable) and the data kept. Over TCP a refused or closed connection
    /// is noticed and the data kept, but what the kernel took before statsd
    /// died (or hung, then was killed) is lost. Either way, what statsd took
    /// but had not yet flushed to its backend dies with it. For exact counts
    /// use `remote_write` or `otlp`, which delete nothing before the receiver's
    /// answer.
    #[serde(default)]
    pub protocol: Protocol,
    /// statsd's management port (Etsy statsd's `mgmt_address`:`mgmt_port`,
    /// e.g. `127.0.0.1:8126`). When set, rme asks it `health` before each
    /// write and writes only after `health: up` within 2 s: a statsd that has
    /// hung (stopped, overloaded) or was set `health down` is found before more
    /// data is handed to it, the data stays in the spool, and the hold-up is
    /// logged and counted in `rme_sink_health_failures_total`. What was written
    /// just before the hang is still at statsd's mercy. Default none (no probe).
    #[serde(default)]
    pub management_address: Option<String>,
    /// Put before every metric name with a dot, e.g. `rme.web1`. Letters, digits,
    /// `_`, `-` and inner dots only. Default none.
    #[serde(default)]
    pub prefix: Option<String>,
    /// How labels travel: `dogstatsd` (`name:1|c|#jail:sshd`, default; Etsy
    /// statsd ≥ 0.9 and Datadog turn them into tags), `graphite`
    /// (`name;jail=sshd:1|c`, graphite ≥ 1.1 tagged series) or `path`
    /// (`name.jail_sshd:1|c`, one path level per label, for graphite without tags).
    #[serde(default)]
    pub tag_style: TagStyle,
    /// Largest UDP datagram (or TCP write) in bytes; lines are packed up to it.
    /// 1432 fits Fast Ethernet, 8932 jumbo frames, 512 the commodity Internet. Default 1432.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStyle {
    #[default]
    Dogstatsd,
    Graphite,
    Path,
}

fn default_address() -> String {
    "127.0.0.1:8125".to_string()
}

const fn default_max_packet_bytes() -> usize {
    1432
}

/// Largest payload of one IPv4 UDP datagram.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Connect and write timeout for TCP.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long statsd's management port has to answer `health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `health` answer read (statsd's is `health: up\n`).
const HEALTH_ANSWER_MAX: u64 = 64;

/// Whether `addr` is `host:port` with a host and a port other than 0.
fn is_host_port(addr: &str) -> bool {
    let port = addr
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0)
}

impl StatsdConfig {
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if !is_host_port(&self.address) {
            return Err(Invalid::new(
                format!("{key}.address"),
                format!("'{}' is not host:port (e.g. 127.0.0.1:8125)", self.address),
            ));
        }
        if let Some(m) = &self.management_address
            && !is_host_port(m)
        {
            return Err(Invalid::new(
                format!("{key}.management_address"),
                format!("'{m}' is not host:port (statsd's mgmt port, e.g. 127.0.0.1:8126)"),
            ));
        }
        if !(64..=MAX_UDP_PAYLOAD).contains(&self.max_packet_bytes) {
            return Err(Invalid::new(
                format!("{key}.max_packet_bytes"),
                format!("must be between 64 and {MAX_UDP_PAYLOAD}"),
            ));
        }
        if let Some(prefix) = &self.prefix {
            let ok = !prefix.is_empty()
                && prefix
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(is_word_char));
            if !ok {
                return Err(Invalid::new(
                    format!("{key}.prefix"),
                    format!("'{prefix}': use letters, digits, '_', '-' and dots between them"),
                ));
            }
        }
        Ok(())
    }
}

/// Characters kept as they are in names, label names and values.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Makes `s` safe for statsd keys and graphite tags, one output char per input
/// char so addresses stay readable: `2001:db8::5` → `2001_db8__5`. `/` becomes `-`
/// (as statsd does itself), `.` is kept only with `keep_dots`, anything else
/// (`:`, `;`, `=`, `,`, `|`, `#`, spaces, non-ASCII) becomes `_`.
pub fn sanitize(s: &str, keep_dots: bool) -> String {
    s.chars()
        .map(|c| match c {
            c if is_word_char(c) => c,
            '.' if keep_dots => '.',
            '/' => '-',
            _ => '_',
        })
        .collect()
}

/// The last counter value encoded for one series, and when that counter started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sent {
    series: Series,
    value: u64,
    start_ms: i64,
}

/// What `save_state` writes: the counters as last encoded. A body's note has
/// the same shape, with the counters whose deltas that body carries.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    counters: Vec<Sent>,
}

enum Conn {
    None,
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct Statsd {
    name: String,
    config: StatsdConfig,
    /// Last encoded value per counter series: the base of the next delta.
    last: BTreeMap<Arc<Series>, (u64, i64)>,
    /// Series whose `last` came from a spooled note: their start time is not
    /// compared once, because a counter first seen in the flush a crash cut
    /// short is created again (with a new start) when its lines are re-read.
    replayed: std::collections::BTreeSet<Series>,
    conn: Conn,
    /// The connection to statsd's management port, kept between probes;
    /// dropped after any failed probe (a late answer must not pass for the next).
    mgmt: Option<tokio::io::BufReader<TcpStream>>,
    /// Failed health probes not yet taken by [`Sink::take_health_failures`].
    health_failures: u64,
}

impl Statsd {
    pub fn new(name: String, config: &StatsdConfig) -> anyhow::Result<Statsd> {
        Ok(Statsd {
            name,
            config: config.clone(),
            last: BTreeMap::new(),
            replayed: Default::default(),
            conn: Conn::None,
            mgmt: None,
            health_failures: 0,
        })
    }

    /// What statsd must add for this counter: the change since the last
    /// encoded value, or the whole value after a reset (lower value or new start).
    fn delta(&self, series: &Series, value: u64, start_ms: i64) -> u64 {
        let same_start = |start| start == start_ms || self.replayed.contains(series);
        match self.last.get(series) {
            Some(&(last, start)) if same_start(start) && value >= last => value - last,
            _ => value,
        }
    }

    /// The statsd key with its tags, and the DogStatsD suffix (empty otherwise).
    fn key(&self, series: &Series) -> (String, String) {
        let mut key = String::new();
        if let Some(prefix) = &self.config.prefix {
            key.push_str(prefix);
            key.push('.');
        }
        key.push_str(&sanitize(series.name(), false));
        let labels = series.labels().filter(|(_, v)| !v.is_empty());
        let mut suffix = String::new();
        for (i, (k, v)) in labels.enumerate() {
            let (k, v) = (
                sanitize(k, false),
                sanitize(v, self.config.tag_style != TagStyle::Path),
            );
            let _ = match self.config.tag_style {
                TagStyle::Dogstatsd => write!(suffix, "{}{k}:{v}", if i == 0 { "|#" } else { "," }),
                TagStyle::Graphite => write!(key, ";{k}={v}"),
                TagStyle::Path => write!(key, ".{k}_{v}"),
            };
        }
        (key, suffix)
    }

    /// The lines of one point; a negative gauge is `0|g` then `-N|g`, kept
    /// together, because a leading sign alone means "adjust" to statsd.
    fn lines(&self, series: &Series, value: Value, start_ms: i64) -> Option<String> {
        let (key, tags) = self.key(series);
        match value {
            Value::Counter(v) => match self.delta(series, v, start_ms) {
                0 => None,
                d => Some(format!("{key}:{d}|c{tags}")),
            },
            Value::Gauge(g) if !g.is_finite() => None,
            Value::Gauge(g) if g < 0.0 => Some(format!("{key}:0|g{tags}\n{key}:{g}|g{tags}")),
            // abs() because -0.0 would print as "-0", an adjustment.
            Value::Gauge(g) => Some(format!("{key}:{}|g{tags}", g.abs())),
        }
    }
}

/// Packs line groups into bodies of at most `max` bytes joined by `\n`, each
/// with the tags of its groups. A group longer than `max` goes alone (statsd
/// still takes it over loopback).
fn pack<T>(groups: impl IntoIterator<Item = (String, T)>, max: usize) -> Vec<(Vec<u8>, Vec<T>)> {
    let mut bodies = Vec::new();
    let mut body = String::new();
    let mut tags = Vec::new();
    for (g, tag) in groups {
        if !body.is_empty() && body.len() + 1 + g.len() > max {
            bodies.push((
                std::mem::take(&mut body).into_bytes(),
                std::mem::take(&mut tags),
            ));
        }
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&g);
        tags.push(tag);
    }
    if !body.is_empty() {
        bodies.push((body.into_bytes(), tags));
    }
    bodies
}

fn retry(reason: String) -> SendError {
    SendError::Retry {
        reason,
        after: None,
    }
}

impl Statsd {
    /// With `management_address`: asks statsd `health` and returns an error
    /// unless it answers `health: up` within [`HEALTH_TIMEOUT`]. statsd
    /// answers from the same event loop that reads metrics, so a statsd that
    /// does not answer here would not read what rme wrote either.
    async fn check_health(&mut self) -> Result<(), SendError> {
        let Some(addr) = self.config.management_address.clone() else {
            return Ok(());
        };
        let reason = match tokio::time::timeout(HEALTH_TIMEOUT, self.ask_health(&addr)).await {
            Ok(Ok(answer)) if answer.trim_end() == "health: up" => return Ok(()),
            Ok(Ok(answer)) if answer.is_empty() => "closed the connection".to_string(),
            Ok(Ok(answer)) => format!("answered {:?}", answer.trim_end()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer to `health` within {} s (statsd stopped or overloaded?)",
                HEALTH_TIMEOUT.as_secs()
            ),
        };
        self.mgmt = None;
        self.health_failures += 1;
        Err(retry(format!(
            "statsd management port {addr}: {reason}; nothing written to {}",
            self.config.address
        )))
    }

    async fn ask_health(&mut self, addr: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
        let mgmt = match &mut self.mgmt {
            Some(m) => m,
            None => self
                .mgmt
                .insert(tokio::io::BufReader::new(TcpStream::connect(addr).await?)),
        };
        mgmt.get_mut().write_all(b"health\n").await?;
        let mut answer = String::new();
        (&mut *mgmt)
            .take(HEALTH_ANSWER_MAX)
            .read_line(&mut answer)
            .await?;
        Ok(answer)
    }

    async fn send_udp(&mut self, body: &[u8]) -> Result<(), SendError> {
        let addr = &self.config.address;
        if !matches!(self.conn, Conn::Udp(_)) {
            self.conn = Conn::Udp(connect_udp(addr).await?);
        }
        let Conn::Udp(socket) = &self.conn else {
            unreachable!("set above")
        };
        let sent = socket.send(body).await;
        // Over loopback the "port unreachable" is already here when send returns:
        // report this very datagram as not delivered, so it stays in the spool.
        let refused = socket.take_error().ok().flatten();
        match (sent, refused) {
            (Ok(n), None) if n == body.len() => Ok(()),
            (Ok(n), None) => Err(retry(format!(
                "statsd {addr}: sent {n} of {} bytes",
                body.len()
            ))),
            (Err(e), _) if e.raw_os_error() == Some(libc::EMSGSIZE) => Err(SendError::Reject {
                reason: format!("statsd {addr}: {e} ({} bytes)", body.len()),
            }),
            (Err(e), _) | (Ok(_), Some(e)) => {
                self.conn = Conn::None;
                Err(retry(format!("statsd {addr}: {e}")))
            }
        }
    }

    async fn send_tcp(&mut self, body: &[u8]) -> Result<(), SendError> {
        let addr = self.config.address.clone();
        if let Conn::Tcp(stream) = &self.conn
            && !is_open(stream).await
        {
            self.conn = Conn::None;
        }
        if !matches!(self.conn, Conn::Tcp(_)) {
            let stream =
                match tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(addr.as_str())).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(retry(format!("statsd {addr}: {e}"))),
                    Err(_) => return Err(retry(format!("statsd {addr}: connect timed out"))),
                };
            self.conn = Conn::Tcp(stream);
        }
        let Conn::Tcp(stream) = &mut self.conn else {
            unreachable!("set above")
        };
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'\n');
        let result = tokio::time::timeout(TCP_TIMEOUT, stream.write_all(&line)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.conn = Conn::None;
                Err(retry(format!("statsd {addr}: {e}")))
            }
            Err(_) => {
                self.conn = Conn::None;
                Err(retry(format!("statsd {addr}: write timed out")))
            }
        }
    }
}

/// A UDP socket connected to statsd, so that an ICMP "port unreachable"
/// (statsd down) comes back as an error instead of vanishing.
async fn connect_udp(addr: &str) -> Result<UdpSocket, SendError> {
    let target = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| retry(format!("statsd {addr}: cannot resolve")))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| retry(format!("binding a UDP socket: {e}")))?;
    socket
        .connect(target)
        .await
        .map_err(|e| retry(format!("statsd {addr}: {e}")))?;
    Ok(socket)
}

/// Whether statsd still holds the connection open. It never writes to us, so a
/// readable socket means it closed (EOF) or failed; writing there would be lost.
async fn is_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut rb = tokio::io::ReadBuf::new(&mut buf);
        std::task::Poll::Ready(match stream.poll_peek(cx, &mut rb) {
            std::task::Poll::Pending => true,
            std::task::Poll::Ready(Ok(n)) => n > 0,
            std::task::Poll::Ready(Err(_)) => false,
        })
    })
    .await
}

impl Sink for Statsd {
    fn name(&self) -> &str {
        &self.name
    }

    /// Bodies of line groups (one per point sent), each with a note of the
    /// counters it moves: `last` is committed with the body, in its spool record.
    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        let mut groups: Vec<(String, Option<Sent>)> = snap
            .points
            .iter()
            .filter_map(|p| {
                let lines = self.lines(&p.series, p.value, p.start_ms)?;
                let sent = match p.value {
                    Value::Counter(value) => Some(Sent {
                        series: Series::clone(&p.series),
                        value,
                        start_ms: p.start_ms,
                    }),
                    Value::Gauge(_) => None,
                };
                Some((lines, sent))
            })
            .collect();
        if self.config.protocol == Protocol::Udp {
            // No datagram can carry these; spooled, they would block the spool forever.
            let before = groups.len();
            groups.retain(|(g, _)| g.len() <= MAX_UDP_PAYLOAD);
            if groups.len() < before {
                tracing::warn!(sink = %self.name, dropped = before - groups.len(), "statsd lines longer than a UDP datagram dropped");
            }
        }
        // Only series still in the store are kept, so the state stays bounded.
        self.last = snap
            .points
            .iter()
            .filter_map(|p| match p.value {
                Value::Counter(v) => Some((p.series.clone(), (v, p.start_ms))),
                Value::Gauge(_) => None,
            })
            .collect();
        self.replayed.clear();
        pack(groups, self.config.max_packet_bytes)
            .into_iter()
            .map(|(body, sent)| {
                let samples = sent.len() as u64;
                let counters: Vec<Sent> = sent.into_iter().flatten().collect();
                let note = if counters.is_empty() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&SavedState { counters })?
                };
                Ok(Batch {
                    body,
                    samples,
                    note,
                })
            })
            .collect()
    }

    /// Hands one body to the kernel (after a health probe, when configured).
    /// `Ok` means the kernel took it, no more: statsd never confirms.
    async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
        self.check_health().await?;
        match self.config.protocol {
            Protocol::Udp => self.send_udp(body).await?,
            Protocol::Tcp => self.send_tcp(body).await?,
        }
        Ok(Accepted::default())
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        let counters = self
            .last
            .iter()
            .map(|(series, &(value, start_ms))| Sent {
                series: Series::clone(series),
                value,
                start_ms,
            })
            .collect();
        serde_json::to_value(SavedState { counters }).ok()
    }

    fn replay_note(&mut self, note: &[u8]) {
        match serde_json::from_slice::<SavedState>(note) {
            Ok(n) => {
                for s in n.counters {
                    self.replayed.insert(s.series.clone());
                    self.last.insert(Arc::new(s.series), (s.value, s.start_ms));
                }
            }
            Err(e) => {
                tracing::warn!(sink = %self.name, "unreadable note in a spooled body ({e}); its counters may be sent again")
            }
        }
    }

    fn take_health_failures(&mut self) -> u64 {
        std::mem::take(&mut self.health_failures)
    }

    fn restore_state(&mut self, state: serde_json::Value) {
        match serde_json::from_value::<SavedState>(state) {
            Ok(saved) => {
                self.last = saved
                    .counters
                    .into_iter()
                    .map(|s| (Arc::new(s.series), (s.value, s.start_ms)))
                    .collect();
            }
            Err(e) => tracing::warn!(
                sink = %self.name,
                "unreadable statsd state ({e}); counters will be sent whole once"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Point;

    fn sink(toml_text: &str) -> Statsd {
        let config: StatsdConfig = toml::from_str(toml_text).expect("test config");
        config.validate("sinks[0]").expect("valid test config");
        Statsd::new("statsd".into(), &config).expect("building the sink")
    }

    fn snap(points: &[(&Series, Value, i64)]) -> Snapshot {
        Snapshot {
            at_ms: 1,
            points: points
                .iter()
                .map(|(s, v, start)| Point {
                    series: std::sync::Arc::new((*s).clone()),
                    value: *v,
                    start_ms: *start,
                })
                .collect(),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn a_body_counts_the_points_it_carries_not_the_snapshot_s() {
        let groups = (0..5).map(|i| (format!("m{i}:1|c"), ()));
        let batches = pack(groups, 14);
        let counts: Vec<usize> = batches.iter().map(|(_, points)| points.len()).collect();
        assert_eq!(counts, [2, 2, 1]);
        let mut s = sink("max_packet_bytes = 64");
        let points: Vec<Series> = (0..20)
            .map(|i| Series::new(&format!("m{i}"), &[]))
            .collect();
        let snapshot = snap(
            &points
                .iter()
                .map(|p| (p, Value::Counter(1), 0))
                .collect::<Vec<_>>(),
        );
        let batches = s.encode(&snapshot).unwrap();
        assert!(batches.len() > 1);
        assert_eq!(batches.iter().map(|b| b.samples).sum::<u64>(), 20);
    }

    fn text(bodies: Vec<Batch>) -> Vec<String> {
        raw(bodies.into_iter().map(|b| b.body).collect())
    }

    fn raw(bodies: Vec<Vec<u8>>) -> Vec<String> {
        bodies
            .into_iter()
            .map(|b| String::from_utf8(b).expect("utf-8"))
            .collect()
    }

    /// Etsy statsd's `sanitizeKeyName` (stats.js), as the reference.
    fn statsd_sanitize(key: &str) -> String {
        key.split_whitespace()
            .collect::<Vec<_>>()
            .join("_")
            .replace('/', "-")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_-.;=".contains(*c))
            .collect()
    }

    fn random_text(max_len: usize) -> String {
        const SPICY: &[char] = &[
            ':', ';', '=', ',', '|', '#', '/', '.', ' ', '\t', '\n', '~', '@', 'é', '日', '\0',
            '-', '_',
        ];
        (0..fastrand::usize(0..max_len))
            .map(|_| match fastrand::u8(0..4) {
                0 => fastrand::choice(SPICY).copied().unwrap_or('x'),
                1 => fastrand::char(..),
                _ => fastrand::alphanumeric(),
            })
            .collect()
    }

    #[test]
    fn sanitised_text_is_in_statsd_set_one_char_each_and_stable() {
        fastrand::seed(5);
        for _ in 0..5000 {
            let input = random_text(40);
            for keep_dots in [false, true] {
                let out = sanitize(&input, keep_dots);
                assert!(
                    out.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)),
                    "{input:?} -> {out:?}"
                );
                assert!(keep_dots || !out.contains('.'), "{input:?} -> {out:?}");
                assert_eq!(out.chars().count(), input.chars().count(), "{input:?}");
                assert_eq!(sanitize(&out, keep_dots), out, "not stable: {input:?}");
                assert_eq!(statsd_sanitize(&out), out, "statsd would change {out:?}");
            }
        }
    }

    #[test]
    fn addresses_stay_readable() {
        assert_eq!(sanitize("2001:db8::5", true), "2001_db8__5");
        assert_eq!(sanitize("192.0.2.7", true), "192.0.2.7");
        assert_eq!(sanitize("192.0.2.7", false), "192_0_2_7");
        assert_eq!(sanitize("192.0.2.0/24", true), "192.0.2.0-24");
    }

    #[test]
    fn counters_send_the_change_since_the_last_encode() {
        let mut s = sink("");
        let x = Series::new("x_total", &[]);
        let mut run =
            |v: u64, start: i64| text(s.encode(&snap(&[(&x, Value::Counter(v), start)])).unwrap());
        assert_eq!(run(5, 100), ["x_total:5|c"]);
        assert!(run(5, 100).is_empty(), "unchanged counters send nothing");
        assert_eq!(run(8, 100), ["x_total:3|c"]);
        assert_eq!(run(2, 100), ["x_total:2|c"], "a lower value is a reset");
        assert_eq!(run(9, 200), ["x_total:9|c"], "a new start time is a reset");
    }

    #[test]
    fn the_bookkeeping_survives_a_restart() {
        let x = Series::new("x_total", &[("jail", "sshd")]);
        let gone = Series::new("gone_total", &[]);
        let mut first = sink("");
        first
            .encode(&snap(&[
                (&x, Value::Counter(10), 7),
                (&gone, Value::Counter(1), 7),
            ]))
            .unwrap();
        first.encode(&snap(&[(&x, Value::Counter(10), 7)])).unwrap();
        let state = first.save_state().expect("statsd keeps state");
        assert!(
            !state.to_string().contains("gone_total"),
            "series no longer stored are dropped: {state}"
        );
        let mut second = sink("");
        second.restore_state(serde_json::from_str(&state.to_string()).unwrap());
        let out = text(
            second
                .encode(&snap(&[(&x, Value::Counter(14), 7)]))
                .unwrap(),
        );
        assert_eq!(out, ["x_total:4|c|#jail:sshd"]);
        let mut fresh = sink("");
        fresh.restore_state(serde_json::json!({"nonsense": true}));
        assert_eq!(
            text(fresh.encode(&snap(&[(&x, Value::Counter(14), 7)])).unwrap()).len(),
            1
        );
    }

    #[test]
    fn gauges_are_absolute_and_never_start_with_a_sign() {
        let mut s = sink("");
        let g = Series::new("g", &[]);
        let mut run = |v: f64| text(s.encode(&snap(&[(&g, Value::Gauge(v), 0)])).unwrap());
        assert_eq!(run(3.5), ["g:3.5|g"]);
        assert_eq!(run(0.0), ["g:0|g"]);
        assert_eq!(run(-0.0), ["g:0|g"]);
        assert_eq!(
            run(-4.0),
            ["g:0|g\ng:-4|g"],
            "set to 0, then adjust down, in one datagram"
        );
        assert!(run(f64::NAN).is_empty());
        assert!(run(f64::INFINITY).is_empty());
    }

    #[test]
    fn tag_styles() {
        let series = Series::new(
            "rme_bans_total",
            &[("jail", "sshd"), ("ip", "2001:db8::5"), ("empty", "")],
        );
        let cases = [
            (
                "dogstatsd",
                "web1.rme_bans_total:2|c|#ip:2001_db8__5,jail:sshd",
            ),
            (
                "graphite",
                "web1.rme_bans_total;ip=2001_db8__5;jail=sshd:2|c",
            ),
            ("path", "web1.rme_bans_total.ip_2001_db8__5.jail_sshd:2|c"),
        ];
        for (style, want) in cases {
            let mut s = sink(&format!("prefix = \"web1\"\ntag_style = \"{style}\""));
            let out = text(s.encode(&snap(&[(&series, Value::Counter(2), 0)])).unwrap());
            assert_eq!(out, [want], "{style}");
        }
        let v4 = Series::new("b", &[("ip", "192.0.2.1")]);
        let mut s = sink("tag_style = \"path\"");
        assert_eq!(
            text(s.encode(&snap(&[(&v4, Value::Counter(1), 0)])).unwrap()),
            ["b.ip_192_0_2_1:1|c"]
        );
    }

    /// Every line statsd gets parses back (its own way, stats.js handlePacket)
    /// to the key we meant, with nothing stripped, whatever the labels hold.
    #[test]
    fn every_line_survives_statsds_parser() {
        fastrand::seed(55);
        for style in ["dogstatsd", "graphite", "path"] {
            let mut s = sink(&format!("tag_style = \"{style}\"\nmax_packet_bytes = 300"));
            for _ in 0..300 {
                let (k, v, name) = (random_text(8), random_text(20), random_text(12));
                let series = Series::new(&format!("m{name}"), &[(&format!("l{k}"), &v)]);
                let bodies = text(s.encode(&snap(&[(&series, Value::Counter(3), 0)])).unwrap());
                for line in bodies.iter().flat_map(|b| b.split('\n')) {
                    let mut bits = line.split("|#");
                    let head = bits.next().unwrap_or_default();
                    let tags: Vec<String> = bits
                        .next()
                        .map(|t| {
                            t.split(',')
                                .map(|t| t.replacen(';', "_", 1).replacen(':', "=", 1))
                                .collect()
                        })
                        .unwrap_or_default();
                    let fields: Vec<&str> = head.split(':').collect();
                    assert_eq!(fields.len(), 2, "{line:?}");
                    assert_eq!(fields[1], "3|c", "{line:?}");
                    let key = [vec![fields[0].to_string()], tags].concat().join(";");
                    assert_eq!(
                        statsd_sanitize(&key),
                        key,
                        "statsd would strip from {line:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn bodies_stay_under_the_packet_size_and_keep_every_line_in_order() {
        fastrand::seed(7);
        for _ in 0..200 {
            let max = fastrand::usize(64..400);
            let groups: Vec<String> = (0..fastrand::usize(0..60))
                .map(|i| format!("m{i}:{}|c", "9".repeat(fastrand::usize(1..80))))
                .collect();
            let packed = pack(groups.iter().cloned().zip(0..), max);
            let tags: Vec<i32> = packed.iter().flat_map(|(_, t)| t.clone()).collect();
            assert_eq!(tags, (0..groups.len() as i32).collect::<Vec<_>>());
            let bodies = raw(packed.into_iter().map(|(b, _)| b).collect());
            for b in &bodies {
                assert!(
                    b.len() <= max || !b.contains('\n'),
                    "{} > {max} with several lines",
                    b.len()
                );
            }
            let back: Vec<&str> = bodies.iter().flat_map(|b| b.split('\n')).collect();
            assert_eq!(back, groups);
        }
        let long = "x".repeat(100);
        assert_eq!(
            raw(pack([(long.clone(), ())], 64)
                .into_iter()
                .map(|(b, _)| b)
                .collect()),
            [long],
            "an oversized line goes alone"
        );
    }

    /// A crash after spooling, before the state file: the next start has the
    /// old state, the spooled notes, and re-reads the lines (a counter first seen
    /// in that flush comes back with a new start). Nothing is sent twice.
    #[test]
    fn replayed_notes_stop_a_spooled_delta_from_being_made_again() {
        let old = Series::new("old_total", &[]);
        let new = Series::new("new_total", &[]);
        let mut before = sink("max_packet_bytes = 64");
        before
            .encode(&snap(&[(&old, Value::Counter(5), 10)]))
            .unwrap();
        let saved = before.save_state().unwrap();
        let batches = before
            .encode(&snap(&[
                (&old, Value::Counter(9), 10),
                (&new, Value::Counter(4), 20),
            ]))
            .unwrap();
        assert!(batches.iter().all(|b| !b.note.is_empty()));
        // restart: the state file from before, then the notes of what is spooled
        let mut after = sink("max_packet_bytes = 64");
        after.restore_state(saved);
        for b in &batches {
            after.replay_note(&b.note);
        }
        let again = after
            .encode(&snap(&[
                (&old, Value::Counter(9), 10),
                (&new, Value::Counter(4), 99),
            ]))
            .unwrap();
        assert!(again.is_empty(), "{:?}", text(again));
        // and the start time counts again from then on
        let reset = after
            .encode(&snap(&[(&new, Value::Counter(6), 111)]))
            .unwrap();
        assert_eq!(text(reset), ["new_total:6|c"]);
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = [
            ("address = \"localhost\"", "sinks[0].address"),
            ("address = \"127.0.0.1:0\"", "sinks[0].address"),
            ("address = \":8125\"", "sinks[0].address"),
            ("max_packet_bytes = 10", "sinks[0].max_packet_bytes"),
            ("max_packet_bytes = 70000", "sinks[0].max_packet_bytes"),
            ("prefix = \"a..b\"", "sinks[0].prefix"),
            ("prefix = \"rme:x\"", "sinks[0].prefix"),
            ("prefix = \".rme\"", "sinks[0].prefix"),
            (
                "management_address = \"8126\"",
                "sinks[0].management_address",
            ),
        ];
        for (toml_text, key) in bad {
            let config: StatsdConfig = toml::from_str(toml_text).unwrap();
            let err = config.validate("sinks[0]").expect_err(toml_text);
            assert_eq!(err.key, key, "{toml_text}");
        }
        assert!(toml::from_str::<StatsdConfig>("tag_style = \"influx\"").is_err());
        assert!(toml::from_str::<StatsdConfig>("protocol = \"sctp\"").is_err());
        let ok: StatsdConfig =
            toml::from_str("address = \"[::1]:8125\"\nprefix = \"rme.web-1\"").unwrap();
        assert!(ok.validate("sinks[0]").is_ok());
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../examples/statsd.toml");
        let config = crate::config::Config::parse(text, None).expect("examples/statsd.toml");
        assert!(matches!(
            config.sinks.as_slice(),
            [crate::sinks::SinkConfig::Statsd(_)]
        ));
    }

    #[tokio::test]
    async fn udp_sends_each_body_as_one_datagram() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut s = sink(&format!("address = \"{}\"", server.local_addr().unwrap()));
        s.send(b"a:1|c\nb:2|g").await.unwrap();
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"a:1|c\nb:2|g");
    }

    #[tokio::test]
    async fn udp_to_a_closed_port_on_loopback_is_retried() {
        let closed = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mut s = sink(&format!("address = \"{closed}\""));
        for _ in 0..3 {
            let err = s.send(b"a:1|c").await.expect_err("nobody listens");
            assert!(matches!(err, SendError::Retry { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_line_no_datagram_can_carry_is_dropped_not_spooled() {
        let huge = "v".repeat(MAX_UDP_PAYLOAD);
        let series = [
            Series::new("big", &[("k", &huge)]),
            Series::new("small", &[]),
        ];
        let points = [
            (&series[0], Value::Counter(1), 0),
            (&series[1], Value::Counter(1), 0),
        ];
        assert_eq!(
            text(sink("").encode(&snap(&points)).unwrap()),
            ["small:1|c"]
        );
        let tcp = sink("protocol = \"tcp\"").encode(&snap(&points)).unwrap();
        assert_eq!(tcp.len(), 2, "TCP takes any length");
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_rejected_not_retried() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut s = sink(&format!("address = \"{}\"", server.local_addr().unwrap()));
        let err = s
            .send(&vec![b'x'; MAX_UDP_PAYLOAD + 1])
            .await
            .expect_err("too big");
        assert!(matches!(err, SendError::Reject { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn tcp_sends_newline_terminated_lines_and_retries_when_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = sink(&format!("address = \"{addr}\"\nprotocol = \"tcp\""));
        s.send(b"a:1|c\nb:2|c").await.unwrap();
        s.send(b"c:3|c").await.unwrap();
        let (mut conn, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut got = [0u8; 64];
        let mut n = 0;
        while !got[..n].ends_with(b"c:3|c\n") {
            use tokio::io::AsyncReadExt as _;
            n += conn.read(&mut got[n..]).await.unwrap();
        }
        assert_eq!(&got[..n], b"a:1|c\nb:2|c\nc:3|c\n");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = s.send(b"d:4|c").await.expect_err("listener is gone");
        assert!(matches!(err, SendError::Retry { .. }), "{err:?}");
    }
}
