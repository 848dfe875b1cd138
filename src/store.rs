//! The one metric store between sources and sinks.
//!
//! Sources add to counters and set gauges; sinks and `/metrics` only ever see a
//! [`Snapshot`]. Three guards keep cardinality the user's choice: label rules
//! (drop a label, keep an IP's prefix), a per-metric series cap that folds new
//! series into one overflow series, and expiry of idle series.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::labels::relabel::{self, Selector, WholeRegex};

/// A series: metric name plus labels kept sorted by name, as remote-write requires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Series {
    /// Builds a series; labels are sorted here so callers may pass them in any order.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Series {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        Series {
            name: name.to_string(),
            labels,
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `name{k="v",…}`, for tests and logs (the exposition format escapes differently: text.rs).
impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            write!(f, "{}{k}={v:?}", if i > 0 { "," } else { "" })?;
        }
        f.write_str("}")
    }
}

/// Counter or gauge: all rme exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Counter,
    Gauge,
}

/// What a metric is, for `# HELP`/`# TYPE`, remote-write metadata and OTLP descriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub help: &'static str,
}

/// A sample value as a sink sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Counter(v) => v as f64,
            Value::Gauge(v) => v,
        }
    }
}

/// One series at the snapshot's time.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub series: Series,
    pub value: Value,
    /// When this counter started counting from zero (unix ms); OTLP's start time.
    pub start_ms: i64,
}

/// A copy of the store at one instant; what every encoder takes.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Unix ms of the snapshot; every point is stamped with it.
    pub at_ms: i64,
    /// Sorted by series (name first), so each metric's points are contiguous.
    pub points: Vec<Point>,
    pub meta: BTreeMap<String, Meta>,
}

/// What to do with one label before a series is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", deny_unknown_fields)]
pub enum LabelAction {
    /// Remove the label; series that differed only by it add up.
    Drop,
    /// Keep only the network part of an IP address (e.g. 192.0.2.0/24); non-IPs are kept as they are.
    Prefix {
        #[serde(default = "default_ipv4_prefix")]
        ipv4: u8,
        #[serde(default = "default_ipv6_prefix")]
        ipv6: u8,
    },
    /// Prometheus `replace`: `regex` (default `(.*)`) must match the whole value, which
    /// becomes `replacement` (default `$1`) with `$1`/`${name}` groups; no match keeps
    /// the value, an empty result removes the label (see labels/relabel.rs).
    Replace {
        #[serde(default)]
        regex: WholeRegex,
        #[serde(default = "default_replacement")]
        replacement: String,
    },
    /// The value lower-cased.
    Lowercase,
}

fn default_replacement() -> String {
    relabel::DEFAULT_REPLACEMENT.to_string()
}

const fn default_ipv4_prefix() -> u8 {
    24
}
const fn default_ipv6_prefix() -> u8 {
    64
}

/// A label rewrite, applied to every metric (or to one, when `metric` is set).
///
/// Unknown keys are rejected by [`LabelAction`], which gets every key this struct
/// does not take (serde's `deny_unknown_fields` does not work beside `flatten`:
/// it rejected every rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRule {
    /// Label name the rule applies to, e.g. `ip`.
    pub label: String,
    /// Only this metric; all metrics when absent.
    #[serde(default)]
    pub metric: Option<String>,
    /// Only series whose labels have these values, e.g. `match = { stream = "ssh" }`
    /// (an absent label counts as ""). Rules see the labels earlier rules left.
    #[serde(default, rename = "match", skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    #[serde(flatten)]
    pub action: LabelAction,
}

/// Limits that keep the store bounded.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_series_per_metric: usize,
    /// Series not updated for this long are forgotten (0 = never).
    pub idle_expiry_ms: i64,
    pub rules: Vec<LabelRule>,
    /// Metrics not kept at all: their updates are ignored.
    pub drop_metrics: BTreeSet<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_metric: 10_000,
            idle_expiry_ms: 0,
            rules: Vec::new(),
            drop_metrics: BTreeSet::new(),
        }
    }
}

/// Label put on the series that absorbs what the cap refused.
pub const OVERFLOW_LABEL: &str = "rme_overflow";
pub const FOLDED_METRIC: &str = "rme_series_folded_total";
pub const SERIES_METRIC: &str = "rme_series";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    kind: Kind,
    counter: u64,
    gauge: f64,
    start_ms: i64,
    updated_ms: i64,
}

/// A counter as kept in the state file, so restarts and cron runs continue it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedCounter {
    pub series: Series,
    pub value: u64,
    pub start_ms: i64,
}

/// Everything sources have counted so far.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<Series, Entry>,
    meta: BTreeMap<String, Meta>,
    series_per_metric: HashMap<String, usize>,
    limits: Limits,
    /// The clock sources' updates are stamped with; set by the caller before a batch.
    now_ms: i64,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        let mut store = Store {
            limits,
            now_ms: now_ms(),
            ..Store::default()
        };
        store.describe(
            FOLDED_METRIC,
            Kind::Counter,
            "Updates folded into an overflow series because a metric hit max_series_per_metric.",
        );
        store.describe(SERIES_METRIC, Kind::Gauge, "Series held in the store.");
        store
    }

    /// Registers a metric's type and help text; sources call this once at start.
    pub fn describe(&mut self, name: &str, kind: Kind, help: &'static str) {
        if self.limits.drop_metrics.contains(name) {
            return;
        }
        self.meta.insert(name.to_string(), Meta { kind, help });
    }

    /// Sets the time stamped on the following updates (ms since the epoch).
    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Adds `by` to a counter.
    pub fn inc(&mut self, series: Series, by: u64) {
        if let Some(e) = self.entry(series, Kind::Counter) {
            e.counter = e.counter.saturating_add(by);
        }
    }

    /// Sets a gauge.
    pub fn set(&mut self, series: Series, value: f64) {
        if let Some(e) = self.entry(series, Kind::Gauge) {
            e.gauge = value;
        }
    }

    /// Sets a counter read from elsewhere (e.g. the kernel's `lost`); a smaller
    /// value than before is a reset, so the start time moves to now.
    pub fn set_counter(&mut self, series: Series, value: u64) {
        let now = self.now_ms;
        if let Some(e) = self.entry(series, Kind::Counter) {
            if value < e.counter {
                e.start_ms = now;
            }
            e.counter = value;
        }
    }

    /// The current value of a counter or gauge, after label rules.
    pub fn get(&self, series: &Series) -> Option<Value> {
        let series = self.rewrite(series.clone());
        self.entries.get(&series).map(|e| match e.kind {
            Kind::Counter => Value::Counter(e.counter),
            Kind::Gauge => Value::Gauge(e.gauge),
        })
    }

    /// Sum of a counter over all its series whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.entries
            .iter()
            .filter(|(s, e)| {
                s.name == name
                    && e.kind == Kind::Counter
                    && filter.iter().all(|(k, v)| s.label(k) == Some(v))
            })
            .map(|(_, e)| e.counter)
            .sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets series idle for longer than the configured expiry.
    pub fn expire(&mut self, now_ms: i64) {
        let ttl = self.limits.idle_expiry_ms;
        if ttl <= 0 {
            return;
        }
        let counts = &mut self.series_per_metric;
        self.entries.retain(|s, e| {
            let keep = now_ms - e.updated_ms <= ttl;
            if !keep && let Some(n) = counts.get_mut(&s.name) {
                *n -= 1;
            }
            keep
        });
    }

    /// Copies the store out, stamped `at_ms`, expiring idle series first.
    pub fn snapshot(&mut self, at_ms: i64) -> Snapshot {
        self.expire(at_ms);
        let n = self.entries.len() as f64;
        self.set_now(at_ms);
        self.set(Series::new(SERIES_METRIC, &[]), n);
        let points = self
            .entries
            .iter()
            .map(|(s, e)| Point {
                series: s.clone(),
                value: match e.kind {
                    Kind::Counter => Value::Counter(e.counter),
                    Kind::Gauge => Value::Gauge(e.gauge),
                },
                start_ms: e.start_ms,
            })
            .collect();
        Snapshot {
            at_ms,
            points,
            meta: self.meta.clone(),
        }
    }

    /// Counters to keep in the state file.
    pub fn saved_counters(&self) -> Vec<SavedCounter> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == Kind::Counter)
            .map(|(s, e)| SavedCounter {
                series: s.clone(),
                value: e.counter,
                start_ms: e.start_ms,
            })
            .collect()
    }

    /// Restores counters from the state file (before any source runs).
    pub fn restore_counters(&mut self, saved: Vec<SavedCounter>) {
        for c in saved {
            let start = c.start_ms;
            if let Some(e) = self.entry(c.series, Kind::Counter) {
                e.counter = c.value;
                e.start_ms = start;
            }
        }
    }

    /// Applies the label rules to a series.
    fn rewrite(&self, mut series: Series) -> Series {
        for rule in &self.limits.rules {
            if rule.metric.as_ref().is_some_and(|m| *m != series.name)
                || !rule.selector.matches(&series.labels)
            {
                continue;
            }
            match &rule.action {
                LabelAction::Drop => series.labels.retain(|(k, _)| *k != rule.label),
                LabelAction::Prefix { ipv4, ipv6 } => {
                    for (k, v) in series.labels.iter_mut() {
                        if *k == rule.label
                            && let Some(p) = ip_prefix(v, *ipv4, *ipv6)
                        {
                            *v = p;
                        }
                    }
                }
                LabelAction::Replace { regex, replacement } => {
                    relabel::rewrite(&mut series.labels, &rule.label, |v| {
                        regex.replace(v, replacement)
                    })
                }
                LabelAction::Lowercase => {
                    relabel::rewrite(&mut series.labels, &rule.label, relabel::lowercase)
                }
            }
        }
        series
    }

    /// Finds or creates the entry for a series, applying rules and the series cap.
    /// Returns `None` for a dropped metric, and when the series has another kind
    /// than asked (a source bug; logged once per call rather than panicking).
    fn entry(&mut self, series: Series, kind: Kind) -> Option<&mut Entry> {
        if self.limits.drop_metrics.contains(&series.name) {
            return None;
        }
        let mut series = self.rewrite(series);
        let now = self.now_ms;
        if !self.entries.contains_key(&series) {
            let count = self
                .series_per_metric
                .get(&series.name)
                .copied()
                .unwrap_or(0);
            let overflow = series.label(OVERFLOW_LABEL).is_some();
            if count >= self.limits.max_series_per_metric && !overflow {
                let folded = Series::new(FOLDED_METRIC, &[("metric", &series.name)]);
                let f = self
                    .entries
                    .entry(folded)
                    .or_insert_with(|| Entry::new(Kind::Counter, now));
                f.counter += 1;
                f.updated_ms = now;
                series = Series::new(&series.name, &[(OVERFLOW_LABEL, "true")]);
            }
            if !self.entries.contains_key(&series) {
                *self
                    .series_per_metric
                    .entry(series.name.clone())
                    .or_default() += 1;
            }
        }
        let e = self
            .entries
            .entry(series)
            .or_insert_with(|| Entry::new(kind, now));
        if e.kind != kind {
            tracing::error!(
                ?kind,
                "metric used both as counter and gauge; update ignored"
            );
            return None;
        }
        e.updated_ms = now;
        Some(e)
    }
}

impl Entry {
    fn new(kind: Kind, now: i64) -> Entry {
        Entry {
            kind,
            counter: 0,
            gauge: 0.0,
            start_ms: now,
            updated_ms: now,
        }
    }
}

/// `192.0.2.77` → `192.0.2.0/24`; `None` when the value is not an IP address.
pub fn ip_prefix(value: &str, v4_bits: u8, v6_bits: u8) -> Option<String> {
    match value.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let bits = v4_bits.min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            let net = std::net::Ipv4Addr::from(u32::from(a) & mask);
            Some(format!("{net}/{bits}"))
        }
        IpAddr::V6(a) => {
            let bits = v6_bits.min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            let net = std::net::Ipv6Addr::from(u128::from(a) & mask);
            Some(format!("{net}/{bits}"))
        }
    }
}

/// Wall-clock now in unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(rules: Vec<LabelRule>, cap: usize) -> Store {
        Store::new(Limits {
            max_series_per_metric: cap,
            idle_expiry_ms: 0,
            rules,
            ..Limits::default()
        })
    }

    #[test]
    fn labels_are_sorted_and_counters_add_up() {
        let mut s = store_with(vec![], 100);
        s.inc(Series::new("x_total", &[("b", "2"), ("a", "1")]), 2);
        s.inc(Series::new("x_total", &[("a", "1"), ("b", "2")]), 3);
        assert_eq!(
            s.get(&Series::new("x_total", &[("a", "1"), ("b", "2")])),
            Some(Value::Counter(5))
        );
        let snap = s.snapshot(1000);
        let p = snap
            .points
            .iter()
            .find(|p| p.series.name == "x_total")
            .unwrap();
        assert_eq!(p.series.labels[0].0, "a");
    }

    #[test]
    fn ip_prefix_rule_merges_addresses_of_one_network() {
        let rule = LabelRule {
            label: "ip".into(),
            metric: None,
            selector: Selector::default(),
            action: LabelAction::Prefix { ipv4: 24, ipv6: 64 },
        };
        let mut s = store_with(vec![rule], 100);
        s.inc(Series::new("m_total", &[("ip", "192.0.2.7")]), 1);
        s.inc(Series::new("m_total", &[("ip", "192.0.2.200")]), 1);
        s.inc(Series::new("m_total", &[("ip", "2001:db8:1:2:3::5")]), 1);
        s.inc(Series::new("m_total", &[("ip", "not-an-ip")]), 1);
        assert_eq!(s.sum("m_total", &[("ip", "192.0.2.0/24")]), 2);
        assert_eq!(s.sum("m_total", &[("ip", "2001:db8:1:2::/64")]), 1);
        assert_eq!(s.sum("m_total", &[("ip", "not-an-ip")]), 1);
    }

    #[test]
    fn drop_rule_only_touches_its_metric() {
        let rule = LabelRule {
            label: "ip".into(),
            metric: Some("a_total".into()),
            selector: Selector::default(),
            action: LabelAction::Drop,
        };
        let mut s = store_with(vec![rule], 100);
        s.inc(Series::new("a_total", &[("ip", "1.1.1.1")]), 1);
        s.inc(Series::new("a_total", &[("ip", "2.2.2.2")]), 1);
        s.inc(Series::new("b_total", &[("ip", "1.1.1.1")]), 1);
        assert_eq!(s.get(&Series::new("a_total", &[])), Some(Value::Counter(2)));
        assert_eq!(s.sum("b_total", &[("ip", "1.1.1.1")]), 1);
    }

    fn rules(toml_text: &str) -> Vec<LabelRule> {
        #[derive(Deserialize)]
        struct Rules {
            labels: Vec<LabelRule>,
        }
        toml::from_str::<Rules>(toml_text).unwrap().labels
    }

    #[test]
    fn replace_lowercase_and_selectors_apply_in_order() {
        let rules = rules(
            r#"
            [[labels]]
            label = "email"
            match = { stream = "mail" }
            action = "replace"
            regex = "(?:.*@)?(.*)"
            [[labels]]
            label = "email"
            action = "lowercase"
            [[labels]]
            label = "user"
            match = { stream = "ssh", filter = "failedlogin" }
            action = "replace"
            regex = "(.{0,3}).*"
            replacement = "${1}"
            "#,
        );
        let mut s = store_with(rules, 100);
        s.inc(
            Series::new("m_total", &[("stream", "mail"), ("email", "A@Example.ORG")]),
            1,
        );
        s.inc(
            Series::new("m_total", &[("stream", "mail"), ("email", "b@example.org")]),
            1,
        );
        // another stream: only the rule without `match` applies
        s.inc(
            Series::new("m_total", &[("stream", "web"), ("email", "C@X.ORG")]),
            1,
        );
        s.inc(
            Series::new(
                "m_total",
                &[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("user", "Administrator"),
                ],
            ),
            1,
        );
        s.inc(
            Series::new(
                "m_total",
                &[
                    ("stream", "ssh"),
                    ("filter", "other"),
                    ("user", "Administrator"),
                ],
            ),
            1,
        );
        assert_eq!(s.sum("m_total", &[("email", "example.org")]), 2);
        assert_eq!(s.sum("m_total", &[("email", "c@x.org")]), 1);
        assert_eq!(
            s.sum("m_total", &[("filter", "failedlogin"), ("user", "Adm")]),
            1
        );
        assert_eq!(
            s.sum("m_total", &[("filter", "other"), ("user", "Administrator")]),
            1
        );
    }

    #[test]
    fn replace_to_empty_removes_the_label() {
        let r = rules(
            "[[labels]]\nlabel = \"ip\"\naction = \"replace\"\nregex = \"10\\\\..*\"\nreplacement = \"\"\n",
        );
        let mut s = store_with(r, 100);
        s.inc(Series::new("m_total", &[("ip", "10.1.2.3")]), 1);
        s.inc(Series::new("m_total", &[("ip", "192.0.2.1")]), 1);
        assert_eq!(s.get(&Series::new("m_total", &[])), Some(Value::Counter(1)));
        assert_eq!(s.sum("m_total", &[("ip", "192.0.2.1")]), 1);
    }

    #[test]
    fn bad_regex_and_unknown_keys_are_config_errors() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Rules {
            labels: Vec<LabelRule>,
        }
        let err = toml::from_str::<Rules>(
            "[[labels]]\nlabel = \"ip\"\naction = \"replace\"\nregex = \"(\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("regex \"(\""), "{err}");
        let err = toml::from_str::<Rules>(
            "[[labels]]\nlabel = \"ip\"\naction = \"replace\"\nregexp = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("regexp"), "{err}");
    }

    #[test]
    fn dropped_metrics_are_not_kept_or_described() {
        let mut s = Store::new(Limits {
            drop_metrics: ["gone_total".to_string()].into(),
            ..Limits::default()
        });
        s.describe("gone_total", Kind::Counter, "x");
        s.inc(Series::new("gone_total", &[]), 1);
        s.inc(Series::new("kept_total", &[]), 1);
        let snap = s.snapshot(1);
        assert!(!snap.meta.contains_key("gone_total"));
        let names: Vec<_> = snap.points.iter().map(|p| p.series.name.as_str()).collect();
        assert!(
            names.contains(&"kept_total") && !names.contains(&"gone_total"),
            "{names:?}"
        );
    }

    #[test]
    fn cap_folds_new_series_into_overflow_and_counts_them() {
        let mut s = store_with(vec![], 2);
        for ip in ["a", "b", "c", "d", "c"] {
            s.inc(Series::new("m_total", &[("ip", ip)]), 1);
        }
        assert_eq!(s.sum("m_total", &[("ip", "a")]), 1);
        assert_eq!(s.sum("m_total", &[(OVERFLOW_LABEL, "true")]), 3);
        assert_eq!(s.sum(FOLDED_METRIC, &[("metric", "m_total")]), 3);
        // nothing lost: the total is still right
        assert_eq!(s.sum("m_total", &[]), 5);
    }

    #[test]
    fn idle_series_expire() {
        let mut s = Store::new(Limits {
            idle_expiry_ms: 1000,
            ..Limits::default()
        });
        s.set_now(0);
        s.inc(Series::new("old_total", &[]), 1);
        s.set_now(5000);
        s.inc(Series::new("new_total", &[]), 1);
        let snap = s.snapshot(5500);
        let names: Vec<_> = snap.points.iter().map(|p| p.series.name.as_str()).collect();
        assert!(names.contains(&"new_total"));
        assert!(!names.contains(&"old_total"));
    }

    #[test]
    fn set_counter_lower_value_is_a_reset() {
        let mut s = store_with(vec![], 10);
        s.set_now(100);
        s.set_counter(Series::new("lost_total", &[]), 10);
        s.set_now(200);
        s.set_counter(Series::new("lost_total", &[]), 3);
        let snap = s.snapshot(300);
        let p = snap
            .points
            .iter()
            .find(|p| p.series.name == "lost_total")
            .unwrap();
        assert_eq!((p.value, p.start_ms), (Value::Counter(3), 200));
    }

    #[test]
    fn counters_round_trip_through_saved_state() {
        let mut a = store_with(vec![], 10);
        a.set_now(42);
        a.inc(Series::new("c_total", &[("j", "x")]), 7);
        let saved = a.saved_counters();
        let mut b = store_with(vec![], 10);
        b.set_now(1000);
        b.restore_counters(saved);
        b.inc(Series::new("c_total", &[("j", "x")]), 1);
        let snap = b.snapshot(2000);
        let p = snap
            .points
            .iter()
            .find(|p| p.series.name == "c_total")
            .unwrap();
        assert_eq!((p.value, p.start_ms), (Value::Counter(8), 42));
    }
}
