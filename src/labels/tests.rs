//! The three actions as `[[store.labels]]` rules: the TOML shape, and what the
//! store does with them.

use crate::config::{Config, Plan};
use crate::labels::rules::{LabelAction, LabelRule, Rules};
use crate::store::{Limits, SavedCounter, Series, Store};

/// Parsed and planned: the plan step compiles the rules (opens databases, reads keys).
fn parse(rules: &str) -> anyhow::Result<Plan> {
    let text = format!("[[sinks]]\ntype = \"stdout\"\n{rules}");
    Config::parse(&text, None)?.plan()
}

/// A tor-format table in a temp dir: 192.0.2.0/24 → XX, 198.51.100.0/24 → YY.
fn tor_table() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let v4 = "# test\n3221225984,3221226239,XX\n3325256704,3325256959,YY\n";
    std::fs::write(dir.path().join("geoip"), v4).expect("write");
    dir
}

#[test]
fn toml_shape_of_the_three_actions() {
    let dir = tor_table();
    std::fs::write(dir.path().join("key"), "0123456789abcdef0123\n").expect("write");
    let text = format!(
        "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\ncountry_db = \"{0}/geoip\"\nkeep = true\n\
         [[store.labels]]\nlabel = \"ip\"\nmetric = \"reaction_match_total\"\naction = \"top\"\nk = 5\n\
         [[store.labels]]\nlabel = \"ip\"\naction = \"hash\"\nkey_file = \"{0}/key\"\n",
        dir.path().display()
    );
    let plan = parse(&text).expect("valid");
    let rules = &plan.config.store.labels;
    assert!(matches!(&rules[0].action, LabelAction::Geoip(g) if g.keep && g.asn_db.is_none()));
    assert!(matches!(&rules[1].action, LabelAction::Top(t) if t.k == 5 && t.window_secs == 3600));
    assert!(matches!(&rules[2].action, LabelAction::Hash(h) if h.length == 12));

    for (bad, unknown) in [
        ("action = \"top\"\nkk = 5", "kk"),
        ("metrc = \"m\"\naction = \"top\"", "metrc"),
        ("action = \"geoip\"\ncountry = \"x\"", "country"),
    ] {
        let e = parse(&format!("[[store.labels]]\nlabel = \"ip\"\n{bad}\n"))
            .err()
            .expect("refused");
        assert!(
            format!("{e:#}").contains(&format!("unknown field `{unknown}`")),
            "{e:#}"
        );
    }

    let missing = format!(
        "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\ncountry_db = \"{}/nope.mmdb\"\n",
        dir.path().display()
    );
    let e = format!("{:#}", parse(&missing).err().expect("refused"));
    assert!(
        e.contains("store.labels[0].country_db") && e.contains("nope.mmdb"),
        "{e}"
    );

    let nokey =
        "[[store.labels]]\nlabel = \"ip\"\naction = \"hash\"\nkey_file = \"/nonexistent/k\"\n";
    let e = format!("{:#}", parse(nokey).err().expect("refused"));
    assert!(e.contains("store.labels[0].key_file"), "{e}");
}

fn store(text: &str) -> Store {
    Store::new(parse(text).expect("valid").limits)
}

/// geoip then top: a country per address, the top values per (filter,
/// country) family, `other` for the rest; every update lands exactly once.
#[test]
fn geoip_then_top_in_the_store() {
    let dir = tor_table();
    let mut s = store(&format!(
        "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\ncountry_db = \"{}/geoip\"\n\
         [[store.labels]]\nlabel = \"ip\"\naction = \"top\"\nk = 2\nwindow_secs = 0\n",
        dir.path().display()
    ));
    let mut total = 0;
    for (ip, n) in [
        ("192.0.2.1", 50),
        ("192.0.2.2", 40),
        ("192.0.2.3", 30),
        ("192.0.2.4", 1),
        ("198.51.100.9", 7),
        ("203.0.113.5", 3),
    ] {
        for _ in 0..n {
            s.inc(Series::new("m_total", &[("filter", "f"), ("ip", ip)]), 1);
            total += 1;
        }
    }
    assert_eq!(s.sum("m_total", &[]), total);
    assert_eq!(s.sum("m_total", &[("country", "XX")]), 121);
    assert_eq!(s.sum("m_total", &[("country", "YY")]), 7);
    assert_eq!(s.sum("m_total", &[("country", "unknown")]), 3);
    let xx = |ip| s.sum("m_total", &[("country", "XX"), ("ip", ip)]);
    assert!(xx("192.0.2.1") > 0 && xx("192.0.2.2") > 0);
    assert_eq!(xx("192.0.2.3"), 0, "k = 2 per family");
    assert!(xx("other") >= 31);
    let snap = s.snapshot(0);
    let xx_series = snap
        .points
        .iter()
        .filter(|p| p.series.label("country") == Some("XX"))
        .count();
    assert!(xx_series <= 3, "{xx_series}");
}

/// Restored series were rewritten before they were saved: a hash is not
/// applied twice, and a top value keeps its series (the sketch is seeded).
#[test]
fn restored_series_are_not_rewritten_again() {
    let dir = tor_table();
    std::fs::write(dir.path().join("key"), "0123456789abcdef0123").expect("write");
    let text = format!(
        "[[store.labels]]\nlabel = \"user\"\naction = \"hash\"\nkey_file = \"{}/key\"\n\
         [[store.labels]]\nlabel = \"ip\"\naction = \"top\"\nk = 1\n",
        dir.path().display()
    );
    let mut a = store(&text);
    for _ in 0..5 {
        a.inc(
            Series::new("m_total", &[("ip", "192.0.2.1"), ("user", "root")]),
            1,
        );
    }
    let own = a.sum("m_total", &[("ip", "192.0.2.1")]);
    assert_eq!((own, a.sum("m_total", &[("ip", "other")])), (3, 2));
    let saved: Vec<SavedCounter> = a.saved_counters();
    let hashed = saved[0].series.label("user").expect("user").to_string();
    assert_ne!(hashed, "root");
    let mut b = store(&text);
    b.restore_counters(saved);
    b.inc(
        Series::new("m_total", &[("ip", "192.0.2.1"), ("user", "root")]),
        1,
    );
    // the restored value was promoted again at once: its update is its own
    assert_eq!(
        b.sum("m_total", &[("ip", "192.0.2.1"), ("user", &hashed)]),
        own + 1
    );
    assert_eq!(b.sum("m_total", &[]), 6);
    assert_eq!(b.len(), a.len());
}

#[test]
fn a_top_rule_promotes_a_value_at_its_third_update() {
    let mut s = Store::new(Limits {
        rules: Rules::compile(&[LabelRule {
            label: "ip".into(),
            metric: None,
            selector: Default::default(),
            action: LabelAction::Top(super::topk::TopConfig {
                k: 1,
                window_secs: 0,
            }),
        }])
        .unwrap(),
        ..Limits::default()
    });
    for ip in ["a", "a", "a", "a", "b"] {
        s.inc(Series::new("m_total", &[("ip", ip)]), 1);
    }
    assert_eq!(
        s.sum("m_total", &[("ip", "a")]),
        2,
        "promoted at its third update"
    );
    assert_eq!(s.sum("m_total", &[("ip", "other")]), 3);
}

/// A parser that keeps a handle still sees each update decided: the handle a
/// `top` rule chose is resolved again at the next update.
#[test]
fn a_kept_handle_follows_the_top_decision() {
    let mut s = Store::new(Limits {
        rules: Rules::compile(&[LabelRule {
            label: "ip".into(),
            metric: None,
            selector: Default::default(),
            action: LabelAction::Top(super::topk::TopConfig {
                k: 1,
                window_secs: 0,
            }),
        }])
        .unwrap(),
        ..Limits::default()
    });
    let mut h = crate::store::Handle::default();
    for _ in 0..5 {
        s.inc_at(&mut h, "m_total", &[("ip", "a")], 1);
    }
    assert_eq!(s.sum("m_total", &[("ip", "other")]), 2);
    assert_eq!(
        s.sum("m_total", &[("ip", "a")]),
        3,
        "own series from the third update"
    );
}
