//! The label rules as the config writes them ([`LabelRule`], [`LabelAction`])
//! and as the store applies them ([`Rules`], compiled once by the plan): `drop`
//! and `prefix` here, the other kinds in their own files beside this one.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::action::{Action, Top, Use};
use super::relabel::{self, Selector, WholeRegex};
use super::{geoip::GeoipConfig, hash::HashConfig, topk::TopConfig};
use crate::invalid::Invalid;

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
    /// The k values with the most updates per family keep their own series, the
    /// rest is counted under `"other"` (see `labels::topk`).
    Top(TopConfig),
    /// Adds `country` (and `asn`, `as_org`) of an IP address label.
    Geoip(GeoipConfig),
    /// Replaces the value by a keyed hash.
    Hash(HashConfig),
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

impl LabelRule {
    /// The compiled form of a rule that needs one (databases opened, key read);
    /// `key` names the rule in errors, e.g. `store.labels[2]`.
    fn compile(&self, key: &str) -> Result<Option<Action>, Invalid> {
        Ok(match &self.action {
            LabelAction::Drop
            | LabelAction::Prefix { .. }
            | LabelAction::Replace { .. }
            | LabelAction::Lowercase => None,
            LabelAction::Top(c) => {
                c.validate(key)?;
                Some(Action::Top(Top::new(c.clone())))
            }
            LabelAction::Geoip(c) => Some(Action::Geoip {
                geo: Arc::new(c.open(key)?),
                keep: c.keep,
            }),
            LabelAction::Hash(c) => Some(Action::Hash(c.open(key)?)),
        })
    }
}

/// The label rules, applied in order to a new series' labels when a handle
/// is made. A rule gets the whole label list, so one that adds labels (a
/// country for an IP, say) just pushes them: the list is sorted afterwards.
/// A `top` rule decides per update (a value's own series or `"other"`), so a
/// handle it decided is resolved again at each update (see [`crate::store::Handle`]).
#[derive(Clone, Debug, Default)]
pub struct Rules(Vec<(LabelRule, Option<Action>)>);

impl Rules {
    /// Compiles the rules (GeoIP databases opened, hash keys read, `top`
    /// checked and given its sketch); errors name `store.labels[i]` and the key.
    /// The plan does this once (`StoreConfig::limits`); nothing runs uncompiled.
    pub fn compile(rules: &[LabelRule]) -> Result<Rules, Invalid> {
        let compiled = rules.iter().enumerate().map(|(i, r)| {
            let action = r.compile(&format!("store.labels[{i}]"))?;
            Ok((r.clone(), action))
        });
        compiled.collect::<Result<_, _>>().map(Rules)
    }

    /// Rewrites `labels` for metric `name`, then sorts them by (name, value).
    /// True when a `top` rule decided where the update goes. A restored series
    /// (`Use::Restore`) was rewritten before it was saved: only `top` sees it,
    /// to promote its value again.
    pub(crate) fn apply(
        &mut self,
        name: &str,
        labels: &mut Vec<(String, String)>,
        now_ms: i64,
        used: Use,
    ) -> bool {
        let mut decided = false;
        for (rule, action) in &mut self.0 {
            if rule.metric.as_ref().is_some_and(|m| m != name) || !rule.selector.matches(labels) {
                continue;
            }
            match action {
                Some(a @ Action::Top(_)) => {
                    decided |= labels.iter().any(|(k, _)| *k == rule.label);
                    a.apply(&rule.label, name, labels, now_ms, used);
                }
                _ if used == Use::Restore => {}
                Some(a) => a.apply(&rule.label, name, labels, now_ms, used),
                None => plain(rule, labels),
            }
        }
        labels.sort_unstable();
        decided
    }

    /// A restored series' labels shown to the rules. The series was rewritten
    /// before it was saved, so it is kept as it is (a hash is not applied
    /// twice); only a `top` rule learns of it, to promote its value again
    /// while there is room.
    pub(crate) fn remember_restored<'a>(
        &mut self,
        name: &str,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        now_ms: i64,
    ) {
        if self.is_empty() {
            return;
        }
        let mut owned: Vec<(String, String)> = labels
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.apply(name, &mut owned, now_ms, Use::Restore);
    }

    /// [`Rules::apply`] of an update, counting nothing: where it would go now
    /// (tests ask the store where an update went).
    #[cfg(test)]
    pub(crate) fn look(&self, name: &str, labels: &mut Vec<(String, String)>) {
        for (rule, action) in &self.0 {
            if rule.metric.as_ref().is_some_and(|m| m != name) || !rule.selector.matches(labels) {
                continue;
            }
            match action {
                Some(a) => a.look(&rule.label, name, labels),
                None => plain(rule, labels),
            }
        }
        labels.sort_unstable();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `drop` and `prefix`, which need no compiled state.
fn plain(rule: &LabelRule, labels: &mut Vec<(String, String)>) {
    match &rule.action {
        LabelAction::Drop => labels.retain(|(k, _)| *k != rule.label),
        LabelAction::Prefix { ipv4, ipv6 } => {
            for (k, v) in labels.iter_mut() {
                if *k == rule.label
                    && let Some(p) = ip_prefix(v, *ipv4, *ipv6)
                {
                    *v = p;
                }
            }
        }
        LabelAction::Replace { regex, replacement } => {
            relabel::rewrite(labels, &rule.label, |v| regex.replace(v, replacement))
        }
        LabelAction::Lowercase => relabel::rewrite(labels, &rule.label, relabel::lowercase),
        LabelAction::Top(_) | LabelAction::Geoip(_) | LabelAction::Hash(_) => {}
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
