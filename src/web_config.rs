//! The exporter-toolkit web configuration (`[serve] web_config`): the YAML file
//! every Prometheus exporter reads with `--web.config.file`, so one file serves
//! rme and the exporters beside it. `tls_server_config` becomes a rustls
//! server config, `basic_auth_users` a bcrypt check with a cache of recent
//! successes (so bcrypt does not run per scrape; failures are not remembered,
//! so they cannot push a success out), and `http_server_config.headers` extra
//! response headers. bcrypt runs one check at a time, and at most
//! [`BCRYPT_QUEUE`] checks (one per peer address) wait for it: more are
//! answered [`Auth::Busy`] unchecked, so a flood of guesses costs a scraper
//! whose success is remembered nothing, and bounds how long any check waits.
//!
//! Everything is read and checked by [`WebConfig::load`] at config load, so
//! `rme check-config` refuses a broken file and SIGHUP keeps the running one.
//! Errors name the file and the key; they never quote a hash, a password or
//! key material, and `Debug` prints user names only.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
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

/// How many successful (user, password) checks are remembered (exporter-toolkit
/// keeps 100 answers of either kind; only a right password makes one here).
const AUTH_CACHE_SIZE: usize = 100;

/// Password checks waiting for or running bcrypt at once; more are answered
/// [`Auth::Busy`] without a check.
pub const BCRYPT_QUEUE: usize = 4;
/// Of those, at most this many from one peer address.
pub const BCRYPT_PER_PEER: usize = 1;

/// bcrypt runs against this when the user is unknown, so the answer takes as
/// long as for a known user: exporter-toolkit's dummy hash, with its cost (10)
/// replaced by a configured user's (see [`WebConfig::dummy_hash`]).
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// The answer to a request's basic auth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Granted,
    Denied,
    /// Not checked: [`BCRYPT_QUEUE`] checks (or this peer's share) already wait.
    Busy,
}

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
    /// SHA-256(user, hash, password) of recent successes, least recently
    /// used first; no password is kept in memory.
    successes: Mutex<VecDeque<[u8; 32]>>,
    /// Peer addresses of the checks waiting for or running bcrypt.
    queued: Mutex<Vec<IpAddr>>,
    /// One bcrypt at a time (it is slow on purpose), off the async threads.
    bcrypt_gate: tokio::sync::Semaphore,
    /// The configured hashes' costs, one per user: an unknown user is checked
    /// against a dummy hash of one of them.
    costs: Vec<u32>,
    /// Picks that cost from the name (random per load, so names cannot be chosen to hit one).
    dummy_key: [u8; 32],
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
        let mut costs = Vec::new();
        for (user, hash) in &users {
            if user.contains(':') {
                bail!("basic_auth_users.{user}: a user name cannot contain ':'");
            }
            let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
                bail!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                );
            };
            costs.push(parts.get_cost());
        }
        let mut dummy_key = [0u8; 32];
        ::ring::rand::SecureRandom::fill(&::ring::rand::SystemRandom::new(), &mut dummy_key)
            .map_err(|_| anyhow!("no randomness from the system"))?;
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
            successes: Mutex::new(VecDeque::new()),
            queued: Mutex::new(Vec::new()),
            bcrypt_gate: tokio::sync::Semaphore::new(1),
            costs,
            dummy_key,
        })
    }

    /// Whether requests must carry basic auth.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header from `peer` against `basic_auth_users`
    /// (granted when none are set).
    pub async fn check(&self, header: Option<&[u8]>, peer: IpAddr) -> Auth {
        if self.users.is_empty() {
            return Auth::Granted;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return Auth::Denied;
        };
        let known = self.users.get(&user);
        let hash = match known {
            Some(h) => h.clone(),
            None => self.dummy_hash(&user),
        };
        let key = cache_key(&user, &hash, &password);
        if known.is_some() && self.remembered(&key) {
            return Auth::Granted;
        }
        let Some(_ticket) = self.enqueue(peer) else {
            return Auth::Busy;
        };
        let Ok(_gate) = self.bcrypt_gate.acquire().await else {
            return Auth::Denied;
        };
        if known.is_some() && self.remembered(&key) {
            return Auth::Granted;
        }
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !(ok && known.is_some()) {
            return Auth::Denied;
        }
        let mut cache = self.successes.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= AUTH_CACHE_SIZE {
            cache.pop_front();
        }
        cache.push_back(key);
        Auth::Granted
    }

    /// Whether this success is remembered (then it becomes the most recent).
    fn remembered(&self, key: &[u8; 32]) -> bool {
        let mut cache = self.successes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = cache.iter().position(|k| k == key) else {
            return false;
        };
        if let Some(k) = cache.remove(i) {
            cache.push_back(k);
        }
        true
    }

    /// A place among the checks waiting for bcrypt, if there is one for `peer`.
    fn enqueue(&self, peer: IpAddr) -> Option<Queued<'_>> {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= BCRYPT_QUEUE || q.iter().filter(|p| **p == peer).count() >= BCRYPT_PER_PEER {
            return None;
        }
        q.push(peer);
        Some(Queued { config: self, peer })
    }

    /// The hash an unknown `user` is checked against: exporter-toolkit's dummy
    /// with the cost of one configured user, the same one for the same name
    /// (a keyed hash of the name picks it), so an unknown name takes as long
    /// as a known one whatever costs the file's hashes have.
    fn dummy_hash(&self, user: &str) -> String {
        let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
        ctx.update(&self.dummy_key);
        ctx.update(user.as_bytes());
        let d = ctx.finish();
        let mut n = [0u8; 8];
        n.copy_from_slice(&d.as_ref()[..8]);
        let pick = u64::from_le_bytes(n) % self.costs.len().max(1) as u64;
        let cost = usize::try_from(pick)
            .ok()
            .and_then(|i| self.costs.get(i))
            .copied()
            .unwrap_or(10);
        format!("$2y${cost:02}{}", &DUMMY_HASH[6..])
    }
}

/// A check's place in the bcrypt queue, given back when dropped.
struct Queued<'a> {
    config: &'a WebConfig,
    peer: IpAddr,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let mut q = self.config.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = q.iter().position(|p| *p == self.peer) {
            q.swap_remove(i);
        }
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
    use std::time::Duration;

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

    fn b(s: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn peer(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn basic_auth_is_checked_and_successes_cached() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let check = |h: Option<&str>| rt.block_on(c.check(h.map(str::as_bytes), PEER));
        assert_eq!(check(Some(&b("alice:pw"))), Auth::Granted);
        assert_eq!(check(Some(&b("alice:pw"))), Auth::Granted, "cached answer");
        assert_eq!(check(Some(&b("alice:wrong"))), Auth::Denied);
        assert_eq!(check(Some(&b("bob:pw"))), Auth::Denied);
        assert_eq!(check(None), Auth::Denied);
        assert_eq!(check(Some("Bearer x")), Auth::Denied);
        assert_eq!(
            c.successes.lock().unwrap().len(),
            1,
            "failures are not kept"
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains(&hash), "{shown}");
    }

    /// Security review 3, F5: failures were cached with the successes (100
    /// entries, an arbitrary one evicted), so guesses pushed the scraper's
    /// success out and it waited for bcrypt behind them.
    #[test]
    fn failed_guesses_never_push_a_remembered_success_out() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(
            rt.block_on(c.check(Some(b("alice:pw").as_bytes()), PEER)),
            Auth::Granted
        );
        for i in 0..2 * AUTH_CACHE_SIZE {
            let guess = b(&format!("alice:guess{i}"));
            assert_eq!(
                rt.block_on(c.check(Some(guess.as_bytes()), PEER)),
                Auth::Denied
            );
        }
        // bcrypt is taken (a long check running): the remembered success needs none
        let _held = rt.block_on(c.bcrypt_gate.acquire()).unwrap();
        let right = b("alice:pw");
        let answer = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                c.check(Some(right.as_bytes()), PEER),
            )
            .await
        });
        assert_eq!(answer, Ok(Auth::Granted));
    }

    /// F5: every check waited for bcrypt, one at a time, however many queued.
    /// Now at most BCRYPT_QUEUE wait, one per peer address; the rest are
    /// answered Busy at once.
    #[test]
    fn at_most_a_few_checks_wait_for_bcrypt_one_per_peer() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = Arc::new(parse(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let held = c.bcrypt_gate.acquire().await.unwrap();
            let wrong = b("alice:wrong");
            let mut waiting = Vec::new();
            for n in 0..BCRYPT_QUEUE as u8 {
                let (c, wrong) = (c.clone(), wrong.clone());
                waiting.push(tokio::spawn(async move {
                    c.check(Some(wrong.as_bytes()), peer(n)).await
                }));
            }
            while c.queued.lock().unwrap().len() < BCRYPT_QUEUE {
                tokio::task::yield_now().await;
            }
            // the queue is full: a new peer is refused at once
            let soon = Duration::from_secs(5);
            let other = tokio::time::timeout(soon, c.check(Some(wrong.as_bytes()), peer(200)));
            assert_eq!(other.await, Ok(Auth::Busy));
            drop(held);
            for w in waiting {
                assert_eq!(w.await.unwrap(), Auth::Denied);
            }
            assert!(c.queued.lock().unwrap().is_empty());
            let held = c.bcrypt_gate.acquire().await.unwrap();
            let first = {
                let (c, wrong) = (c.clone(), wrong.clone());
                tokio::spawn(async move { c.check(Some(wrong.as_bytes()), PEER).await })
            };
            while c.queued.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
            let same = tokio::time::timeout(soon, c.check(Some(wrong.as_bytes()), PEER));
            assert_eq!(same.await, Ok(Auth::Busy), "one waiting check per peer");
            drop(held);
            assert_eq!(first.await.unwrap(), Auth::Denied);
        });
    }

    /// Security review 3, F6: the dummy hash for unknown users had cost 10
    /// whatever the users' hashes had, so with cost-12 users a known name took
    /// 328 ms and an unknown one 86 ms. Now an unknown name is checked at a
    /// configured user's cost. Timing compared coarsely (medians, a 4x band):
    /// before, cost 4 users against the cost-10 dummy differed 64x in work.
    #[test]
    fn an_unknown_user_costs_what_a_known_one_does() {
        let c = parse(&format!(
            "basic_auth_users:\n  alice: '{}'\n",
            bcrypt::hash("pw", 4).unwrap()
        ))
        .unwrap();
        for name in ["nobody", "admin", "root", "x"] {
            let cost = c
                .dummy_hash(name)
                .parse::<bcrypt::HashParts>()
                .unwrap()
                .get_cost();
            assert_eq!(cost, 4, "{name}");
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        let median = |user: &str| {
            let mut t: Vec<_> = (0..5)
                .map(|i| {
                    let h = b(&format!("{user}:wrong{i}"));
                    let start = std::time::Instant::now();
                    assert_eq!(rt.block_on(c.check(Some(h.as_bytes()), PEER)), Auth::Denied);
                    start.elapsed()
                })
                .collect();
            t.sort();
            t[2]
        };
        let (known, unknown) = (median("alice"), median("nobody"));
        assert!(
            unknown < known * 4 + Duration::from_millis(5),
            "known {known:?}, unknown {unknown:?}"
        );
        // several costs: each unknown name gets one of them, always the same one
        let c = parse(&format!(
            "basic_auth_users:\n  a: '{}'\n  b: '{}'\n",
            bcrypt::hash("pw", 4).unwrap(),
            bcrypt::hash("pw", 5).unwrap()
        ))
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..64 {
            let name = format!("user{i}");
            let h = c.dummy_hash(&name);
            assert_eq!(h, c.dummy_hash(&name));
            seen.insert(h.parse::<bcrypt::HashParts>().unwrap().get_cost());
        }
        assert_eq!(seen, [4, 5].into());
    }
}
