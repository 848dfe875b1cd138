//! The two OTLP transports. Each sends one spooled body (plain protobuf) once:
//! HTTP gzips it and POSTs it; gRPC decodes it back into the message for the
//! tonic client. The answer is classified in `classify.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest,
};
use prost::Message as _;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::classify::{classify_grpc, classify_http, retry_after};
use super::{Compression, OtlpConfig, Protocol};
use crate::sinks::SendError;

pub(super) enum Transport {
    Http(Box<Http>),
    Grpc(Box<Grpc>),
}

pub(super) struct Http {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    gzip: bool,
}

pub(super) struct Grpc {
    endpoint: Endpoint,
    /// Built on first send: tonic's lazy channel needs a running tokio runtime.
    client: Option<MetricsServiceClient<Channel>>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    gzip: bool,
    timeout: Duration,
}

impl Transport {
    pub(super) fn new(config: &OtlpConfig) -> anyhow::Result<Transport> {
        let url = config.url().map_err(anyhow::Error::msg)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let gzip = config.compression == Compression::Gzip;
        Ok(match config.protocol {
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
        })
    }

    /// Sends one body; `Ok` may carry the receiver's partial-success report.
    pub(super) async fn send(
        &mut self,
        body: &[u8],
    ) -> Result<Option<ExportMetricsPartialSuccess>, SendError> {
        match self {
            Transport::Http(h) => h.send(body).await,
            Transport::Grpc(g) => g.send(body).await,
        }
    }
}

/// Reads one TLS file; `key` is `tls.` for the nested spelling, else empty.
fn read_pem(path: &Path, key: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {key}{what} {}", path.display()))
}

fn http_client(config: &OtlpConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("rme/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout);
    b = crate::sinks::http::with_tls(b, &config.tls_files())?;
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
        let files = config.tls_files();
        if let Some(ca) = files.ca_file {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(
                ca, files.key, "ca_file",
            )?));
        }
        if let (Some(cert), Some(key)) = (files.cert_file, files.key_file) {
            let identity = tonic::transport::Identity::from_pem(
                read_pem(cert, files.key, "cert_file")?,
                read_pem(key, files.key, "key_file")?,
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

pub(super) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
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
            reason: format!(
                "{}: {}",
                crate::logging::redact::url(self.url.as_str()),
                crate::sinks::http::error_chain(&e)
            ),
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
                reason: format!(
                    "{}: {reason}",
                    crate::logging::redact::url(self.url.as_str())
                ),
                after,
            },
            SendError::Reject { reason } => SendError::Reject {
                reason: format!(
                    "{}: {reason}",
                    crate::logging::redact::url(self.url.as_str())
                ),
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
                    Some(cause) => format!(
                        "{}: {}",
                        status.message(),
                        crate::sinks::http::error_chain(cause)
                    ),
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
