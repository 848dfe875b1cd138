//! Prometheus remote-write 1.0: snapshot → `WriteRequest` protobuf (proto/,
//! compiled by prost-build) → snappy *block* → HTTP POST.
//!
//! The tricky point is ordering: Prometheus refuses a whole request when one
//! sample is older than what it holds, so each body is self-contained, carries
//! one snapshot's timestamp only, and each sink's courier
//! (`agent/delivery.rs`) sends the spool oldest first.
//! Labels are sorted by name bytewise as the spec says (`__name__` is not
//! always first: `Zone` < `__name__`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use prost::Message as _;

use super::first_increment::Zeros;
use super::{Accepted, Batch, SendError, Sink};
use crate::store::{Kind, Point, Series, Snapshot};

/// The remote-write 1.0 messages, generated from proto/ by build.rs.
#[allow(clippy::all, missing_docs)]
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

use prompb::metric_metadata::MetricType;

mod config;
pub mod reference;
pub use config::{BasicAuth, RemoteWriteConfig, TlsConfig};

/// The spec's stale marker: a NaN no other value may use.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Longest part of a refusal's body quoted in logs.
const MAX_REASON_BODY: usize = 512;

/// Where the `Authorization` header comes from, read at each request so rotated secrets apply.
enum Auth {
    None,
    Basic { username: String, password: Secret },
    Bearer(PathBuf),
}

enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Auth {
    /// Reads the secret files once, so a missing or unreadable one stops the
    /// plan (`rme check-config`) rather than every request. They are read again
    /// for each request, so a rotated token is picked up.
    fn check_files(&self) -> anyhow::Result<()> {
        let (key, path) = match self {
            Auth::Bearer(p) => ("bearer_token_file", p),
            Auth::Basic {
                password: Secret::File(p),
                ..
            } => ("basic_auth.password_file", p),
            _ => return Ok(()),
        };
        std::fs::read(path).with_context(|| format!("{key} {}", path.display()))?;
        Ok(())
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, SendError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| SendError::Retry {
            reason: format!("reading {}: {e}", path.display()),
            after: None,
        })
}

pub struct RemoteWrite {
    name: String,
    /// Parsed once, by `new`.
    url: reqwest::Url,
    client: reqwest::Client,
    auth: Box<Auth>,
    batch_size: usize,
    external_labels: Vec<(String, String)>,
    /// Label sets of the last snapshot with their fingerprints, to mark vanished series stale.
    last_sent: Vec<(u64, Arc<Series>)>,
    /// New counters' leading zeros (`first_increment`).
    zeros: Zeros,
}

impl RemoteWrite {
    pub fn new(name: String, config: &RemoteWriteConfig) -> anyhow::Result<RemoteWrite> {
        let url = config.parsed_url()?;
        let auth = match (&config.basic_auth, &config.bearer_token_file) {
            (Some(a), _) => Auth::Basic {
                username: a.username.clone(),
                password: match (&a.password, &a.password_file) {
                    (_, Some(f)) => Secret::File(f.clone()),
                    (p, None) => Secret::Inline(p.clone().unwrap_or_default()),
                },
            },
            (None, Some(f)) => Auth::Bearer(f.clone()),
            (None, None) => Auth::None,
        };
        auth.check_files()?;
        Ok(RemoteWrite {
            name,
            url,
            client: build_client(config)?,
            auth: Box::new(auth),
            batch_size: config.batch_size.max(1),
            external_labels: config.external_labels.clone().into_iter().collect(),
            last_sent: Vec::new(),
            zeros: Zeros::new(config.first_increment),
        })
    }

    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, SendError> {
        Ok(match &*self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => {
                let password = match password {
                    Secret::Inline(p) => p.clone(),
                    Secret::File(f) => read_secret(f)?,
                };
                req.basic_auth(username, Some(password))
            }
            Auth::Bearer(f) => req.bearer_auth(read_secret(f)?),
        })
    }
}

fn build_client(config: &RemoteWriteConfig) -> anyhow::Result<reqwest::Client> {
    let headers = config.header_map()?;
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs))
        .user_agent(concat!("rme/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers);
    b = match config.proxy()? {
        Some(p) => b.proxy(p),
        None => b.no_proxy(),
    };
    if let Some(t) = &config.tls {
        b = super::http::with_tls(b, &t.files())?;
    }
    b.build().context("building the HTTP client")
}

impl Sink for RemoteWrite {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        // Each request is encoded straight from the store's label sets into one
        // reused buffer (the bytes prost would write, see `wire`): no label is
        // copied out of the store.
        let mut batches = Vec::with_capacity(snap.points.len() / self.batch_size + 1);
        let mut sent = Vec::with_capacity(snap.points.len());
        let mut enc = wire::Encoder::default();
        let mut snappy = snap::raw::Encoder::new();
        // Compressed into one scratch buffer and copied out at its exact size:
        // `compress_vec` leaves each body with the capacity of the worst case
        // (about 1.17 times the uncompressed request), all held until spooled.
        let mut scratch = Vec::new();
        // Every body's note moves the zeros' watermark past this snapshot and
        // names the series zeroed in it (see `first_increment`).
        let watermark = self.zeros.after(snap);
        let mut body =
            |enc: &wire::Encoder, samples: u64, zeroed: Vec<Series>| -> anyhow::Result<Batch> {
                scratch.resize(snap::raw::max_compress_len(enc.buf.len()), 0);
                let n = snappy
                    .compress(&enc.buf, &mut scratch)
                    .context("snappy compression")?;
                Ok(Batch {
                    body: scratch[..n].to_vec(),
                    samples,
                    note: Zeros::note(watermark, zeroed),
                })
            };
        for chunk in snap.points.chunks(self.batch_size) {
            enc.buf.clear();
            let mut zeroed = Vec::new();
            for p in chunk {
                let zero = self.zeros.zero_ms(p, snap.at_ms);
                if zero.is_some() {
                    zeroed.push(Series::clone(&p.series));
                }
                let labels = enc.series(
                    &p.series,
                    &self.external_labels,
                    p.value.as_f64(),
                    snap.at_ms,
                    zero,
                );
                sent.push((labels, p.series.clone()));
            }
            metadata(&mut enc, chunk, snap);
            batches.push(body(&enc, chunk.len() as u64, zeroed)?);
        }
        let present: HashSet<u64> = sent.iter().map(|(f, _)| *f).collect();
        let gone: Vec<Arc<Series>> = self
            .last_sent
            .iter()
            .filter(|(f, _)| !present.contains(f))
            .map(|(_, s)| s.clone())
            .collect();
        for chunk in gone.chunks(self.batch_size) {
            enc.buf.clear();
            for series in chunk {
                enc.series(
                    series,
                    &self.external_labels,
                    f64::from_bits(STALE_NAN),
                    snap.at_ms,
                    None,
                );
            }
            batches.push(body(&enc, chunk.len() as u64, Vec::new())?);
        }
        self.last_sent = sent;
        self.zeros.advance(watermark);
        Ok(batches)
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        Some(self.zeros.save())
    }

    fn restore_state(&mut self, state: serde_json::Value) {
        self.zeros.restore(state);
    }

    fn replay_note(&mut self, note: &[u8]) {
        self.zeros.replay(note);
    }

    async fn send(&mut self, body: &[u8]) -> Result<Accepted, SendError> {
        match self.post(body).await {
            Err((400, refused)) => {
                // Prometheus refuses a whole request for one sample out of
                // order: a leading zero after a retry whose answer never came
                // (the first try was written), or a zero that lands on older
                // data. Without its zeros the request is sent once more:
                // nothing is lost for a zero.
                let Some(stripped) = without_zeros(body) else {
                    return Err(refused);
                };
                tracing::warn!(
                    sink = %self.name,
                    "receiver refused a request with leading zeros ({refused}); sending it again without them"
                );
                self.post(&stripped).await.map_err(|(_, e)| e)
            }
            answer => answer.map_err(|(_, e)| e),
        }
    }
}

impl RemoteWrite {
    /// Sends one body once; a failure comes with the HTTP status (0: none).
    async fn post(&self, body: &[u8]) -> Result<Accepted, (u16, SendError)> {
        let req = self
            .client
            .post(self.url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        let resp = self
            .authorize(req)
            .map_err(|e| (0, e))?
            .send()
            .await
            .map_err(|e| {
                let reason = format!(
                    "POST {}: {}",
                    crate::logging::redact::url(self.url.as_str()),
                    super::http::error_chain(&e)
                );
                (
                    0,
                    SendError::Retry {
                        reason,
                        after: None,
                    },
                )
            })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = if resp.status().is_success() {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        classify(status, retry_after.as_deref(), &text, SystemTime::now())
            .map_err(|e| (status, e))?;
        Ok(Accepted::default())
    }
}

/// The metadata (type and help) of each metric a request's points belong to,
/// once per run of points of one metric.
fn metadata(enc: &mut wire::Encoder, chunk: &[Point], snap: &Snapshot) {
    let mut last = None;
    for p in chunk {
        let name = p.series.name();
        if last == Some(name) {
            continue;
        }
        if let Some(meta) = snap.meta.get(name) {
            last = Some(name);
            let kind = match meta.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            } as i32;
            enc.metadata(kind, name, meta.help);
        }
    }
}

/// Protobuf, then snappy block format (never the framed format: the spec forbids it).
pub fn compress(req: &prompb::WriteRequest) -> anyhow::Result<Vec<u8>> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .context("snappy compression")
}

/// A spooled body with its leading zeros taken out (rme sends one sample per
/// series otherwise, so a series with more carries a zero first); `None`
/// when it holds none, or is not a remote-write body.
pub fn without_zeros(body: &[u8]) -> Option<Vec<u8>> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    let mut req = prompb::WriteRequest::decode(&raw[..]).ok()?;
    let mut stripped = false;
    for ts in &mut req.timeseries {
        if ts.samples.len() > 1 && ts.samples[0].value == 0.0 {
            ts.samples.remove(0);
            stripped = true;
        }
    }
    if !stripped {
        return None;
    }
    compress(&req).ok()
}

/// What an answer means: 2xx taken; 5xx and 429 retried (after `Retry-After`
/// when given, in seconds or as an HTTP date); any other status refused for good.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    body: &str,
    now: SystemTime,
) -> Result<(), SendError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = body.trim();
    let mut cut = body.len().min(MAX_REASON_BODY);
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = format!("HTTP {status}: {}", &body[..cut]);
    if status == 429 || status >= 500 {
        let after = retry_after.and_then(|v| super::http::retry_after(v, now));
        Err(SendError::Retry { reason, after })
    } else {
        Err(SendError::Reject { reason })
    }
}

mod wire;

#[cfg(test)]
mod tests;
