//! The exporter-toolkit web configuration (`[serve] web_config`): the YAML file
//! every Prometheus exporter reads with `--web.config.file`, so one file serves
//! rme and the exporters beside it. `tls_server_config` becomes a rustls
//! server config, `basic_auth_users` a bcrypt check with a cache of recent
//! answers (as exporter-toolkit does, so bcrypt does not run per scrape), and
//! `http_server_config.headers` extra response headers.
//!
//! Everything is read and checked by [`WebConfig::load`] at config load, so
//! `rme check-config` refuses a broken file and SIGHUP keeps the running one.
//! Errors name the file and the key; they never quote a hash, a password or
//! key material, and `Debug` prints user names only.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::Deserialize;

/// The file as written (exporter-toolkit's `web.Config`); unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Newer exporter-toolkit key; refused rather than silently ignored.
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// Inline PEM certificate (instead of `cert_file`).
    cert: Option<String>,
    /// Inline PEM key (instead of `key_file`).
    key: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    client_auth_type: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// exporter-toolkit's HTTP/2 switch; rme serves HTTP/1.1 either way.
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit lets a web config set, with their allowed values (none = any).
const SETTABLE_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    const ALL: [(&'static str, ClientAuth); 5] = [
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
        (
            "VerifyClientCertIfGiven",
            ClientAuth::VerifyClientCertIfGiven,
        ),
        (
            "RequireAndVerifyClientCert",
            ClientAuth::RequireAndVerifyClientCert,
        ),
    ];
}

/// How many (user, password) answers are remembered (exporter-toolkit keeps 100).
const AUTH_CACHE_SIZE: usize = 100;

/// bcrypt runs against this when the user is unknown, so the answer takes as
/// long as for a known user (exporter-toolkit's dummy hash of cost 10).
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// A loaded and checked web config.
pub struct WebConfig {
    pub path: PathBuf,
    /// `None`: plain HTTP (a file with basic auth or headers only).
    pub tls: Option<Arc<ServerConfig>>,
    /// What `Debug` shows of the TLS part (files and policy, no contents).
    tls_summary: Option<String>,
    /// user → bcrypt hash; empty = no authentication.
    users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// SHA-256(user, hash, password) → answer; no password is kept in memory.
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt at a time (it is slow on purpose), off the async threads.
    bcrypt_gate: tokio::sync::Semaphore,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls_summary)
            .field("basic_auth_users", &self.users.keys().collect::<Vec<_>>())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl WebConfig {
    /// Reads, parses and checks the file; errors name the file and the key.
    /// Relative paths inside are taken from the file's directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir, path).with_context(|| path.display().to_string())
    }

    fn parse(text: &str, dir: &Path, path: &Path) -> anyhow::Result<WebConfig> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text)?
        };
        if file.rate_limit.is_some() {
            bail!("rate_limit: not supported by rme");
        }
        let (tls, tls_summary) = match file.tls_server_config {
            Some(t) if !t.is_empty() => {
                let summary = t.summary();
                (Some(Arc::new(t.build(dir)?)), Some(summary))
            }
            _ => (None, None),
        };
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                bail!("basic_auth_users.{user}: a user name cannot contain ':'");
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                bail!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                );
            }
        }
        let http = file.http_server_config.unwrap_or_default();
        let _ = http.http2;
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = SETTABLE_HEADERS
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<_> = SETTABLE_HEADERS.iter().map(|(h, _)| *h).collect();
                bail!("{key}: cannot be set (settable: {})", names.join(", "));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                bail!("{key}: must be one of {}", allowed.join(", "));
            }
            headers.push((
                HeaderName::from_bytes(name.as_bytes()).with_context(|| key.clone())?,
                HeaderValue::from_str(&value).with_context(|| key.clone())?,
            ));
        }
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            tls_summary,
            users,
            headers,
            cache: Mutex::new(HashMap::new()),
            bcrypt_gate: tokio::sync::Semaphore::new(1),
        })
    }

    /// Whether requests must carry basic auth.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header against `basic_auth_users` (true when none are set).
    pub async fn authorized(&self, header: Option<&[u8]>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.map_or(DUMMY_HASH, String::as_str);
        let key = cache_key(&user, hash, &password);
        if let Some(ok) = self.cached(&key) {
            return ok && known.is_some();
        }
        let Ok(_gate) = self.bcrypt_gate.acquire().await else {
            return false;
        };
        if let Some(ok) = self.cached(&key) {
            return ok && known.is_some();
        }
        let owned = hash.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &owned))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= AUTH_CACHE_SIZE
            && let Some(old) = cache.keys().next().copied()
        {
            cache.remove(&old);
        }
        cache.insert(key, ok);
        ok && known.is_some()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).copied()
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    use base64::Engine as _;
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, b64) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (user, password) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, password))
}

impl TlsFile {
    /// exporter-toolkit serves plain HTTP when no TLS key is set at all.
    fn is_empty(&self) -> bool {
        self.cert_file.is_none()
            && self.key_file.is_none()
            && self.cert.is_none()
            && self.key.is_none()
            && self.client_ca_file.is_none()
            && self.client_ca.is_none()
            && self.client_auth_type.is_none()
    }

    fn summary(&self) -> String {
        let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        format!(
            "cert_file={:?} key_file={:?} client_ca_file={:?} client_auth_type={} min_version={} max_version={}",
            show(&self.cert_file).or(self.cert.as_ref().map(|_| "(inline)".into())),
            show(&self.key_file).or(self.key.as_ref().map(|_| "(inline)".into())),
            show(&self.client_ca_file).or(self.client_ca.as_ref().map(|_| "(inline)".into())),
            self.client_auth_type.as_deref().unwrap_or("NoClientCert"),
            self.min_version.as_deref().unwrap_or("TLS12"),
            self.max_version.as_deref().unwrap_or("TLS13"),
        )
    }

    fn build(self, dir: &Path) -> anyhow::Result<ServerConfig> {
        const K: &str = "tls_server_config";
        if self.client_allowed_sans.is_some() {
            bail!("{K}.client_allowed_sans: not supported by rme");
        }
        let resolve = |p: &Path| {
            if p.is_relative() {
                dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let pem = |file: &Option<PathBuf>,
                   inline: &Option<String>,
                   what: &str,
                   inline_key: &str| match (file, inline) {
            (Some(_), Some(_)) => Err(anyhow!("{K}: set {what} or {inline_key}, not both")),
            (Some(p), None) => {
                let p = resolve(p);
                std::fs::read(&p)
                    .map(Some)
                    .with_context(|| format!("{K}.{what}: reading {}", p.display()))
            }
            (None, Some(text)) => Ok(Some(text.clone().into_bytes())),
            (None, None) => Ok(None),
        };
        let cert_pem = pem(&self.cert_file, &self.cert, "cert_file", "cert")?
            .ok_or_else(|| anyhow!("{K}.cert_file: missing (TLS needs a certificate)"))?;
        let key_pem = pem(&self.key_file, &self.key, "key_file", "key")?
            .ok_or_else(|| anyhow!("{K}.key_file: missing (TLS needs a private key)"))?;
        let ca_pem = pem(
            &self.client_ca_file,
            &self.client_ca,
            "client_ca_file",
            "client_ca",
        )?;

        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{K}.cert_file: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            bail!("{K}.cert_file: no certificate in it");
        }
        // No detail of the parser's complaint: it could quote key material.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            anyhow!("{K}.key_file: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it")
        })?;

        let mut provider = ring::default_provider();
        if let Some(names) = &self.cipher_suites {
            select_cipher_suites(&mut provider, names)?;
        }
        if let Some(names) = &self.curve_preferences {
            select_curves(&mut provider, names)?;
        }
        let provider = Arc::new(provider);
        let versions = versions(self.min_version.as_deref(), self.max_version.as_deref())?;

        let auth = match self.client_auth_type.as_deref() {
            None => ClientAuth::NoClientCert,
            Some(name) => ClientAuth::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .ok_or_else(|| {
                    let names: Vec<_> = ClientAuth::ALL.iter().map(|(n, _)| *n).collect();
                    anyhow!("{K}.client_auth_type: must be one of {}", names.join(", "))
                })?,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .context(K)?;
        let verifier: Option<Arc<dyn ClientCertVerifier>> = match (auth, ca_pem) {
            (ClientAuth::NoClientCert, None) => None,
            (ClientAuth::NoClientCert, Some(_)) => bail!(
                "{K}.client_ca_file: set without a client_auth_type that checks client certificates"
            ),
            (ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert, _) => {
                Some(Arc::new(AnyClientCert {
                    mandatory: auth == ClientAuth::RequireAnyClientCert,
                    algs: provider.signature_verification_algorithms,
                }))
            }
            (_, None) => bail!("{K}.client_ca_file: needed by client_auth_type {auth:?}"),
            (_, Some(pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c =
                        c.map_err(|e| anyhow!("{K}.client_ca_file: not PEM certificates: {e}"))?;
                    roots
                        .add(c)
                        .map_err(|e| anyhow!("{K}.client_ca_file: {e}"))?;
                }
                if roots.is_empty() {
                    bail!("{K}.client_ca_file: no certificate in it");
                }
                let b =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let b = if auth == ClientAuth::VerifyClientCertIfGiven {
                    b.allow_unauthenticated()
                } else {
                    b
                };
                Some(b.build().map_err(|e| anyhow!("{K}.client_ca_file: {e}"))?)
            }
        };
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| anyhow!("{K}.cert_file/key_file: {e}"))?;
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `min_version`/`max_version` (TLS10…TLS13) → the versions rustls offers (1.2 and 1.3 only).
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> anyhow::Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    let rank = |key: &str, v: &str| match v {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        _ => Err(anyhow!(
            "tls_server_config.{key}: must be one of TLS10, TLS11, TLS12, TLS13"
        )),
    };
    let min = min.map_or(Ok(12), |v| rank("min_version", v))?;
    let max = max.map_or(Ok(13), |v| rank("max_version", v))?;
    if max < 12 {
        bail!("tls_server_config.max_version: rme speaks TLS 1.2 and 1.3 only");
    }
    if min > max {
        bail!("tls_server_config.min_version: above max_version");
    }
    let mut out = Vec::new();
    if min <= 12 {
        out.push(&rustls::version::TLS12);
    }
    out.push(&rustls::version::TLS13);
    if max == 12 {
        out.pop();
    }
    Ok(out)
}

/// Go's cipher suite names select TLS 1.2 suites; TLS 1.3's are not
/// configurable (as in Go).
fn select_cipher_suites(provider: &mut CryptoProvider, names: &[String]) -> anyhow::Result<()> {
    let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
    let tls12: Vec<String> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(name)
        .collect();
    for n in names {
        if !tls12.contains(n) {
            bail!(
                "tls_server_config.cipher_suites: {n} is not supported (rme's TLS 1.2 suites: {})",
                tls12.join(", ")
            );
        }
    }
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || names.contains(&name(s)));
    // the configured order is the server's preference
    provider.cipher_suites.sort_by_key(|s| {
        names
            .iter()
            .position(|n| *n == name(s))
            .unwrap_or(usize::MAX)
    });
    Ok(())
}

/// Go's curve names (CurveP256, CurveP384, X25519) → rustls key-exchange groups, in that order.
fn select_curves(provider: &mut CryptoProvider, names: &[String]) -> anyhow::Result<()> {
    let mut groups = Vec::new();
    for n in names {
        groups.push(match n.as_str() {
            "CurveP256" => ring::kx_group::SECP256R1,
            "CurveP384" => ring::kx_group::SECP384R1,
            "X25519" => ring::kx_group::X25519,
            _ => bail!(
                "tls_server_config.curve_preferences: {n} is not supported (CurveP256, CurveP384, X25519)"
            ),
        });
    }
    provider.kx_groups = groups;
    Ok(())
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for
/// (required with the latter) but its chain is not checked, as in Go; the
/// handshake signature is still verified.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<WebConfig> {
        WebConfig::parse(text, Path::new("/nonexistent"), Path::new("web.yml"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = parse("").unwrap();
        assert!(c.tls.is_none() && !c.needs_auth());
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(err("tls_server_config:\n  cert_fil: x\n").contains("cert_fil"));
        assert!(err("basic_auth_user:\n  a: b\n").contains("basic_auth_user"));
        assert!(err("http_server_config:\n  header: {}\n").contains("header"));
    }

    #[test]
    fn broken_tls_parts_name_their_key() {
        let e = err("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
        assert!(
            e.contains("tls_server_config.cert_file") && e.contains("/nonexistent/c.pem"),
            "{e}"
        );
        let e = err("tls_server_config:\n  key_file: k.pem\n");
        assert!(e.contains("tls_server_config.cert_file: missing"), "{e}");
        let e = err("tls_server_config:\n  cert: x\n  key: y\n  client_auth_type: Always\n");
        assert!(e.contains("not PEM") || e.contains("no certificate"), "{e}");
    }

    #[test]
    fn a_bad_hash_is_refused_without_quoting_it() {
        let e = err("basic_auth_users:\n  alice: secretsecret\n");
        assert!(
            e.contains("basic_auth_users.alice") && !e.contains("secretsecret"),
            "{e}"
        );
    }

    #[test]
    fn only_exporter_toolkit_headers_are_settable() {
        let e = err("http_server_config:\n  headers:\n    Server: x\n");
        assert!(e.contains("http_server_config.headers.Server"), "{e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.contains("deny"), "{e}");
        let c =
            parse("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n")
                .unwrap();
        assert_eq!(c.headers.len(), 1);
    }

    #[test]
    fn shipped_example_has_known_keys_and_the_hash_it_claims() {
        let text = include_str!("../examples/web-config.yml");
        let file: File = serde_yaml_ng::from_str(text).unwrap();
        let users = file.basic_auth_users.unwrap();
        assert!(bcrypt::verify("test", &users["prometheus"]).unwrap());
        // the TLS part fails only on the files it names, not on a key
        let e = err(text);
        assert!(
            e.contains("tls_server_config.cert_file: reading /nonexistent/rme.crt"),
            "{e}"
        );
    }

    #[test]
    fn cipher_suites_and_curves_take_go_names_and_refuse_others() {
        let mut p = ring::default_provider();
        select_cipher_suites(&mut p, &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()]).unwrap();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(tls12.len(), 1);
        assert!(p.cipher_suites.len() > 1, "TLS 1.3 suites stay");
        let mut p = ring::default_provider();
        let e = select_cipher_suites(&mut p, &["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).unwrap_err();
        assert!(
            format!("{e}").contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{e}"
        );
        select_curves(&mut p, &["X25519".into(), "CurveP256".into()]).unwrap();
        assert_eq!(p.kx_groups.len(), 2);
        assert!(select_curves(&mut p, &["CurveP521".into()]).is_err());
    }

    #[test]
    fn versions_cover_rustls_range_only() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(
            versions(Some("TLS13"), None).unwrap(),
            [&rustls::version::TLS13]
        );
        assert_eq!(
            versions(Some("TLS10"), Some("TLS12")).unwrap(),
            [&rustls::version::TLS12]
        );
        assert!(versions(None, Some("TLS11")).is_err());
        assert!(versions(Some("TLS14"), None).is_err());
    }

    #[test]
    fn basic_auth_is_checked_and_cached() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let b = |s: &str| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let check = |h: Option<&str>| rt.block_on(c.authorized(h.map(str::as_bytes)));
        assert!(check(Some(&b("alice:pw"))));
        assert!(check(Some(&b("alice:pw"))), "cached answer");
        assert!(!check(Some(&b("alice:wrong"))));
        assert!(!check(Some(&b("bob:pw"))));
        assert!(!check(None));
        assert!(!check(Some("Bearer x")));
        assert_eq!(c.cache.lock().unwrap().len(), 3);
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains(&hash), "{shown}");
    }
}
