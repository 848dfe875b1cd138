//! `replace` and `lowercase` label rules, and the `match` selectors that limit a
//! rule to some series, in Prometheus relabelling terms.
//!
//! - **replace**: the regex must match the *whole* value (it is compiled as
//!   `^(?:regex)$`, like Prometheus); the value becomes the replacement with
//!   `$1`, `${1}`, `$name`, `${name}` expanded from the groups (`$$` is a
//!   literal `$`; as in Prometheus, `$1x` names the group `1x`, so write
//!   `${1}x`). No match: the value is kept. An empty result removes the label
//!   (Prometheus drops empty labels on ingest anyway).
//! - **lowercase**: the value, lower-cased (Unicode).
//! - **selector**: every listed label must have the listed value; a label the
//!   series lacks counts as the empty value, as in Prometheus.
//!
//! Everything here is pure: values in, values out.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Prometheus' default replacement: the first group.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// A `replace` regex, compiled when the config is read so a bad one is a config
/// error; anchored at both ends. Compares, prints and serializes as written.
#[derive(Clone)]
pub struct WholeRegex {
    text: String,
    regex: Regex,
}

impl WholeRegex {
    pub fn new(text: &str) -> Result<WholeRegex, regex::Error> {
        Ok(WholeRegex {
            text: text.to_string(),
            regex: Regex::new(&format!("^(?:{text})$"))?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value rewritten; `None` when the result is empty, i.e. the label goes.
    pub fn replace(&self, value: &str, replacement: &str) -> Option<String> {
        let Some(caps) = self.regex.captures(value) else {
            return Some(value.to_string());
        };
        let mut out = String::new();
        caps.expand(replacement, &mut out);
        (!out.is_empty()).then_some(out)
    }
}

/// Prometheus' default regex: the whole value as group 1.
impl Default for WholeRegex {
    fn default() -> Self {
        WholeRegex::new("(.*)").expect("static regex")
    }
}

impl std::fmt::Debug for WholeRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.text.fmt(f)
    }
}

impl PartialEq for WholeRegex {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for WholeRegex {}

impl Serialize for WholeRegex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for WholeRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        WholeRegex::new(&text).map_err(|e| serde::de::Error::custom(format!("regex {text:?}: {e}")))
    }
}

/// The value lower-cased (Unicode, like Prometheus' `lowercase`).
pub fn lowercase(value: &str) -> Option<String> {
    Some(value.to_lowercase())
}

/// Rewrites `label` in a series' labels with `f` (no-op when absent); `None` removes it.
pub fn rewrite(
    labels: &mut Vec<(String, String)>,
    label: &str,
    f: impl FnOnce(&str) -> Option<String>,
) {
    let Some(i) = labels.iter().position(|(k, _)| k == label) else {
        return;
    };
    match f(&labels[i].1) {
        Some(v) => labels[i].1 = v,
        None => {
            labels.remove(i);
        }
    }
}

/// `match = { stream = "ssh", filter = "failedlogin" }`: the labels a series must have for a rule to apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Selector {
        Selector(pairs.into_iter().collect())
    }

    /// Whether every listed label has its value (absent = empty) in `labels`.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        self.0.iter().all(|(k, want)| {
            let have = labels.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v);
            have == want
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(regex: &str, replacement: &str, value: &str) -> Option<String> {
        WholeRegex::new(regex).unwrap().replace(value, replacement)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replace_keeps_the_domain_of_an_email() {
        let r = |v| replace("(?:.*@)?(.*)", "$1", v);
        assert_eq!(r("alice@example.org").as_deref(), Some("example.org"));
        assert_eq!(r("a@b@example.org").as_deref(), Some("example.org"));
        assert_eq!(r("no-at-sign").as_deref(), Some("no-at-sign"));
    }

    #[test]
    fn regex_must_match_the_whole_value_or_nothing_changes() {
        // unanchored, `b` would be found inside `abc`; anchored it does not match
        assert_eq!(replace("b", "X", "abc").as_deref(), Some("abc"));
        assert_eq!(replace("a.c", "X", "abc").as_deref(), Some("X"));
        // an alternation is anchored as a whole: ^(?:a|bc)$
        assert_eq!(replace("a|bc", "X", "abc").as_deref(), Some("abc"));
    }

    #[test]
    fn groups_expand_by_number_and_name_and_dollar_is_escaped() {
        let v = "203.0.113.9";
        assert_eq!(
            replace(r"(\d+)\.(\d+)\..*", "${2}-$1", v).as_deref(),
            Some("0-203")
        );
        assert_eq!(
            replace(r"(?P<first>\d+)\..*", "net${first}", v).as_deref(),
            Some("net203")
        );
        assert_eq!(
            replace(r"(?P<first>\d+)\..*", "$first", v).as_deref(),
            Some("203")
        );
        assert_eq!(replace("(.*)", "$$1", v).as_deref(), Some("$1"));
        // `$1x` is the (absent) group `1x`, as in Prometheus
        assert_eq!(replace(r"(\d+)\..*", "$1x", v), None);
    }

    #[test]
    fn an_empty_result_removes_the_label() {
        assert_eq!(replace(".*", "", "anything"), None);
        let mut l = labels(&[("email", "x@"), ("stream", "mail")]);
        let r = WholeRegex::new("(?:.*@)?(.*)").unwrap();
        rewrite(&mut l, "email", |v| r.replace(v, "$1"));
        assert_eq!(l, labels(&[("stream", "mail")]));
    }

    #[test]
    fn prometheus_defaults_keep_the_value() {
        let r = WholeRegex::default();
        assert_eq!(r.replace("v", DEFAULT_REPLACEMENT).as_deref(), Some("v"));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(WholeRegex::new("(").is_err());
        let err = serde_json::from_str::<WholeRegex>("\"(\"").unwrap_err();
        assert!(err.to_string().contains("regex \"(\""), "{err}");
    }

    #[test]
    fn lowercase_is_unicode() {
        assert_eq!(
            lowercase("Mail.Example.ORG").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(lowercase("ÉTÉ").as_deref(), Some("été"));
    }

    #[test]
    fn rewrite_of_an_absent_label_changes_nothing() {
        let mut l = labels(&[("stream", "ssh")]);
        rewrite(&mut l, "user", lowercase);
        assert_eq!(l, labels(&[("stream", "ssh")]));
    }

    #[test]
    fn selector_needs_every_listed_label() {
        let s = Selector::new([
            ("stream".to_string(), "ssh".to_string()),
            ("filter".to_string(), "failedlogin".to_string()),
        ]);
        assert!(s.matches(&labels(&[
            ("filter", "failedlogin"),
            ("ip", "1"),
            ("stream", "ssh")
        ])));
        assert!(!s.matches(&labels(&[("filter", "other"), ("stream", "ssh")])));
        assert!(!s.matches(&labels(&[("stream", "ssh")])));
        assert!(Selector::default().matches(&labels(&[])));
        // absent = empty value
        let empty = Selector::new([("user".to_string(), String::new())]);
        assert!(empty.matches(&labels(&[("stream", "ssh")])));
    }
}
