//! Prometheus remote-write 1.0: snapshot → `WriteRequest` protobuf (proto/,
//! compiled by prost-build) → snappy *block* → HTTP POST.
//!
//! The tricky point is ordering: Prometheus refuses a whole request when one
//! sample is older than what it holds, so each body is self-contained, carries
//! one snapshot's timestamp only, and `push.rs` sends the spool oldest first.
//! Labels are sorted by name bytewise as the spec says (`__name__` is not
//! always first: `Zone` < `__name__`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use prost::Message as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{Batch, SendError, Sink};
use crate::config::Invalid;
use crate::store::{Kind, Point, Snapshot};

/// The remote-write 1.0 messages, generated from proto/ by build.rs.
#[allow(clippy::all, missing_docs)]
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

use prompb::metric_metadata::MetricType;

/// Headers the spec reserves; `headers` may not set them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-encoding",
    "content-type",
    "x-prometheus-remote-write-version",
    "user-agent",
    "content-length",
    "host",
];

/// The spec's stale marker: a NaN no other value may use.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Longest part of a refusal's body quoted in logs.
const MAX_REASON_BODY: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Sink name (spool directory, self-metric label). Default `remote_write`.
    #[serde(default)]
    pub name: Option<String>,
    /// Receiver endpoint, e.g. http://127.0.0.1:8428/api/v1/write (VictoriaMetrics)
    /// or http://prometheus:9090/api/v1/write (Prometheus with `--web.enable-remote-write-receiver`).
    pub url: String,
    /// Seconds one request may take (connect + send + answer) before it counts as failed and is retried. Default 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Most samples in one request; a larger snapshot is split into several requests. Default 2000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<Box<BasicAuth>>,
    /// File holding a bearer token, sent as `Authorization: Bearer …`; read again for every request.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Extra request headers, e.g. `{ "X-Scope-OrgID" = "tenant1" }` for Mimir/Cortex.
    /// The spec's own headers (Content-Type, Content-Encoding, User-Agent,
    /// X-Prometheus-Remote-Write-Version) cannot be overridden.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for an https `url`.
    #[serde(default)]
    pub tls: Option<Box<TlsConfig>>,
    /// Proxy for every request, e.g. http://proxy:3128. Without it no proxy is
    /// used (the HTTP_PROXY environment variables are ignored).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Labels added to every series, e.g. `{ host = "web1", job = "rme" }`. A
    /// label the series already has keeps its own value.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password, written in the config (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored); read again for every request.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the receiver's certificate, added to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only: it removes TLS' protection. Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

const fn default_timeout_secs() -> u64 {
    30
}

const fn default_batch_size() -> usize {
    2000
}

impl RemoteWriteConfig {
    /// Makes relative file paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        let auth = self
            .basic_auth
            .iter_mut()
            .flat_map(|a| a.password_file.iter_mut());
        let tls = self.tls.iter_mut().flat_map(|t| {
            t.ca_file
                .iter_mut()
                .chain(t.cert_file.iter_mut())
                .chain(t.key_file.iter_mut())
        });
        self.bearer_token_file
            .iter_mut()
            .chain(auth)
            .chain(tls)
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| Invalid::new(format!("{key}.url"), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new(
                format!("{key}.url"),
                "scheme must be http or https",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(Invalid::new(
                format!("{key}.timeout_secs"),
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(Invalid::new(
                format!("{key}.batch_size"),
                "must be at least 1",
            ));
        }
        if let Some(a) = &self.basic_auth {
            if a.password.is_some() == a.password_file.is_some() {
                return Err(Invalid::new(
                    format!("{key}.basic_auth"),
                    "set exactly one of `password`, `password_file`",
                ));
            }
            if self.bearer_token_file.is_some() {
                return Err(Invalid::new(
                    key,
                    "set `basic_auth` or `bearer_token_file`, not both",
                ));
            }
        }
        for (name, value) in &self.headers {
            let k = format!("{key}.headers.{name}");
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Invalid::new(
                    k,
                    "reserved by the remote-write spec; rme sets it",
                ));
            }
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| Invalid::new(&k, e.to_string()))?;
            HeaderValue::from_str(value).map_err(|e| Invalid::new(&k, e.to_string()))?;
        }
        if let Some(t) = &self.tls
            && t.cert_file.is_some() != t.key_file.is_some()
        {
            return Err(Invalid::new(
                format!("{key}.tls"),
                "`cert_file` and `key_file` go together",
            ));
        }
        if let Some(p) = &self.proxy_url {
            reqwest::Proxy::all(p)
                .map_err(|e| Invalid::new(format!("{key}.proxy_url"), e.to_string()))?;
        }
        for (name, value) in &self.external_labels {
            let k = format!("{key}.external_labels.{name}");
            if !is_label_name(name) || name.starts_with("__") {
                return Err(Invalid::new(
                    k,
                    "a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __",
                ));
            }
            if value.is_empty() {
                return Err(Invalid::new(k, "the value must not be empty"));
            }
        }
        Ok(())
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

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
    /// Checked by `new`; kept as text to keep the sink small.
    url: String,
    client: reqwest::Client,
    auth: Box<Auth>,
    batch_size: usize,
    external_labels: Vec<(String, String)>,
    /// Label sets of the last snapshot, to mark vanished series stale.
    last_sent: HashSet<Vec<prompb::Label>>,
}

impl RemoteWrite {
    pub fn new(name: String, config: &RemoteWriteConfig) -> anyhow::Result<RemoteWrite> {
        let url = reqwest::Url::parse(&config.url)
            .with_context(|| format!("url {}", config.url))?
            .to_string();
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
        Ok(RemoteWrite {
            name,
            url,
            client: build_client(config)?,
            auth: Box::new(auth),
            batch_size: config.batch_size.max(1),
            external_labels: config.external_labels.clone().into_iter().collect(),
            last_sent: HashSet::new(),
        })
    }

    /// The snapshot as `WriteRequest`s of at most `batch_size` samples, each with
    /// the metadata of the metrics it carries, and its sample count.
    pub fn requests(&self, snap: &Snapshot) -> Vec<(prompb::WriteRequest, u64)> {
        snap.points
            .chunks(self.batch_size)
            .map(|chunk| {
                let timeseries: Vec<_> = chunk.iter().map(|p| self.series(p, snap.at_ms)).collect();
                let mut metadata: Vec<prompb::MetricMetadata> = Vec::new();
                for p in chunk {
                    let name = &p.series.name;
                    if metadata
                        .last()
                        .is_some_and(|m| &m.metric_family_name == name)
                    {
                        continue;
                    }
                    if let Some(meta) = snap.meta.get(name) {
                        metadata.push(prompb::MetricMetadata {
                            r#type: match meta.kind {
                                Kind::Counter => MetricType::Counter,
                                Kind::Gauge => MetricType::Gauge,
                            } as i32,
                            metric_family_name: name.clone(),
                            help: meta.help.to_string(),
                            unit: String::new(),
                        });
                    }
                }
                let n = timeseries.len() as u64;
                (
                    prompb::WriteRequest {
                        timeseries,
                        metadata,
                    },
                    n,
                )
            })
            .collect()
    }

    /// One point as a series: its labels, then external labels it lacks, sorted by name; empty values dropped.
    fn series(&self, p: &Point, at_ms: i64) -> prompb::TimeSeries {
        let label = |name: &str, value: &str| prompb::Label {
            name: name.to_string(),
            value: value.to_string(),
        };
        let mut labels = vec![label("__name__", &p.series.name)];
        labels.extend(
            p.series
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| label(k, v)),
        );
        for (k, v) in &self.external_labels {
            if p.series.label(k).is_none_or(str::is_empty) {
                labels.push(label(k, v));
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        prompb::TimeSeries {
            labels,
            samples: vec![prompb::Sample {
                value: p.value.as_f64(),
                timestamp: at_ms,
            }],
        }
    }

    /// Adds a stale marker for every series sent last time and absent now
    /// (expired by the store), as the spec requires; remembered in memory only.
    fn mark_stale(&mut self, requests: &mut Vec<(prompb::WriteRequest, u64)>, at_ms: i64) {
        let now: HashSet<Vec<prompb::Label>> = requests
            .iter()
            .flat_map(|(r, _)| r.timeseries.iter().map(|t| t.labels.clone()))
            .collect();
        let gone = self.last_sent.iter().filter(|l| !now.contains(*l));
        let stale: Vec<_> = gone
            .map(|labels| prompb::TimeSeries {
                labels: labels.clone(),
                samples: vec![prompb::Sample {
                    value: f64::from_bits(STALE_NAN),
                    timestamp: at_ms,
                }],
            })
            .collect();
        for chunk in stale.chunks(self.batch_size) {
            let req = prompb::WriteRequest {
                timeseries: chunk.to_vec(),
                metadata: Vec::new(),
            };
            requests.push((req, chunk.len() as u64));
        }
        self.last_sent = now;
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

/// Protobuf, then snappy block format (never the framed format: the spec forbids it).
pub fn compress(req: &prompb::WriteRequest) -> anyhow::Result<Vec<u8>> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .context("snappy compression")
}

fn build_client(config: &RemoteWriteConfig) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes())?,
            HeaderValue::from_str(v)?,
        );
    }
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs))
        .user_agent(concat!("rme/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers);
    b = match &config.proxy_url {
        Some(p) => b.proxy(reqwest::Proxy::all(p).with_context(|| format!("proxy_url {p}"))?),
        None => b.no_proxy(),
    };
    if let Some(t) = &config.tls {
        if let Some(ca) = &t.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("tls.ca_file {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("tls.ca_file {}", ca.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            let mut pem =
                std::fs::read(cert).with_context(|| format!("tls.cert_file {}", cert.display()))?;
            pem.extend(
                std::fs::read(key).with_context(|| format!("tls.key_file {}", key.display()))?,
            );
            b = b.identity(reqwest::Identity::from_pem(&pem).context("tls.cert_file/key_file")?);
        }
        b = b.danger_accept_invalid_certs(t.insecure_skip_verify);
    }
    b.build().context("building the HTTP client")
}

impl Sink for RemoteWrite {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(self.batches(snap)?.into_iter().map(|b| b.body).collect())
    }

    fn batches(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        let mut requests = self.requests(snap);
        self.mark_stale(&mut requests, snap.at_ms);
        requests
            .iter()
            .map(|(req, samples)| {
                Ok(Batch {
                    body: compress(req)?,
                    samples: *samples,
                })
            })
            .collect()
    }

    async fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        let req = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        let resp = self
            .authorize(req)?
            .send()
            .await
            .map_err(|e| SendError::Retry {
                reason: format!("POST {}: {}", self.url, error_chain(&e)),
                after: None,
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
    }
}

/// reqwest's error with its causes ("error sending request: … Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
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
        let after = retry_after.and_then(|v| parse_retry_after(v, now));
        Err(SendError::Retry { reason, after })
    } else {
        Err(SendError::Reject { reason })
    }
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[path = "remote_write_tests.rs"]
mod tests;
