//! The store's unit tests, and the test-only ways to read it back: where an
//! update went ([`Store::get`]), and counters saved and restored as a whole
//! (the state file itself saves only what changed).

use serde::Deserialize;

use super::*;
use crate::labels::relabel::Selector;
use crate::labels::rules::{LabelAction, LabelRule, Rules};

/// Test-only reads of the store.
impl Store {
    /// The current value of a counter or gauge, after label rules.
    pub fn get(&self, series: &Series) -> Option<Value> {
        let series = if self.limits.rules.is_empty() {
            series.clone()
        } else {
            let mut owned: Vec<(String, String)> = series
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.limits.rules.look(series.name(), &mut owned);
            Series::from_sorted(
                series.name(),
                owned.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        };
        let s = &self.slots[*self.index.get(&series)? as usize];
        Some(s.value())
    }

    /// Every counter, as a whole save would keep it.
    pub fn saved_counters(&self) -> Vec<SavedCounter> {
        self.live()
            .filter(|(_, s)| s.kind == Kind::Counter)
            .map(|(series, s)| SavedCounter {
                series: Series::clone(series),
                value: s.counter,
                start_ms: s.start_ms,
            })
            .collect()
    }

    /// Restores counters saved by [`Store::saved_counters`] (before any update).
    pub fn restore_counters(&mut self, saved: Vec<SavedCounter>) {
        for c in saved {
            self.restore_counter(c.series, c.value, c.start_ms, NOT_SAVED);
        }
    }
}

fn store_with(rules: Vec<LabelRule>, cap: usize) -> Store {
    Store::new(Limits {
        max_series_per_metric: cap,
        idle_expiry_ms: 0,
        rules: Rules::compile(&rules).unwrap(),
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
        .find(|p| p.series.name() == "x_total")
        .unwrap();
    assert_eq!(p.series.labels().next().unwrap().0, "a");
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
    s.describe(&Metric::counter("gone_total", "x"));
    s.inc(Series::new("gone_total", &[]), 1);
    s.inc(Series::new("kept_total", &[]), 1);
    let snap = s.snapshot(1);
    assert!(!snap.meta.contains_key("gone_total"));
    let names: Vec<_> = snap.points.iter().map(|p| p.series.name()).collect();
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
    assert_eq!(s.sum(FOLDED.name, &[("metric", "m_total")]), 3);
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
    let names: Vec<_> = snap.points.iter().map(|p| p.series.name()).collect();
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
        .find(|p| p.series.name() == "lost_total")
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
        .find(|p| p.series.name() == "c_total")
        .unwrap();
    assert_eq!((p.value, p.start_ms), (Value::Counter(8), 42));
}

#[test]
fn a_handle_made_stale_by_expiry_resolves_again_and_never_writes_into_another_series() {
    let mut s = Store::new(Limits {
        idle_expiry_ms: 1_000,
        ..Limits::default()
    });
    let mut old = Handle::default();
    s.set_now(0);
    s.inc_at(&mut old, "a_total", &[("ip", "192.0.2.1")], 5);
    s.set_now(5_000);
    s.snapshot(5_000); // frees a_total{ip="192.0.2.1"}
    // A new series takes the freed slot.
    s.inc(Series::new("b_total", &[]), 1);
    s.inc_at(&mut old, "a_total", &[("ip", "192.0.2.1")], 2);
    assert_eq!(s.get(&Series::new("b_total", &[])), Some(Value::Counter(1)));
    let snap = s.snapshot(5_500);
    let a = snap
        .points
        .iter()
        .find(|p| p.series.name() == "a_total")
        .unwrap();
    assert_eq!(
        (a.value, a.start_ms),
        (Value::Counter(2), 5_000),
        "counts again from 0"
    );
}

#[test]
fn a_folded_handle_counts_every_update_and_is_made_again_when_expiry_makes_room() {
    let mut s = Store::new(Limits {
        max_series_per_metric: 1,
        idle_expiry_ms: 1_000,
        ..Limits::default()
    });
    s.set_now(0);
    s.inc(Series::new("m_total", &[("ip", "a")]), 1);
    let mut h = Handle::default();
    s.set_now(10);
    for _ in 0..3 {
        s.inc_at(&mut h, "m_total", &[("ip", "b")], 1);
    }
    assert_eq!(s.sum("m_total", &[(OVERFLOW_LABEL, "true")]), 3);
    assert_eq!(s.sum(FOLDED.name, &[("metric", "m_total")]), 3);
    // Everything idles out; the next update through the old handle gets a real series.
    s.set_now(5_000);
    s.snapshot(5_000);
    s.inc_at(&mut h, "m_total", &[("ip", "b")], 1);
    assert_eq!(s.sum("m_total", &[("ip", "b")]), 1);
    assert_eq!(s.sum("m_total", &[(OVERFLOW_LABEL, "true")]), 0);
}

/// F7: a label value is as long as the log line it came from; past
/// `max_label_value_bytes` it is cut (prefix, marker, hash of the whole value),
/// so memory is bounded by the cap times the bound, values differing after the
/// cut stay apart, and every cut is counted.
#[test]
fn long_label_values_are_cut_kept_apart_and_counted() {
    let mut s = store_with(vec![], 100);
    let long = |c: char| format!("{}{c}", "A".repeat(500_000));
    for v in [long('x'), long('y'), long('x')] {
        s.inc(
            Series::new("m_total", &[("user", &v), ("stream", "ssh")]),
            1,
        );
    }
    let snap = s.snapshot(1);
    let m: Vec<_> = snap
        .points
        .iter()
        .filter(|p| p.series.name() == "m_total")
        .collect();
    assert_eq!(m.len(), 2, "x and y differ after the cut: two series");
    for p in &m {
        let v = p.series.label("user").unwrap();
        assert!(v.len() <= DEFAULT_MAX_LABEL_VALUE_BYTES, "{}", v.len());
        assert!(v.starts_with("AAAA") && v.contains('\u{2026}'), "{v}");
        assert_eq!(p.series.label("stream"), Some("ssh"));
    }
    assert_eq!(s.sum("m_total", &[]), 3);
    assert_eq!(s.sum(TRUNCATED.name, &[("metric", "m_total")]), 3);
    // cut at a character boundary
    let v = cut_value(&"é".repeat(100), 33);
    assert!(v.len() <= 33 && v.starts_with("éé"), "{v}");
    assert_eq!(cut_value("short", 32), "short");
}

/// F9: past the cap a new series folds into one per jail (its FOLD_KEEPS
/// labels), not one for the whole metric: after more attacker IPs in one jail
/// than the cap, bans in a second jail and more in the first still sum right
/// per jail.
#[test]
fn past_the_cap_sums_by_jail_stay_right() {
    let mut s = store_with(vec![], DEFAULT_MAX_SERIES);
    let mut truth: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ban = |s: &mut Store, jail: &'static str, i: u32| {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        s.inc(
            Series::new("fail2ban_bans_total", &[("jail", jail), ("ip", &ip)]),
            1,
        );
        *truth.entry(jail).or_default() += 1;
    };
    for i in 0..10_050 {
        ban(&mut s, "nginx-probe", i);
    }
    for i in 0..3 {
        ban(&mut s, "sshd", 20_000 + i);
    }
    for i in 0..7 {
        ban(&mut s, "nginx-probe", 30_000 + i);
    }
    for (jail, n) in &truth {
        assert_eq!(
            s.sum("fail2ban_bans_total", &[("jail", jail)]),
            *n,
            "{jail}"
        );
    }
    assert_eq!(
        s.sum(
            "fail2ban_bans_total",
            &[("jail", "sshd"), (OVERFLOW_LABEL, "true")]
        ),
        3
    );
    assert_eq!(s.sum(FOLDED.name, &[("metric", "fail2ban_bans_total")]), 60);
}

/// Fold label sets are bounded too: a tenth of the cap (at least 100) per
/// metric, then the one `{rme_overflow="true"}` series.
#[test]
fn fold_label_sets_are_bounded() {
    let mut s = store_with(vec![], 10);
    for i in 0..500 {
        let jail = format!("j{i}");
        s.inc(Series::new("m_total", &[("jail", &jail), ("ip", "x")]), 1);
    }
    let n = s
        .snapshot(1)
        .points
        .iter()
        .filter(|p| p.series.name() == "m_total")
        .count();
    assert_eq!(n, 10 + 100 + 1);
    assert_eq!(s.sum("m_total", &[]), 500);
    assert_eq!(
        s.get(&Series::new("m_total", &[(OVERFLOW_LABEL, "true")])),
        Some(Value::Counter(390))
    );
}
