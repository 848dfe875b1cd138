//! The one metric store between sources and sinks.
//!
//! Each series is kept once: its name and labels packed into one [`Series`]
//! behind an `Arc`, found through a hash index, with its value in a slot of an
//! arena. A parser resolves a [`Handle`] once per distinct key (a jail; a
//! stream, filter and action) and then bumps the slot without allocating.
//! Everything that decides *which* series an update lands in happens when a
//! handle is made, not on every update: label rules (drop a label, keep an
//! IP's prefix; a rule may also add labels), label values cut to their bound,
//! the per-metric series cap that folds new series into overflow series (one
//! per jail, stream, …: [`FOLD_KEEPS`]), and a handle going stale when
//! idle expiry freed its series. Sinks and `/metrics` see a [`Snapshot`],
//! whose points share the store's `Arc<Series>` instead of copying labels.

pub mod series;
pub mod shared;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::labels::action::Use;
use crate::labels::rules::Rules;
pub use series::{Labels, Series};
pub use snapshot::{Kind, Meta, Metric, Point, Snapshot, Value};

/// Limits that keep the store bounded, and the label rules; built by the
/// plan (`StoreConfig::limits`), which compiles the rules.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_series_per_metric: usize,
    /// Longer label values are cut (see [`cut_value`]) before label rules,
    /// and counted in `rme_label_values_truncated_total{metric}`.
    pub max_label_value_bytes: usize,
    /// Series not updated for this long are forgotten (0 = never).
    pub idle_expiry_ms: i64,
    /// The label rules, compiled.
    pub rules: Rules,
    /// Metrics not kept at all: their updates are ignored.
    pub drop_metrics: BTreeSet<String>,
}

/// `max_series_per_metric` when the config does not say.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// `max_label_value_bytes` when the config does not say: an email address
/// (254 bytes at most) fits, and so does every IP address.
pub const DEFAULT_MAX_LABEL_VALUE_BYTES: usize = 256;
/// The least `max_label_value_bytes` may be: the marker and hash a cut value
/// ends with, and a prefix.
pub const MIN_LABEL_VALUE_BYTES: usize = 32;
/// Labels a series keeps when the cap folds it (see `Store::fold_of`): their
/// values are names from the programs' configs (jails, streams, filters,
/// actions, audit keys) or from a fixed vocabulary (`result`, `type`, …), not
/// per-attacker values such as `ip`, a pattern label or `country`, which go.
pub const FOLD_KEEPS: &[&str] = &[
    "action", "cause", "event", "filter", "jail", "key", "kind", "logger", "metric", "moment",
    "reason", "result", "sink", "source", "state", "stream", "type",
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_metric: DEFAULT_MAX_SERIES,
            max_label_value_bytes: DEFAULT_MAX_LABEL_VALUE_BYTES,
            idle_expiry_ms: 0,
            rules: Rules::default(),
            drop_metrics: BTreeSet::new(),
        }
    }
}

/// Label put on the series that absorbs what the cap refused.
pub const OVERFLOW_LABEL: &str = "rme_overflow";
pub const FOLDED: Metric = Metric::counter(
    "rme_series_folded_total",
    "Updates folded into an overflow series because a metric hit max_series_per_metric.",
);
pub const SERIES: Metric = Metric::gauge("rme_series", "Series held in the store.");
pub const TRUNCATED: Metric = Metric::counter(
    "rme_label_values_truncated_total",
    "Label values cut to max_label_value_bytes when a series was made, by metric.",
);

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
            limits,
            now_ms: now_ms(),
            next_generation: 1,
            sorted: true,
            ..Store::default()
        };
        store.describe_all(&[FOLDED, SERIES, TRUNCATED]);
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
        let max = self.limits.max_label_value_bytes;
        let long = labels.iter().filter(|(_, v)| v.len() > max).count();
        if long > 0 {
            let cut: Vec<(&str, String)> = labels
                .iter()
                .map(|&(k, v)| (k, cut_value(v, max)))
                .collect();
            let cut: Vec<(&str, &str)> = cut.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let h = self.handle(name, kind, &cut);
            if name != TRUNCATED.name {
                self.inc(
                    Series::new(TRUNCATED.name, &[("metric", name)]),
                    long as u64,
                );
            }
            return h;
        }
        let series = if self.limits.rules.is_empty() {
            Series::new(name, labels)
        } else {
            let mut owned: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let decided = (self.limits.rules).apply(name, &mut owned, self.now_ms, Use::Update);
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
                    let over = self.fold_of(&series, count);
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

    /// The series a new one folds into past the cap: its [`FOLD_KEEPS`] labels
    /// (jail, stream, filter, …) and `rme_overflow="true"`, so sums by those
    /// labels stay right. Each such label set is one more series of the metric;
    /// once the metric holds a tenth of its cap more (at least 100), new label
    /// sets fold into the one `{rme_overflow="true"}` series, so a metric never
    /// holds more than `max_series_per_metric * 1.1 + 1` (or `+ 101`) series.
    fn fold_of(&self, series: &Series, count: usize) -> Series {
        let name = series.name();
        let kept: Vec<(&str, &str)> = (series.labels())
            .filter(|(k, _)| FOLD_KEEPS.contains(k))
            .chain([(OVERFLOW_LABEL, "true")])
            .collect();
        let over = Series::new(name, &kept);
        let max = self.limits.max_series_per_metric;
        let room = max.saturating_add((max / 10).max(100));
        if kept.len() == 1 || count < room || self.index.contains_key(&over) {
            over
        } else {
            Series::new(name, &[(OVERFLOW_LABEL, "true")])
        }
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

    /// Restores one counter under the id the state file knows it by.
    /// The series was rewritten by the label rules before it was saved, so it is
    /// kept as it is (a hash is not applied twice); a `top` rule promotes its
    /// value again while there is room.
    pub fn restore_counter(&mut self, series: Series, value: u64, start_ms: i64, saved_id: u32) {
        // A value saved under a larger bound (or by an older rme) is cut as a new one is.
        let max = self.limits.max_label_value_bytes;
        let series = if series.labels().any(|(_, v)| v.len() > max) {
            let cut: Vec<(&str, String)> = (series.labels())
                .map(|(k, v)| (k, cut_value(v, max)))
                .collect();
            let cut: Vec<(&str, &str)> = cut.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Series::new(series.name(), &cut)
        } else {
            series
        };
        let rules = &mut self.limits.rules;
        rules.remember_restored(series.name(), series.labels(), self.now_ms);
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

/// Wall-clock now in unix ms (moved by [`crate::failpoint::clock_offset_ms`]
/// in a debug build under test).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + crate::failpoint::clock_offset_ms()
}

/// `value` when it is at most `max` bytes; else its first bytes (cut at a
/// character boundary), `…` and the CRC-32 of the whole value in hex, `max`
/// bytes at most: values that differ only after the cut stay apart, and the
/// marker says the value was cut (VictoriaMetrics cuts long values too, at
/// 4 KiB; Mimir refuses series with values over 2 KiB).
pub fn cut_value(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let hash = format!("\u{2026}{:08x}", crc32fast::hash(value.as_bytes()));
    let mut end = max.saturating_sub(hash.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{hash}", &value[..end])
}
