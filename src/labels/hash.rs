//! `action = "hash"`: replaces a label's value by a keyed hash, so a fleet that
//! shares the key can count distinct attackers and correlate them across hosts
//! without shipping IP addresses (personal data under the GDPR).
//!
//! HMAC-SHA256 of the value under a key read from `key_file`, as lower-case
//! hex, cut to `length` characters. Without the key the hash cannot be
//! reversed by trying all 2³² IPv4 addresses. The key is never logged.

use std::path::PathBuf;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::invalid::Invalid;

/// Bytes a key needs at least (e.g. `head -c 32 /dev/urandom > key`).
pub const MIN_KEY_BYTES: usize = 16;

/// The keys of a `hash` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashConfig {
    /// File holding the secret key (at least 16 bytes; one trailing newline is
    /// ignored). Give every host of a fleet the same key to correlate.
    pub key_file: PathBuf,
    /// Hex characters kept, 4 to 64. Default 12 (48 bits).
    #[serde(default = "default_length")]
    pub length: usize,
}

const fn default_length() -> usize {
    12
}

impl HashConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        fix(&mut self.key_file);
    }

    /// Reads the key; errors name `key.key_file` or `key.length`.
    pub fn open(&self, key: &str) -> Result<Keyed, Invalid> {
        if !(4..=64).contains(&self.length) {
            return Err(Invalid::new(
                format!("{key}.length"),
                "must be between 4 and 64",
            ));
        }
        let bad = |reason: String| Invalid::new(format!("{key}.key_file"), reason);
        let file = self.key_file.display();
        let mut secret = std::fs::read(&self.key_file).map_err(|e| bad(format!("{file}: {e}")))?;
        if secret.ends_with(b"\n") {
            secret.pop();
        }
        if secret.len() < MIN_KEY_BYTES {
            return Err(bad(format!(
                "{file}: a key needs at least {MIN_KEY_BYTES} bytes, this one has {}",
                secret.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&secret).map_err(|e| bad(e.to_string()))?;
        secret.fill(0);
        Ok(Keyed {
            mac,
            length: self.length,
        })
    }
}

/// A keyed hasher: what a compiled `hash` rule applies.
#[derive(Clone)]
pub struct Keyed {
    mac: Hmac<Sha256>,
    length: usize,
}

/// Shows no key material.
impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Keyed {
    /// The first `length` hex characters of HMAC-SHA256(key, value).
    pub fn apply(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(64);
        for b in digest {
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 15) as usize]));
        }
        out.truncate(self.length);
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &[u8], length: usize) -> Result<Keyed, Invalid> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, key).expect("write");
        HashConfig {
            key_file: path,
            length,
        }
        .open("store.labels[2]")
    }

    /// Shape and key use here; the value itself is checked against openssl below.
    #[test]
    fn hmac_sha256_hex_cut_to_length() {
        let h = keyed(b"0123456789abcdef\n", 64).expect("key");
        let full = h.apply("203.0.113.9");
        assert_eq!(full.len(), 64);
        assert!(full.bytes().all(|b| b.is_ascii_hexdigit()));
        let short = keyed(b"0123456789abcdef", 12).expect("key");
        assert_eq!(
            short.apply("203.0.113.9"),
            full[..12],
            "trailing newline ignored"
        );
        assert_ne!(short.apply("203.0.113.9"), short.apply("203.0.113.10"));
        let other = keyed(b"fedcba9876543210", 12).expect("key");
        assert_ne!(other.apply("203.0.113.9"), short.apply("203.0.113.9"));
    }

    #[test]
    fn matches_openssl_when_installed() {
        let Ok(out) = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf %s 203.0.113.9 | openssl dgst -sha256 -hmac 0123456789abcdef")
            .output()
        else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(hex) = text.split_whitespace().last().filter(|h| h.len() == 64) else {
            eprintln!("openssl not usable; skipped");
            return;
        };
        let h = keyed(b"0123456789abcdef", 64).expect("key");
        assert_eq!(h.apply("203.0.113.9"), hex);
    }

    #[test]
    fn bad_keys_name_the_key_and_never_show_it() {
        let e = keyed(b"short\n", 12).unwrap_err();
        assert_eq!(e.key, "store.labels[2].key_file");
        assert!(
            e.reason.contains("at least 16 bytes, this one has 5"),
            "{e}"
        );
        assert!(!e.to_string().contains("short"), "{e}");
        let e = HashConfig {
            key_file: "/nonexistent/hash.key".into(),
            length: 12,
        }
        .open("k")
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k.key_file: /nonexistent/hash.key"),
            "{e}"
        );
        assert_eq!(
            keyed(b"0123456789abcdef", 3).unwrap_err().key,
            "store.labels[2].length"
        );
        let h = keyed(b"0123456789abcdefSECRET", 12).expect("key");
        assert!(!format!("{h:?}").contains("SECRET"));
    }
}
