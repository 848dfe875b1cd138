//! What the HTTP sinks (remote_write, otlp) share: the reqwest client's TLS
//! files, `Retry-After`, and readable error text.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Deserialize;

/// A `Retry-After` value (seconds or an HTTP date) as a wait from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An error with its causes on one line (reqwest's own Display hides the
/// cause, e.g. "Connection refused"), any URL in it without its secrets.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    crate::logging::redact::text(&s).into_owned()
}

/// The `tls = { … }` table of an HTTP sink (`remote_write`'s spelling; `otlp`
/// also takes its four keys flat).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
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

impl TlsConfig {
    /// The files to read, their errors named `tls.…`.
    pub fn files(&self) -> TlsFiles<'_> {
        TlsFiles {
            key: "tls.",
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
            insecure_skip_verify: self.insecure_skip_verify,
        }
    }
}

/// TLS files of a sink's config; `key` prefixes error messages (`tls.` or empty).
pub struct TlsFiles<'a> {
    pub key: &'a str,
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    pub insecure_skip_verify: bool,
}

/// Adds a CA bundle, a client certificate and the verify switch to a client.
pub fn with_tls(
    mut b: reqwest::ClientBuilder,
    tls: &TlsFiles<'_>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("{}{what} {}", tls.key, p.display()))
    };
    if let Some(ca) = tls.ca_file {
        for cert in reqwest::Certificate::from_pem_bundle(&read(ca, "ca_file")?)
            .with_context(|| format!("{}ca_file {}", tls.key, ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (tls.cert_file, tls.key_file) {
        let mut pem = read(cert, "cert_file")?;
        pem.push(b'\n');
        pem.extend(read(key, "key_file")?);
        b = b.identity(
            reqwest::Identity::from_pem(&pem)
                .with_context(|| format!("{0}cert_file/{0}key_file", tls.key))?,
        );
    }
    Ok(b.danger_accept_invalid_certs(tls.insecure_skip_verify))
}

/// Writes a secret as `***` (what `rme check-config` prints instead of it).
pub fn masked<T, S: serde::Serializer>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

/// Writes a URL without its password or token-like query values
/// (`http://alice:***@host/…`), for `rme check-config`.
pub fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::logging::redact::url(url))
}

/// [`redacted_url`] for an optional URL.
pub fn redacted_url_opt<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&crate::logging::redact::url(u)),
        None => s.serialize_none(),
    }
}

/// Writes a header map with every value as `***`: a header may carry a token.
pub fn masked_values<S: serde::Serializer>(
    map: &std::collections::BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.keys().map(|k| (k, "***")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Tue, 24 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Tue, 24 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
