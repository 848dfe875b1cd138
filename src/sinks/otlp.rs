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
//! Bodies are spooled as plain protobuf; `send` gzips them (HTTP) or decodes
//! them back into the message for the tonic client (gRPC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Deserialize;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::{SendError, Sink};
use crate::config::Invalid;
use crate::store::{Point, Snapshot, Value};

mod classify;

pub use classify::{classify_grpc, classify_http, retry_after};

/// Wire protocol, as the OpenTelemetry SDKs spell it (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// Request body compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Deserialize)]
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
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `"gzip"` (default) or `"none"`.
    #[serde(default)]
    pub compression: Compression,
    /// Extra request headers (gRPC metadata), e.g. `{ authorization = "Bearer …" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Resource attributes added to `service.name = "rme"`, `service.version`
    /// and `host.name`; a key set here replaces the built-in one.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// PEM file of the CA(s) that signed the receiver's certificate (added to the public roots).
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
    /// Seconds one request may take, connection included. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Data points per request; larger snapshots are split. Default 1000.
    #[serde(default = "default_max_points")]
    pub max_points_per_request: usize,
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
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        let url = self
            .url()
            .map_err(|reason| Invalid::new(format!("{key}.endpoint"), reason))?;
        let tls = url.scheme() == "https";
        for (field, set) in [
            ("ca_file", self.ca_file.is_some()),
            ("cert_file", self.cert_file.is_some()),
            ("key_file", self.key_file.is_some()),
            ("insecure_skip_verify", self.insecure_skip_verify),
        ] {
            if set && !tls {
                return Err(Invalid::new(
                    format!("{key}.{field}"),
                    "TLS options need an https:// endpoint",
                ));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Invalid::new(
                format!("{key}.cert_file"),
                "cert_file and key_file go together",
            ));
        }
        if self.insecure_skip_verify && self.protocol == Protocol::Grpc {
            return Err(Invalid::new(
                format!("{key}.insecure_skip_verify"),
                "not supported with grpc; give the receiver's CA in ca_file",
            ));
        }
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
        if self.timeout_secs == 0 {
            return Err(Invalid::new(
                format!("{key}.timeout_secs"),
                "must be at least 1",
            ));
        }
        if self.max_points_per_request == 0 {
            return Err(Invalid::new(
                format!("{key}.max_points_per_request"),
                "must be at least 1",
            ));
        }
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
    rejected_points: u64,
}

enum Transport {
    Http(Box<Http>),
    Grpc(Box<Grpc>),
}

struct Http {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    gzip: bool,
}

struct Grpc {
    endpoint: Endpoint,
    /// Built on first send: tonic's lazy channel needs a running tokio runtime.
    client: Option<MetricsServiceClient<Channel>>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    gzip: bool,
    timeout: Duration,
}

impl Otlp {
    pub fn new(name: String, config: &OtlpConfig) -> anyhow::Result<Otlp> {
        let url = config.url().map_err(anyhow::Error::msg)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let gzip = config.compression == Compression::Gzip;
        let transport = match config.protocol {
            Protocol::HttpProtobuf => Transport::Http(Box::new(Http {
                client: http_client(config, timeout)?,
                headers: http_headers(&config.headers)?,
                url,
                gzip,
            })),
            Protocol::Grpc => Transport::Grpc(Box::new(Grpc {
                endpoint: grpc_endpoint(config, url, timeout)?,
                client: None,
                metadata: grpc_metadata(&config.headers)?,
                gzip,
                timeout,
            })),
        };
        Ok(Otlp {
            name,
            resource: resource(&config.resource_attributes),
            max_points: config.max_points_per_request,
            transport,
            rejected_points: 0,
        })
    }
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn http_client(config: &OtlpConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("rme/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout)
        .danger_accept_invalid_certs(config.insecure_skip_verify);
    if let Some(ca) = &config.ca_file {
        for cert in reqwest::Certificate::from_pem_bundle(&read_pem(ca, "ca_file")?)
            .with_context(|| format!("ca_file {}", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        let mut pem = read_pem(cert, "cert_file")?;
        pem.push(b'\n');
        pem.extend(read_pem(key, "key_file")?);
        b = b.identity(reqwest::Identity::from_pem(&pem).context("cert_file/key_file")?);
    }
    b.build().context("building the HTTP client")
}

fn http_headers(headers: &BTreeMap<String, String>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("header {k}"))?,
            reqwest::header::HeaderValue::from_str(v).with_context(|| format!("header {k}"))?,
        );
    }
    Ok(map)
}

fn grpc_endpoint(
    config: &OtlpConfig,
    url: reqwest::Url,
    timeout: Duration,
) -> anyhow::Result<Endpoint> {
    // Url adds a "/" path that tonic would keep in every request path.
    let uri = url.as_str().trim_end_matches('/').to_string();
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("endpoint {uri}"))?
        .user_agent(concat!("rme/", env!("CARGO_PKG_VERSION")))?
        .timeout(timeout)
        .connect_timeout(timeout);
    if url.scheme() == "https" {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &config.ca_file {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(
                ca, "ca_file",
            )?));
        }
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            let identity = tonic::transport::Identity::from_pem(
                read_pem(cert, "cert_file")?,
                read_pem(key, "key_file")?,
            );
            tls = tls.identity(identity);
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    Ok(endpoint)
}

fn grpc_metadata(
    headers: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>> {
    headers
        .iter()
        .map(|(k, v)| {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .with_context(|| format!("header {k}"))?;
            let value = v.parse().with_context(|| format!("header {k}"))?;
            Ok((key, value))
        })
        .collect()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

/// This host's name, as the kernel knows it (`uname -n`).
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The resource every request carries: built-in attributes, then the user's.
fn resource(user: &BTreeMap<String, String>) -> Resource {
    let mut attrs = BTreeMap::new();
    attrs.insert("service.name".to_string(), "rme".to_string());
    attrs.insert(
        "service.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Some(host) = host_name() {
        attrs.insert("host.name".to_string(), host);
    }
    attrs.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    Resource {
        attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
        ..Resource::default()
    }
}

const fn ms_to_ns(ms: i64) -> u64 {
    (if ms < 0 { 0 } else { ms as u64 }).saturating_mul(1_000_000)
}

fn data_point(p: &Point, at_ms: i64) -> NumberDataPoint {
    let (value, start) = match p.value {
        Value::Counter(v) => (
            number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX)),
            ms_to_ns(p.start_ms.min(at_ms)),
        ),
        Value::Gauge(v) => (number_data_point::Value::AsDouble(v), 0),
    };
    NumberDataPoint {
        attributes: p
            .series
            .labels
            .iter()
            .map(|(k, v)| string_kv(k, v))
            .collect(),
        start_time_unix_nano: start,
        time_unix_nano: ms_to_ns(at_ms),
        value: Some(value),
        ..NumberDataPoint::default()
    }
}

/// One OTLP metric per metric name: counters as monotonic cumulative sums, gauges as gauges.
pub fn metrics(snap: &Snapshot) -> Vec<Metric> {
    snap.points
        .chunk_by(|a, b| a.series.name == b.series.name)
        .map(|points| {
            let name = &points[0].series.name;
            let data_points = points.iter().map(|p| data_point(p, snap.at_ms)).collect();
            let data = match points[0].value {
                Value::Counter(_) => metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Value::Gauge(_) => metric::Data::Gauge(Gauge { data_points }),
            };
            Metric {
                name: name.clone(),
                description: snap
                    .meta
                    .get(name)
                    .map(|m| m.help.to_string())
                    .unwrap_or_default(),
                data: Some(data),
                ..Metric::default()
            }
        })
        .collect()
}

fn points_mut(m: &mut Metric) -> Option<&mut Vec<NumberDataPoint>> {
    match m.data.as_mut()? {
        metric::Data::Sum(s) => Some(&mut s.data_points),
        metric::Data::Gauge(g) => Some(&mut g.data_points),
        _ => None,
    }
}

/// Splits metrics into groups of at most `max` data points, cutting a metric in two where needed.
pub fn batches(metrics: Vec<Metric>, max: usize) -> Vec<Vec<Metric>> {
    let max = max.max(1);
    let (mut out, mut current, mut room) = (Vec::new(), Vec::new(), max);
    for mut m in metrics {
        while let Some(points) = points_mut(&mut m)
            && points.len() > room
        {
            let rest_points = points.split_off(room);
            let mut rest = m.clone();
            if let Some(p) = points_mut(&mut rest) {
                *p = rest_points;
            }
            current.push(m);
            out.push(std::mem::take(&mut current));
            room = max;
            m = rest;
        }
        room -= points_mut(&mut m).map_or(0, |p| p.len());
        current.push(m);
        if room == 0 {
            out.push(std::mem::take(&mut current));
            room = max;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl Otlp {
    fn request(&self, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "rme".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn note_partial(&mut self, partial: Option<ExportMetricsPartialSuccess>) {
        let Some(p) = partial else { return };
        if p.rejected_data_points > 0 || !p.error_message.is_empty() {
            tracing::warn!(
                sink = %self.name,
                rejected = p.rejected_data_points,
                message = %p.error_message,
                "receiver accepted the request but refused some data points"
            );
        }
        self.rejected_points += u64::try_from(p.rejected_data_points).unwrap_or(0);
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// The error and its causes on one line (reqwest's own Display hides the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Http {
    async fn send(&self, body: &[u8]) -> Result<Option<ExportMetricsPartialSuccess>, SendError> {
        use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf");
        req = if self.gzip {
            req.header(CONTENT_ENCODING, "gzip").body(gzip(body))
        } else {
            req.body(body.to_vec())
        };
        let resp = req.send().await.map_err(|e| SendError::Retry {
            reason: format!("{}: {}", self.url, chain(&e)),
            after: None,
        })?;
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let answer = resp.bytes().await.unwrap_or_default();
        classify_http(status, after, &answer).map_err(|e| match e {
            SendError::Retry { reason, after } => SendError::Retry {
                reason: format!("{}: {reason}", self.url),
                after,
            },
            SendError::Reject { reason } => SendError::Reject {
                reason: format!("{}: {reason}", self.url),
            },
        })
    }
}

impl Grpc {
    async fn send(
        &mut self,
        body: &[u8],
    ) -> Result<Option<ExportMetricsPartialSuccess>, SendError> {
        let message = ExportMetricsServiceRequest::decode(body).map_err(|e| SendError::Reject {
            reason: format!("spooled body is not an OTLP request: {e}"),
        })?;
        let mut client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let mut c = MetricsServiceClient::new(self.endpoint.connect_lazy())
                    .accept_compressed(CompressionEncoding::Gzip);
                if self.gzip {
                    c = c.send_compressed(CompressionEncoding::Gzip);
                }
                self.client.insert(c).clone()
            }
        };
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        for (k, v) in &self.metadata {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        match client.export(request).await {
            Ok(resp) => Ok(resp.into_inner().partial_success),
            Err(status) => {
                // A status with a cause was raised here by the transport (TLS, connection),
                // not sent by the receiver; its message alone is generic.
                let cause = std::error::Error::source(&status);
                let message = match cause {
                    Some(cause) => format!("{}: {}", status.message(), chain(cause)),
                    None => status.message().to_string(),
                };
                Err(classify_grpc(
                    status.code(),
                    &message,
                    status.details(),
                    cause.is_some(),
                ))
            }
        }
    }
}

impl Sink for Otlp {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&mut self, snap: &Snapshot) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(batches(metrics(snap), self.max_points)
            .into_iter()
            .map(|group| self.request(group).encode_to_vec())
            .collect())
    }

    async fn send(&mut self, body: &[u8]) -> Result<(), SendError> {
        let partial = match &mut self.transport {
            Transport::Http(h) => h.send(body).await?,
            Transport::Grpc(g) => g.send(body).await?,
        };
        self.note_partial(partial);
        Ok(())
    }

    fn take_rejected_points(&mut self) -> u64 {
        std::mem::take(&mut self.rejected_points)
    }
}

#[cfg(test)]
mod tests;
