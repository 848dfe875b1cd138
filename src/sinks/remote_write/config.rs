//! The remote_write sink's config keys and their checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::invalid::Invalid;
pub use crate::sinks::http::TlsConfig;

/// Headers the spec reserves; `headers` may not set them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-encoding",
    "content-type",
    "x-prometheus-remote-write-version",
    "user-agent",
    "content-length",
    "host",
];

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Sink name (spool directory, self-metric label). Default `remote_write`.
    #[serde(default)]
    pub name: Option<String>,
    /// Receiver endpoint, e.g. http://127.0.0.1:8428/api/v1/write (VictoriaMetrics)
    /// or http://prometheus:9090/api/v1/write (Prometheus with `--web.enable-remote-write-receiver`).
    #[serde(serialize_with = "crate::sinks::http::redacted_url")]
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
    #[serde(default, serialize_with = "crate::sinks::http::masked_values")]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for an https `url`.
    #[serde(default)]
    pub tls: Option<Box<TlsConfig>>,
    /// Proxy for every request, e.g. http://proxy:3128. Without it no proxy is
    /// used (the HTTP_PROXY environment variables are ignored).
    #[serde(default, serialize_with = "crate::sinks::http::redacted_url_opt")]
    pub proxy_url: Option<String>,
    /// Labels added to every series, e.g. `{ host = "web1", job = "rme" }`. A
    /// label the series already has keeps its own value.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// `"zero"` (default): a counter series born while rme watches carries a
    /// 0 sample just after the previous push before its first value, so
    /// `increase()` counts its first events. `"none"`: it does not (one sample
    /// less per new series; Prometheus then never counts a series' first value).
    #[serde(default)]
    pub first_increment: crate::sinks::first_increment::FirstIncrement,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password, written in the config (prefer `password_file`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::sinks::http::masked"
    )]
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored); read again for every request.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
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

    /// Checks what neither serde nor building checks. The `url`, `headers` and
    /// `proxy_url` are checked where they are built ([`Self::parsed_url`],
    /// [`Self::header_map`], [`Self::proxy`]), their keys relative to the sink.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        Invalid::at_least(format!("{key}.timeout_secs"), self.timeout_secs, 1)?;
        Invalid::at_least(format!("{key}.batch_size"), self.batch_size as u64, 1)?;
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
        if let Some(t) = &self.tls
            && t.cert_file.is_some() != t.key_file.is_some()
        {
            return Err(Invalid::new(
                format!("{key}.tls"),
                "`cert_file` and `key_file` go together",
            ));
        }
        self.check_external_labels(key)
    }

    /// `url`, parsed; http or https.
    pub fn parsed_url(&self) -> Result<reqwest::Url, Invalid> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| Invalid::new("url", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("url", "scheme must be http or https"));
        }
        Ok(url)
    }

    /// `headers` as sent with every request; the spec's own are refused.
    pub fn header_map(&self) -> Result<HeaderMap, Invalid> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let k = format!("headers.{name}");
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Invalid::new(
                    k,
                    "reserved by the remote-write spec; rme sets it",
                ));
            }
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Invalid::new(&k, e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| Invalid::new(&k, e.to_string()))?;
            map.insert(n, v);
        }
        Ok(map)
    }

    /// `proxy_url` as a proxy for every request, if set.
    pub fn proxy(&self) -> Result<Option<reqwest::Proxy>, Invalid> {
        self.proxy_url
            .as_deref()
            .map(|p| reqwest::Proxy::all(p).map_err(|e| Invalid::new("proxy_url", e.to_string())))
            .transpose()
    }

    fn check_external_labels(&self, key: &str) -> Result<(), Invalid> {
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
