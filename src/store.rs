//! The one metric store between sources and sinks.
//!
//! Each series is kept once: its name and labels packed into one [`Series`]
//! behind an `Arc`, found through a hash index, with its value in a slot of an
//! arena. A parser resolves a [`Handle`] once per distinct key (a jail; a
//! stream, filter and action) and then bumps the slot without allocating.
//! Everything that decides *which* series an update lands in happens when a
//! handle is made, not on every update: label rules (drop a label, keep an
//! IP's prefix; a rule may also add labels), the per-metric series cap that
//! folds new series into one overflow series, and a handle going stale when
//! idle expiry freed its series. Sinks and `/metrics` see a [`Snapshot`],
//! whose points share the store's `Arc<Series>` instead of copying labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::labels::action::{Action, Top, Use};
use crate::labels::{geoip::GeoipConfig, hash::HashConfig, topk::TopConfig};

use crate::labels::relabel::{self, Selector, WholeRegex};

/// A series: metric name plus labels kept sorted by (name, value), as
/// remote-write requires. Packed into one string with the end of each part,
/// so a series costs one allocation (up to five labels and 64 KiB of text;
/// two beyond) whatever its label count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Series {
    /// The name, then each label's name and value, back to back.
    text: Box<str>,
    /// Where the name, and then each label name and value, end in `text`.
    ends: Ends,
}

/// Part ends inline (the usual case), or on the heap. Which one is decided by
/// the sizes alone, so equal series are equal here too (unused entries are 0).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Ends {
    Inline { len: u8, at: [u16; Ends::INLINE] },
    Heap(Box<[u32]>),
}

impl Ends {
    /// Name + 5 labels.
    const INLINE: usize = 11;

    fn new(ends: &[u32]) -> Ends {
        let short =
            ends.len() <= Ends::INLINE && ends.last().is_none_or(|&e| e <= u32::from(u16::MAX));
        if !short {
            return Ends::Heap(ends.into());
        }
        let mut at = [0; Ends::INLINE];
        for (a, &e) in at.iter_mut().zip(ends) {
            *a = e as u16;
        }
        Ends::Inline {
            len: ends.len() as u8,
            at,
        }
    }

    fn len(&self) -> usize {
        match self {
            Ends::Inline { len, .. } => usize::from(*len),
            Ends::Heap(e) => e.len(),
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Inline { at, .. } => usize::from(at[i]),
            Ends::Heap(e) => e[i] as usize,
        }
    }
}

impl Series {
    /// Builds a series; labels are sorted here so callers may pass them in any order.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Series {
        let mut sorted: Vec<(&str, &str)> = labels.to_vec();
        sorted.sort_unstable();
        Series::from_sorted(name, sorted.iter().copied())
    }

    /// Builds a series from labels already sorted by (name, value).
    fn from_sorted<'a>(
        name: &str,
        labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Series {
        let len = name.len()
            + labels
                .clone()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        let mut text = String::with_capacity(len);
        let parts = 1 + 2 * labels.clone().count();
        // The ends are gathered on the stack when they fit inline.
        let mut inline = [0u32; Ends::INLINE];
        let mut heap = Vec::new();
        let ends: &mut [u32] = if parts <= Ends::INLINE {
            &mut inline[..parts]
        } else {
            heap.resize(parts, 0);
            &mut heap
        };
        text.push_str(name);
        ends[0] = text.len() as u32;
        for (i, (k, v)) in labels.enumerate() {
            text.push_str(k);
            ends[1 + 2 * i] = text.len() as u32;
            text.push_str(v);
            ends[2 + 2 * i] = text.len() as u32;
        }
        Series {
            text: text.into_boxed_str(),
            ends: Ends::new(ends),
        }
    }

    pub fn name(&self) -> &str {
        &self.text[..self.ends.get(0)]
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            series: self,
            at: 1,
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn part(&self, i: usize) -> &str {
        &self.text[self.ends.get(i - 1)..self.ends.get(i)]
    }
}

/// The labels of a [`Series`], as (name, value).
#[derive(Clone)]
pub struct Labels<'a> {
    series: &'a Series,
    at: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at + 1 >= self.series.ends.len() {
            return None;
        }
        let pair = (self.series.part(self.at), self.series.part(self.at + 1));
        self.at += 2;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.series.ends.len() - self.at) / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Labels<'_> {}

/// By name, then labels pair by pair (a shorter label list first): the order
/// every sink sends and the text format lists.
impl Ord for Series {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name()
            .cmp(other.name())
            .then_with(|| self.labels().cmp(other.labels()))
    }
}

impl PartialOrd for Series {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `name{k="v",…}`, for tests and logs (the exposition format escapes differently: text.rs).
impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{", self.name())?;
        for (i, (k, v)) in self.labels().enumerate() {
            write!(f, "{}{k}={v:?}", if i > 0 { "," } else { "" })?;
        }
        f.write_str("}")
    }
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How a series reads in JSON (`rme state`, and the state files of rme ≤ 0.1).
#[derive(Serialize, Deserialize)]
struct SeriesJson {
    name: String,
    labels: Vec<(String, String)>,
}

impl Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SeriesJson {
            name: self.name().to_string(),
            labels: self
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Series, D::Error> {
        let j = SeriesJson::deserialize(d)?;
        let labels: Vec<(&str, &str)> = j
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(Series::new(&j.name, &labels))
    }
}

/// Counter or gauge: all rme exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric as a source defines it, once: name, kind and help together.
/// Each source keeps a `const` per metric and one table of them for `describe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            kind: Kind::Counter,
            help,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            kind: Kind::Gauge,
            help,
        }
    }
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
    /// Shared with the store: a snapshot copies a pointer, not the labels.
    pub series: Arc<Series>,
    pub value: Value,
    /// When this counter started counting from zero (unix ms); OTLP's start time.
    pub start_ms: i64,
}

/// The store at one instant; what every encoder takes.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Unix ms of the snapshot; every point is stamped with it.
    pub at_ms: i64,
    /// Sorted by series (name first), so each metric's points are contiguous.
    pub points: Vec<Point>,
    pub meta: BTreeMap<&'static str, Meta>,
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
    pub fn compile(&self, key: &str) -> Result<Option<Action>, Invalid> {
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
/// handle it decided is resolved again at each update (see [`Handle`]).
#[derive(Clone, Debug, Default)]
pub struct Rules(Vec<(LabelRule, Option<Action>)>);

impl Rules {
    /// The rules with their compiled actions (`compiled[i]` for `rules[i]`); a
    /// `top` rule without one gets a fresh sketch, a `geoip` or `hash` rule
    /// without one does nothing (see [`Limits::compile`]).
    pub fn compile(rules: &[LabelRule], compiled: &[Option<Action>]) -> Rules {
        Rules(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let action = compiled.get(i).cloned().flatten().or(match &r.action {
                        LabelAction::Top(c) => Some(Action::Top(Top::new(c.clone()))),
                        _ => None,
                    });
                    (r.clone(), action)
                })
                .collect(),
        )
    }

    /// Rewrites `labels` for metric `name`, then sorts them by (name, value).
    /// True when a `top` rule decided where the update goes. A restored series
    /// (`Use::Restore`) was rewritten before it was saved: only `top` sees it,
    /// to promote its value again.
    fn apply(
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

    /// [`Rules::apply`] of an update, counting nothing: where it would go now.
    fn look(&self, name: &str, labels: &mut Vec<(String, String)>) {
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

    fn is_empty(&self) -> bool {
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

/// Limits that keep the store bounded.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_series_per_metric: usize,
    /// Series not updated for this long are forgotten (0 = never).
    pub idle_expiry_ms: i64,
    pub rules: Vec<LabelRule>,
    /// Metrics not kept at all: their updates are ignored.
    pub drop_metrics: BTreeSet<String>,
    /// `rules[i]`'s compiled action (see [`Limits::compile`]).
    pub compiled: Vec<Option<Action>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_metric: 10_000,
            idle_expiry_ms: 0,
            rules: Vec::new(),
            drop_metrics: BTreeSet::new(),
            compiled: Vec::new(),
        }
    }
}

impl Limits {
    /// Compiles the rules (opens GeoIP databases, reads hash keys); errors name
    /// `store.labels[i]` and the key.
    pub fn compile(&mut self) -> Result<(), Invalid> {
        self.compiled = (self.rules.iter().enumerate())
            .map(|(i, r)| r.compile(&format!("store.labels[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// Label put on the series that absorbs what the cap refused.
pub const OVERFLOW_LABEL: &str = "rme_overflow";
pub const FOLDED: Metric = Metric::counter(
    "rme_series_folded_total",
    "Updates folded into an overflow series because a metric hit max_series_per_metric.",
);
pub const SERIES: Metric = Metric::gauge("rme_series", "Series held in the store.");
pub const FOLDED_METRIC: &str = FOLDED.name;
pub const SERIES_METRIC: &str = SERIES.name;

/// Where updates for one series go: resolved once, then used without a lookup.
/// A handle made before idle expiry freed its series is stale; the `*_at`
/// methods then resolve it again from the labels they are given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handle {
    slot: u32,
    /// The slot's generation when resolved; 0 = not resolved.
    generation: u32,
    /// For a series the cap folded: the `rme_series_folded_total` slot + 1 (else 0),
    /// its generation, and the store's expiry epoch (expiry may make room).
    fold: u32,
    fold_generation: u32,
    epoch: u32,
    /// A `top` rule chose this series for one update: the next update is
    /// decided again (the sketch's lookup of a promoted value allocates nothing).
    decided: bool,
}

/// A series' value and bookkeeping in the arena.
#[derive(Debug)]
struct Slot {
    /// `None` while the slot is free.
    series: Option<Arc<Series>>,
    kind: Kind,
    /// The counter; for a gauge, its value's bits (a slot is one or the other).
    counter: u64,
    start_ms: i64,
    updated_ms: i64,
    generation: u32,
    /// Counter changed since the state file last took the changes.
    changed: bool,
    /// The counter's id in the state file (`NOT_SAVED` until written there).
    saved_id: u32,
}

/// `Slot::saved_id` of a counter the state file does not hold yet.
pub const NOT_SAVED: u32 = u32::MAX;

/// A counter as kept in the state file, so restarts and cron runs continue it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedCounter {
    pub series: Series,
    pub value: u64,
    pub start_ms: i64,
}

/// A slot as it was when taken: a freed and reused slot no longer matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    slot: u32,
    generation: u32,
}

/// A counter that changed since the state file last looked (see [`Store::take_changes`]).
#[derive(Debug)]
pub struct Changed {
    pub slot: SlotRef,
    /// The id the state file gave it, or [`NOT_SAVED`].
    pub saved_id: u32,
    pub series: Arc<Series>,
    pub value: u64,
    pub start_ms: i64,
}

/// Everything sources have counted so far.
#[derive(Debug, Default)]
pub struct Store {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// foldhash, not SipHash: this index is looked up for every handle made and
    /// hashes whole label sets; its per-process seed and the series cap bound
    /// what crafted label values could do to it.
    index: HashMap<Arc<Series>, u32, foldhash::fast::RandomState>,
    /// Live slots sorted by series; rebuilt when `sorted` is false.
    order: Vec<u32>,
    sorted: bool,
    meta: BTreeMap<&'static str, Meta>,
    series_per_metric: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    limits: Limits,
    rules: Rules,
    /// The clock sources' updates are stamped with; set by the caller before a batch.
    now_ms: i64,
    next_generation: u32,
    /// Bumped whenever expiry frees series, which may make room under the cap.
    epoch: u32,
    /// Counter slots changed since the last `take_changes`.
    changed: Vec<u32>,
    /// State-file ids of counters expiry forgot since the last `take_changes`.
    forgotten: Vec<u32>,
    series_gauge: Handle,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        let mut store = Store {
            rules: Rules::compile(&limits.rules, &limits.compiled),
            limits,
            now_ms: now_ms(),
            next_generation: 1,
            sorted: true,
            ..Store::default()
        };
        store.describe_all(&[FOLDED, SERIES]);
        store
    }

    /// Registers a metric's type and help text; sources call this once at start.
    pub fn describe(&mut self, m: &Metric) {
        if self.limits.drop_metrics.contains(m.name) {
            return;
        }
        self.meta.insert(
            m.name,
            Meta {
                kind: m.kind,
                help: m.help,
            },
        );
    }

    /// [`Store::describe`] for each metric of a source's table.
    pub fn describe_all(&mut self, metrics: &[Metric]) {
        metrics.iter().for_each(|m| self.describe(m));
    }

    /// Sets the time stamped on the following updates (ms since the epoch).
    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Resolves the handle for a series, making the series if it is new:
    /// label rules, then the series cap. `None` for a metric in `drop_metrics`,
    /// and when the series exists with another kind than asked (a source bug;
    /// logged rather than panicking).
    pub fn handle(&mut self, name: &str, kind: Kind, labels: &[(&str, &str)]) -> Option<Handle> {
        if self.limits.drop_metrics.contains(name) {
            return None;
        }
        let series = if self.rules.is_empty() {
            Series::new(name, labels)
        } else {
            let mut owned: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let decided = self.rules.apply(name, &mut owned, self.now_ms, Use::Update);
            let series =
                Series::from_sorted(name, owned.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            return self
                .handle_of(series, kind)
                .map(|h| Handle { decided, ..h });
        };
        self.handle_of(series, kind)
    }

    /// [`Store::handle`] for a series whose label rules have been applied.
    fn handle_of(&mut self, series: Series, kind: Kind) -> Option<Handle> {
        let now = self.now_ms;
        let mut handle = Handle {
            epoch: self.epoch,
            ..Handle::default()
        };
        let slot = match self.index.get(&series) {
            Some(&slot) => slot,
            None => {
                let count = self
                    .series_per_metric
                    .get(series.name())
                    .copied()
                    .unwrap_or(0);
                let overflow = series.label(OVERFLOW_LABEL).is_some();
                if count >= self.limits.max_series_per_metric && !overflow {
                    let folded = Series::new(FOLDED.name, &[("metric", series.name())]);
                    let f = match self.index.get(&folded) {
                        Some(&f) => f,
                        None => self.insert(folded, Kind::Counter, now, false),
                    };
                    handle.fold = f + 1;
                    handle.fold_generation = self.slots[f as usize].generation;
                    let over = Series::new(series.name(), &[(OVERFLOW_LABEL, "true")]);
                    match self.index.get(&over) {
                        Some(&s) => s,
                        None => self.insert(over, kind, now, true),
                    }
                } else {
                    self.insert(series, kind, now, true)
                }
            }
        };
        let s = &self.slots[slot as usize];
        if s.kind != kind {
            tracing::error!(
                ?kind,
                series = %s.series.as_deref().map(ToString::to_string).unwrap_or_default(),
                "metric used both as counter and gauge; update ignored"
            );
            return None;
        }
        handle.slot = slot;
        handle.generation = s.generation;
        Some(handle)
    }

    /// Puts a new series into a free slot (or a new one).
    fn insert(&mut self, series: Series, kind: Kind, now: i64, counted: bool) -> u32 {
        if counted {
            *self
                .series_per_metric
                .entry(series.name().into())
                .or_default() += 1;
        }
        let series = Arc::new(series);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.checked_add(1).unwrap_or(1);
        let slot = Slot {
            series: Some(series.clone()),
            kind,
            counter: 0,
            start_ms: now,
            updated_ms: now,
            generation,
            changed: false,
            saved_id: NOT_SAVED,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(series, i);
        self.order.push(i);
        self.sorted = false;
        i
    }

    /// Whether a handle still points at its series.
    fn is_live(&self, h: &Handle) -> bool {
        let ok = |slot: u32, generation: u32| {
            generation != 0
                && self
                    .slots
                    .get(slot as usize)
                    .is_some_and(|s| s.generation == generation)
        };
        !h.decided
            && ok(h.slot, h.generation)
            && (h.fold == 0 || (h.epoch == self.epoch && ok(h.fold - 1, h.fold_generation)))
    }

    /// Resolves `h` again when it is stale; false when the series cannot take the update.
    fn refresh(&mut self, h: &mut Handle, name: &str, kind: Kind, labels: &[(&str, &str)]) -> bool {
        if self.is_live(h) {
            return true;
        }
        match self.handle(name, kind, labels) {
            Some(new) => {
                *h = new;
                true
            }
            None => false,
        }
    }

    /// The slot an update through a live handle lands in (stamped now; a
    /// folded update is counted in `rme_series_folded_total`).
    fn touch(&mut self, h: &Handle) -> &mut Slot {
        let now = self.now_ms;
        if h.fold > 0 {
            let f = h.fold - 1;
            let fs = &mut self.slots[f as usize];
            fs.counter = fs.counter.saturating_add(1);
            fs.updated_ms = now;
            if !fs.changed {
                fs.changed = true;
                self.changed.push(f);
            }
        }
        let s = &mut self.slots[h.slot as usize];
        s.updated_ms = now;
        if s.kind == Kind::Counter && !s.changed {
            s.changed = true;
            self.changed.push(h.slot);
        }
        &mut self.slots[h.slot as usize]
    }

    /// Adds `by` to the counter of `h`, resolving it from `name` and `labels`
    /// when it is not resolved yet or went stale. No allocation otherwise.
    pub fn inc_at(&mut self, h: &mut Handle, name: &str, labels: &[(&str, &str)], by: u64) {
        if self.refresh(h, name, Kind::Counter, labels) {
            let s = self.touch(h);
            s.counter = s.counter.saturating_add(by);
        }
    }

    /// Sets the gauge of `h` (see [`Store::inc_at`]).
    pub fn set_at(&mut self, h: &mut Handle, name: &str, labels: &[(&str, &str)], value: f64) {
        if self.refresh(h, name, Kind::Gauge, labels) {
            self.touch(h).counter = value.to_bits();
        }
    }

    /// Sets the counter of `h` to a value read from elsewhere (see [`Store::set_counter`]).
    pub fn set_counter_at(
        &mut self,
        h: &mut Handle,
        name: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        if self.refresh(h, name, Kind::Counter, labels) {
            let now = self.now_ms;
            let s = self.touch(h);
            if value < s.counter {
                s.start_ms = now;
            }
            s.counter = value;
        }
    }

    /// Adds `by` to a counter (resolving its handle each time: for updates off the hot path).
    pub fn inc(&mut self, series: Series, by: u64) {
        let labels: Vec<(&str, &str)> = series.labels().collect();
        self.inc_at(&mut Handle::default(), series.name(), &labels, by);
    }

    /// Sets a gauge.
    pub fn set(&mut self, series: Series, value: f64) {
        let labels: Vec<(&str, &str)> = series.labels().collect();
        self.set_at(&mut Handle::default(), series.name(), &labels, value);
    }

    /// Sets a counter read from elsewhere (e.g. the kernel's `lost`); a smaller
    /// value than before is a reset, so the start time moves to now.
    pub fn set_counter(&mut self, series: Series, value: u64) {
        let labels: Vec<(&str, &str)> = series.labels().collect();
        self.set_counter_at(&mut Handle::default(), series.name(), &labels, value);
    }

    /// The current value of a counter or gauge, after label rules.
    pub fn get(&self, series: &Series) -> Option<Value> {
        let series = if self.rules.is_empty() {
            series.clone()
        } else {
            let mut owned: Vec<(String, String)> = series
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.rules.look(series.name(), &mut owned);
            Series::from_sorted(
                series.name(),
                owned.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        };
        let s = &self.slots[*self.index.get(&series)? as usize];
        Some(s.value())
    }

    /// Sum of a counter over all its series whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.live()
            .filter(|(series, s)| {
                series.name() == name
                    && s.kind == Kind::Counter
                    && filter.iter().all(|(k, v)| series.label(k) == Some(v))
            })
            .map(|(_, s)| s.counter)
            .sum()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn live(&self) -> impl Iterator<Item = (&Arc<Series>, &Slot)> {
        self.slots
            .iter()
            .filter_map(|s| s.series.as_ref().map(|series| (series, s)))
    }

    /// Forgets series idle for longer than the configured expiry.
    pub fn expire(&mut self, now_ms: i64) {
        let ttl = self.limits.idle_expiry_ms;
        if ttl <= 0 {
            return;
        }
        let mut freed = false;
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(series) = &s.series else { continue };
            if now_ms - s.updated_ms <= ttl {
                continue;
            }
            if let Some(n) = self.series_per_metric.get_mut(series.name()) {
                *n = n.saturating_sub(1);
            }
            self.index.remove(series);
            if s.saved_id != NOT_SAVED {
                self.forgotten.push(s.saved_id);
            }
            s.series = None;
            s.generation = 0;
            s.changed = false;
            self.free.push(i as u32);
            freed = true;
        }
        if freed {
            self.epoch = self.epoch.wrapping_add(1);
            let slots = &self.slots;
            self.order.retain(|&i| slots[i as usize].series.is_some());
            self.changed.retain(|&i| slots[i as usize].series.is_some());
        }
    }

    /// The store at `at_ms`, expiring idle series first. The points share
    /// the store's series; only values are copied.
    pub fn snapshot(&mut self, at_ms: i64) -> Snapshot {
        self.expire(at_ms);
        let n = self.len() as f64;
        self.set_now(at_ms);
        let mut h = self.series_gauge;
        self.set_at(&mut h, SERIES.name, &[], n);
        self.series_gauge = h;
        if !self.sorted {
            let slots = &self.slots;
            self.order
                .sort_unstable_by(|&a, &b| slots[a as usize].series.cmp(&slots[b as usize].series));
            self.sorted = true;
        }
        let points = self
            .order
            .iter()
            .map(|&i| {
                let s = &self.slots[i as usize];
                Point {
                    series: s.series.clone().unwrap_or_default(),
                    value: s.value(),
                    start_ms: s.start_ms,
                }
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
        self.live()
            .filter(|(_, s)| s.kind == Kind::Counter)
            .map(|(series, s)| SavedCounter {
                series: Series::clone(series),
                value: s.counter,
                start_ms: s.start_ms,
            })
            .collect()
    }

    /// Restores counters from the state file (before any source runs).
    pub fn restore_counters(&mut self, saved: Vec<SavedCounter>) {
        for c in saved {
            self.restore_counter(c.series, c.value, c.start_ms, NOT_SAVED);
        }
    }

    /// Restores one counter under the id the state file knows it by.
    /// The series was rewritten by the label rules before it was saved, so it is
    /// kept as it is (a hash is not applied twice); a `top` rule promotes its
    /// value again while there is room.
    pub fn restore_counter(&mut self, series: Series, value: u64, start_ms: i64, saved_id: u32) {
        if !self.rules.is_empty() {
            let mut owned: Vec<(String, String)> = series
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.rules
                .apply(series.name(), &mut owned, self.now_ms, Use::Restore);
        }
        if let Some(h) = self.handle_of(series, Kind::Counter) {
            let s = &mut self.slots[h.slot as usize];
            s.counter = value;
            s.start_ms = start_ms;
            if h.fold == 0 {
                s.saved_id = saved_id;
            }
        }
    }

    /// Counters changed since the last call, with the ids expiry forgot. The
    /// state file calls this to write only what moved, then gives new
    /// counters their ids with [`Store::set_saved_id`].
    pub fn take_changes(&mut self) -> (Vec<Changed>, Vec<u32>) {
        let mut out = Vec::with_capacity(self.changed.len());
        for i in std::mem::take(&mut self.changed) {
            let s = &mut self.slots[i as usize];
            s.changed = false;
            if let Some(series) = &s.series {
                out.push(Changed {
                    slot: SlotRef {
                        slot: i,
                        generation: s.generation,
                    },
                    saved_id: s.saved_id,
                    series: series.clone(),
                    value: s.counter,
                    start_ms: s.start_ms,
                });
            }
        }
        (out, std::mem::take(&mut self.forgotten))
    }

    /// Marks every counter changed and forgets all ids (the state file starts over).
    pub fn mark_all_changed(&mut self) {
        self.changed.clear();
        self.forgotten.clear();
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.saved_id = NOT_SAVED;
            if s.series.is_some() && s.kind == Kind::Counter {
                s.changed = true;
                self.changed.push(i as u32);
            }
        }
    }

    /// Records the id the state file gave a counter.
    pub fn set_saved_id(&mut self, slot: SlotRef, id: u32) {
        if let Some(s) = self.slot_mut(slot) {
            s.saved_id = id;
        }
    }

    fn slot_mut(&mut self, r: SlotRef) -> Option<&mut Slot> {
        self.slots
            .get_mut(r.slot as usize)
            .filter(|s| s.generation == r.generation && s.series.is_some())
    }

    /// Puts changes back after a failed write, so the next one carries them.
    pub fn unwrite(&mut self, changed: &[Changed], forgotten: Vec<u32>) {
        for c in changed {
            if let Some(s) = self.slot_mut(c.slot)
                && !s.changed
            {
                s.changed = true;
                self.changed.push(c.slot.slot);
            }
        }
        self.forgotten.extend(forgotten);
    }
}

impl Slot {
    fn value(&self) -> Value {
        match self.kind {
            Kind::Counter => Value::Counter(self.counter),
            Kind::Gauge => Value::Gauge(f64::from_bits(self.counter)),
        }
    }
}

impl Default for Series {
    fn default() -> Series {
        Series::new("", &[])
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
            rules: Vec::new(),
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
        assert_eq!(s.sum(FOLDED_METRIC, &[("metric", "m_total")]), 3);
        // Everything idles out; the next update through the old handle gets a real series.
        s.set_now(5_000);
        s.snapshot(5_000);
        s.inc_at(&mut h, "m_total", &[("ip", "b")], 1);
        assert_eq!(s.sum("m_total", &[("ip", "b")]), 1);
        assert_eq!(s.sum("m_total", &[(OVERFLOW_LABEL, "true")]), 0);
    }
}
