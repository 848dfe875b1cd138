//! Sends snapshots to an OpenTelemetry collector: OTLP metrics over
//! HTTP/protobuf (`POST /v1/metrics`) or gRPC (`MetricsService/Export`).
//!
//! The tricky point is the counters' start time. The OpenTelemetry SDK stamps
//! it itself when an instrument is created (opentelemetry-rust#2472), so every
//! `rme push --once` would look like a counter reset downstream. Here the
//! `ExportMetricsServiceRequest` is built by hand from `opentelemetry-proto`
//! types, and a counter's `start_time_unix_nano` is the `start_ms` the store
//! keeps in the state file: it only changes when the counter really restarts.
//!
//! Bodies are spooled as plain protobuf. `encode.rs` builds the requests,
//! `transport.rs` sends them, `classify.rs` reads the answers per the spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Deserialize;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::first_increment::{FirstIncrement, Zeros};
use super::http::{TlsConfig, TlsFiles};
use super::{Accepted, Batch, SendError, Sink};
use crate::invalid::Invalid;
use crate::store::Snapshot;

mod classify;
mod encode;
mod transport;

pub use classify::{classify_grpc, classify_http, retry_after};
pub use encode::{batches, metrics, metrics_with_zeros, request};
use transport::Transport;

/// Wire protocol, as the OpenTelemetry SDKs spell it (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// Request body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Sink name (spool directory, self-metric label). Default `otlp`.
    #[serde(default)]
    pub name: Option<String>,
    /// `"http/protobuf"` (default) or `"grpc"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Receiver URL. http/protobuf: default `http://127.0.0.1:4318/v1/metrics`; a
    /// URL without a path (`https://otel.example:4318`) gets `/v1/metrics`
    /// appended, like `OTEL_EXPORTER_OTLP_ENDPOINT`; a URL with a path is used
    /// as it is, like `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`.
    /// grpc: default `http://127.0.0.1:4317`, no path. `https://` turns TLS on.
    #[serde(default, serialize_with = "crate::sinks::http::redacted_url_opt")]
    pub endpoint: Option<String>,
    /// `"gzip"` (default) or `"none"`.
    #[serde(default)]
    pub compression: Compression,
    /// Extra request headers (gRPC metadata), e.g. `{ authorization = "Bearer …" }`.
    #[serde(default, serialize_with = "crate::sinks::http::masked_values")]
    pub headers: BTreeMap<String, String>,
    /// Resource attributes added to `service.name = "rme"`, `service.version`
    /// and `host.name`; a key set here replaces the built-in one.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// PEM file of the CA(s) that signed the receiver's certificate (added to the
    /// public roots). Relative TLS paths are taken from the config file's directory.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for receivers that require mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only; http/protobuf only). Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The four TLS keys above as one table, as `remote_write` spells them:
    /// `tls = { ca_file = "ca.pem", cert_file = "c.pem", key_file = "c.key" }`.
    /// Either this table or the flat keys, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsConfig>>,
    /// Seconds one request may take, connection included. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Data points per request; larger snapshots are split. Default 1000.
    #[serde(default = "default_max_points")]
    pub max_points_per_request: usize,
    /// `"zero"` (default): a counter series born while rme watches gets a 0
    /// data point just after the previous push before its first point, so
    /// receivers that ignore start times (VictoriaMetrics) count its first
    /// events. `"none"`: only the start time says when it began.
    #[serde(default)]
    pub first_increment: FirstIncrement,
}

const fn default_timeout_secs() -> u64 {
    10
}

const fn default_max_points() -> usize {
    1000
}

/// Headers the sink sets itself; a user value would break the request.
const RESERVED_HEADERS: [&str; 4] = ["content-type", "content-encoding", "content-length", "te"];

impl OtlpConfig {
    /// Makes the TLS file paths absolute (`fix` joins them to the config's directory).
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.ca_file
            .iter_mut()
            .chain(self.cert_file.iter_mut())
            .chain(self.key_file.iter_mut())
            .chain(self.tls.iter_mut().flat_map(|t| {
                t.ca_file
                    .iter_mut()
                    .chain(t.cert_file.iter_mut())
                    .chain(t.key_file.iter_mut())
            }))
            .for_each(fix);
    }

    /// The TLS files, from the `tls` table when it is given, else the flat keys.
    pub fn tls_files(&self) -> TlsFiles<'_> {
        match &self.tls {
            Some(t) => t.files(),
            None => TlsFiles {
                key: "",
                ca_file: self.ca_file.as_deref(),
                cert_file: self.cert_file.as_deref(),
                key_file: self.key_file.as_deref(),
                insecure_skip_verify: self.insecure_skip_verify,
            },
        }
    }

    /// The TLS keys: one spelling, only with an https endpoint, a certificate
    /// with its key, `insecure_skip_verify` not with grpc.
    fn validate_tls(&self, key: &str, https: bool) -> Result<(), Invalid> {
        let flat = self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.insecure_skip_verify;
        if self.tls.is_some() && flat {
            return Err(Invalid::new(
                format!("{key}.tls"),
                "give the TLS keys either in `tls = { ... }` or flat (`ca_file`, `cert_file`, `key_file`, `insecure_skip_verify`), not both",
            ));
        }
        let files = self.tls_files();
        let at = |field: &str| format!("{key}.{}{field}", files.key);
        for (field, set) in [
            ("ca_file", files.ca_file.is_some()),
            ("cert_file", files.cert_file.is_some()),
            ("key_file", files.key_file.is_some()),
            ("insecure_skip_verify", files.insecure_skip_verify),
        ] {
            if set && !https {
                return Err(Invalid::new(
                    at(field),
                    "TLS options need an https:// endpoint",
                ));
            }
        }
        if files.cert_file.is_some() != files.key_file.is_some() {
            return Err(Invalid::new(
                at("cert_file"),
                "cert_file and key_file go together",
            ));
        }
        if files.insecure_skip_verify && self.protocol == Protocol::Grpc {
            return Err(Invalid::new(
                at("insecure_skip_verify"),
                "not supported with grpc; give the receiver's CA in ca_file",
            ));
        }
        Ok(())
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        let url = self
            .url()
            .map_err(|reason| Invalid::new(format!("{key}.endpoint"), reason))?;
        self.validate_tls(key, url.scheme() == "https")?;
        for (name, value) in &self.headers {
            let k = format!("{key}.headers.{name}");
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Invalid::new(k, "set by rme itself"));
            }
            header_pair(self.protocol, name, value).map_err(|reason| Invalid::new(k, reason))?;
        }
        if self.resource_attributes.keys().any(String::is_empty) {
            return Err(Invalid::new(
                format!("{key}.resource_attributes"),
                "empty attribute name",
            ));
        }
        Invalid::at_least(format!("{key}.timeout_secs"), self.timeout_secs, 1)?;
        Invalid::at_least(
            format!("{key}.max_points_per_request"),
            self.max_points_per_request as u64,
            1,
        )?;
        Ok(())
    }

    /// The URL requests go to, with the defaults and the `/v1/metrics` rule applied.
    fn url(&self) -> Result<reqwest::Url, String> {
        let raw = match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.as_str(),
            (None, Protocol::HttpProtobuf) => "http://127.0.0.1:4318/v1/metrics",
            (None, Protocol::Grpc) => "http://127.0.0.1:4317",
        };
        let mut url = reqwest::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "'{raw}' must be an http:// or https:// URL with a host"
            ));
        }
        let bare = url.path() == "/" || url.path().is_empty();
        match self.protocol {
            Protocol::HttpProtobuf if bare => url.set_path("/v1/metrics"),
            Protocol::Grpc if !bare => return Err(format!("'{raw}': a gRPC endpoint has no path")),
            _ => {}
        }
        Ok(url)
    }
}

/// Checks one header for the protocol it will travel on.
fn header_pair(protocol: Protocol, name: &str, value: &str) -> Result<(), String> {
    match protocol {
        Protocol::HttpProtobuf => {
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        }
        Protocol::Grpc => {
            AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| e.to_string())?;
            if !value.is_ascii() {
                return Err("gRPC metadata values must be ASCII".to_string());
            }
            value
                .parse::<AsciiMetadataValue>()
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The OTLP sink: encoder plus one transport.
pub struct Otlp {
    name: String,
    resource: Resource,
    max_points: usize,
    transport: Transport,
    /// New counters' zero points (`first_increment`).
    zeros: Zeros,
}

impl Otlp {
    pub fn new(name: String, config: &OtlpConfig) -> anyhow::Result<Otlp> {
        Ok(Otlp {
            name,
            resource: encode::resource(&config.resource_attributes),
            max_points: config.max_points_per_request,
            transport: Transport::new(config)?,
            zeros: Zeros::new(config.first_increment),
        })
    }

    /// Logs a partial success and returns the points it refused.
    fn note_partial(&self, partial: Option<ExportMetricsPartialSuccess>) -> u64 {
        let Some(p) = partial else { return 0 };
        if p.rejected_data_points > 0 || !p.error_message.is_empty() {
            tracing::warn!(
                sink = %self.name,
                rejected = p.rejected_data_points,
                message = %p.error_message,
                "receiver accepted the request but refused some data points"
            );
        }
        u64::try_from(p.rejected_data_points).unwrap_or(0)
    }
}

impl Sink for Otlp {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Batch>> {
        let watermark = self.zeros.after(snap);
        let zeros = &self.zeros;
        let at_ns = snap.at_ms.max(0) as u64 * 1_000_000;
        // The series zeroed go in the first body's note: a flush's bodies are
        // all spooled before any is sent (see `first_increment`).
        let mut zeroed: Vec<_> = snap
            .points
            .iter()
            .filter(|p| zeros.zero_ms(p, snap.at_ms).is_some())
            .map(|p| crate::store::Series::clone(&p.series))
            .collect();
        let out = batches(
            metrics_with_zeros(snap, &|p| zeros.zero_ms(p, snap.at_ms)),
            self.max_points,
        )
        .into_iter()
        .map(|mut group| {
            // the snapshot's points, not the zeros before them
            let samples = group
                .iter_mut()
                .filter_map(encode::points_mut)
                .flat_map(|p| p.iter())
                .filter(|p| p.time_unix_nano == at_ns)
                .count() as u64;
            let body = request(&self.resource, group).encode_to_vec();
            Batch {
                body,
                samples,
                note: Zeros::note(watermark, std::mem::take(&mut zeroed)),
            }
        })
        .collect();
        self.zeros.advance(watermark);
        Ok(out)
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
        let partial = self.transport.send(body).await?;
        Ok(Accepted {
            rejected_points: self.note_partial(partial),
        })
    }
}

#[cfg(test)]
mod tests;
