//! The compiled `top`, `geoip` and `hash` actions, as the store's label rules
//! apply them to a new series' label list (`(name, value)` pairs, sorted by the
//! store afterwards).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::geoip::Geo;
use super::hash::Keyed;
use super::topk::{Family, OTHER, TopConfig};

/// One compiled action, for the rule's `label`.
#[derive(Clone, Debug)]
pub enum Action {
    Top(Top),
    Geoip { geo: Arc<Geo>, keep: bool },
    Hash(Keyed),
}

/// Whether an update is being counted (the top-K sketch learns from it) or a
/// series restored from the state file (which keeps its value if there is room).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Update,
    Restore,
}

impl Action {
    /// Applies the action to `labels` of metric `name` at `now_ms`.
    pub fn apply(
        &mut self,
        label: &str,
        name: &str,
        labels: &mut Vec<(String, String)>,
        now_ms: i64,
        used: Use,
    ) {
        match self {
            Action::Top(top) => {
                // sorted in place, so one family has one key whatever the order given
                labels.sort_unstable();
                let Some(at) = labels.iter().position(|(k, _)| k == label) else {
                    return;
                };
                if !top.decide(label, name, labels, at, now_ms, used) {
                    labels[at].1 = OTHER.to_string();
                }
            }
            _ => self.edit(label, labels),
        }
    }

    /// [`Action::apply`] without counting anything: where an update would go now
    /// (for tests, through `Store::get`).
    #[cfg(test)]
    pub fn look(&self, label: &str, name: &str, labels: &mut Vec<(String, String)>) {
        match self {
            Action::Top(top) => {
                labels.sort_unstable();
                let Some(at) = labels.iter().position(|(k, _)| k == label) else {
                    return;
                };
                let mut key = String::new();
                family_key(&mut key, name, label, labels);
                let own = top
                    .families
                    .get(&key)
                    .is_some_and(|f| f.is_promoted(&labels[at].1));
                if !own {
                    labels[at].1 = OTHER.to_string();
                }
            }
            _ => self.edit(label, labels),
        }
    }

    /// The actions that depend on the value alone.
    fn edit(&self, label: &str, labels: &mut Vec<(String, String)>) {
        let Some(at) = labels.iter().position(|(k, _)| k == label) else {
            return;
        };
        match self {
            Action::Top(_) => {}
            Action::Geoip { geo, keep } => {
                let found = geo.labels(&labels[at].1);
                if !*keep {
                    labels.remove(at);
                }
                for (k, v) in found {
                    match labels.iter_mut().find(|(n, _)| n == k) {
                        Some(slot) => slot.1 = v,
                        None => labels.push((k.to_string(), v)),
                    }
                }
            }
            Action::Hash(keyed) => {
                let hashed = keyed.apply(&labels[at].1);
                labels[at].1 = hashed;
            }
        }
    }
}

/// `name`, then each label but `label` as NUL-separated text (labels sorted).
fn family_key(key: &mut String, name: &str, label: &str, labels: &[(String, String)]) {
    key.clear();
    key.push_str(name);
    for (k, v) in labels.iter().filter(|(k, _)| k != label) {
        let _ = write!(key, "\u{0}{k}\u{0}{v}");
    }
}

/// A `top` rule: one sketch per family (metric plus the other labels).
#[derive(Clone, Debug)]
pub struct Top {
    config: TopConfig,
    families: HashMap<String, Family>,
    /// The family key is built here, so finding an existing family allocates nothing.
    key: String,
}

impl Top {
    pub fn new(config: TopConfig) -> Top {
        Top {
            config,
            families: HashMap::new(),
            key: String::new(),
        }
    }

    /// Families seen so far (each holds O(k) memory).
    pub fn families(&self) -> usize {
        self.families.len()
    }

    fn decide(
        &mut self,
        label: &str,
        name: &str,
        labels: &[(String, String)],
        at: usize,
        now_ms: i64,
        used: Use,
    ) -> bool {
        let value = labels[at].1.as_str();
        if value == OTHER {
            return false;
        }
        family_key(&mut self.key, name, label, labels);
        let family = match self.families.get_mut(self.key.as_str()) {
            Some(f) => f,
            None => self
                .families
                .entry(self.key.clone())
                .or_insert_with(|| self.config.family()),
        };
        match used {
            Use::Update => family.observe(value, now_ms),
            Use::Restore => family.seed(value, now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn top_keeps_a_sketch_per_family() {
        let mut top = Action::Top(Top::new(TopConfig {
            k: 1,
            window_secs: 0,
        }));
        let mut run = |filter: &str, ip: &str| {
            let mut l = labels(&[("filter", filter), ("ip", ip)]);
            top.apply("ip", "m_total", &mut l, 0, Use::Update);
            l[1].1.clone()
        };
        for _ in 0..3 {
            run("a", "1.1.1.1");
        }
        assert_eq!(run("a", "1.1.1.1"), "1.1.1.1");
        assert_eq!(run("a", "2.2.2.2"), OTHER, "k = 1 in family a");
        for _ in 0..3 {
            run("b", "2.2.2.2");
        }
        assert_eq!(
            run("b", "2.2.2.2"),
            "2.2.2.2",
            "family b has its own sketch"
        );
        let Action::Top(t) = &top else { unreachable!() };
        assert_eq!(t.families(), 2);
    }

    #[test]
    fn hash_replaces_only_its_label() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("k"), "0123456789abcdef").expect("write");
        let keyed = super::super::hash::HashConfig {
            key_file: dir.path().join("k"),
            length: 8,
        }
        .open("k")
        .expect("key");
        let mut a = Action::Hash(keyed.clone());
        let mut l = labels(&[("ip", "192.0.2.1"), ("jail", "sshd")]);
        a.apply("ip", "m", &mut l, 0, Use::Update);
        assert_eq!(l[0].1, keyed.apply("192.0.2.1"));
        assert_eq!(l[0].1.len(), 8);
        assert_eq!(l[1].1, "sshd");
        let mut none = labels(&[("jail", "sshd")]);
        a.apply("ip", "m", &mut none, 0, Use::Update);
        assert_eq!(none, labels(&[("jail", "sshd")]));
    }
}
