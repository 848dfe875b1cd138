//! One host, one name: the `host` label and the top-level `[labels]` that
//! every push sink carries, so copies of one config on many hosts push
//! distinct series.
//!
//! The host name is `uname(2)`'s nodename (what `uname -n` and `hostname`
//! print), asked of the kernel by a system call: `/proc/sys/kernel/hostname`
//! is hidden by the shipped units' `ProcSubset=pid`.
//!
//! Where the labels go: a remote-write sink's `external_labels`, an OTLP
//! sink's `resource_attributes` (`host` as `host.name`), a statsd sink's
//! `external_labels` (tags; with `tag_style = "path"` the host is a path
//! segment after the prefix). A sink's own entry wins. `stdout` and the pull
//! `/metrics` get none: a scraper adds `instance` (and its own labels) to what
//! it scrapes, as for every Prometheus exporter.

use std::collections::BTreeMap;

use crate::invalid::Invalid;

/// This host's name as the kernel knows it (`uname -n`); `None` if empty or not UTF-8.
pub fn nodename() -> Option<String> {
    // SAFETY: utsname is plain bytes, zeroed is a valid value; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok().filter(|n| !n.is_empty())
}

/// Whether `s` is a Prometheus label name that is not reserved (`__…`).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// The labels every push sink adds: `[labels]` plus `host` (the nodename
/// unless `host` is set; `host = ""` adds none). Errors name the key.
pub fn global_labels(
    host: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Invalid> {
    for (name, value) in labels {
        let key = format!("labels.{name}");
        if name == "host" {
            return Err(Invalid::new(
                key,
                "the host label is set by the top-level `host` key (default: this host's name; `host = \"\"` for none)",
            ));
        }
        if !is_label_name(name) {
            return Err(Invalid::new(
                key,
                "a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __",
            ));
        }
        if value.is_empty() {
            return Err(Invalid::new(
                key,
                "the value must not be empty; remove the entry to add no label",
            ));
        }
    }
    let mut all = labels.clone();
    let host = match host {
        Some(h) => Some(h.to_string()),
        None => nodename(),
    };
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        all.insert("host".to_string(), h);
    }
    Ok(all)
}

/// Adds `global` to `own` where `own` has no entry of that name (a sink's own wins).
pub fn merge_into(own: &mut BTreeMap<String, String>, global: &BTreeMap<String, String>) {
    for (k, v) in global {
        own.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodename_is_the_kernels() {
        let out = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap();
        let want = String::from_utf8(out.stdout).unwrap();
        assert_eq!(nodename().as_deref(), Some(want.trim()));
    }

    #[test]
    fn host_defaults_to_the_nodename_is_overridable_and_removable() {
        let none = BTreeMap::new();
        let l = global_labels(None, &none).unwrap();
        assert_eq!(l.get("host"), nodename().as_ref());
        let l = global_labels(Some("web1"), &none).unwrap();
        assert_eq!(l.get("host").map(String::as_str), Some("web1"));
        assert!(global_labels(Some(""), &none).unwrap().is_empty());
    }

    #[test]
    fn bad_labels_name_their_key() {
        let bad = |k: &str, v: &str| {
            let labels = BTreeMap::from([(k.to_string(), v.to_string())]);
            global_labels(None, &labels).unwrap_err().to_string()
        };
        assert!(
            bad("host", "x").starts_with("labels.host: "),
            "{}",
            bad("host", "x")
        );
        assert!(bad("__x", "1").starts_with("labels.__x: "));
        assert!(bad("a-b", "1").starts_with("labels.a-b: "));
        assert!(bad("dc", "").contains("labels.dc: the value must not be empty"));
    }
}
