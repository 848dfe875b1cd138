//! `action = "top"`: the k values of a label with the most updates keep their own
//! series; every other value is counted under `<label>="other"`.
//!
//! One [`Family`] per metric and remaining labels (e.g. `reaction_match_total`
//! of stream `ssh`, filter `failedlogin`) decides, per update, whether a value
//! has its own series. It is a Space-Saving heavy-hitter sketch (Metwally et
//! al., 2005) of `16·k` counters, so its memory is O(k) whatever the number of
//! distinct values, plus a set of at most k *promoted* values.
//!
//! Semantics (the README repeats them next to the rule):
//! - Every update goes to exactly one series, the value's own or `"other"`, so
//!   the sum over the label always equals the total without it.
//! - Counters stay monotonic. A value promoted later starts its own series at 0
//!   (its earlier updates stay in `"other"`); a value demoted stops moving and
//!   expires with the store's idle expiry (remote-write ends it with a stale marker).
//! - A value is promoted only when the sketch is sure of it: it has at least
//!   [`MIN_COUNT`] updates in the window that are certainly its own (count minus
//!   the sketch's error), and fewer unpromoted values than there are free places
//!   may be ahead of it (counts taken as Poisson: a rival's count plus two
//!   standard deviations reaches this one's minus two).
//! - When k values are promoted, a newcomer replaces the promoted value with the
//!   fewest updates if it is surely ahead of it in the same sense, and only if
//!   that value has kept its series for at least one full window. So a family
//!   holds at most k moving series plus `"other"`, and at most k new series
//!   appear per window.
//! - The window (`window_secs`, default 3600) halves every count at each window
//!   boundary, so old attackers fade; `window_secs = 0` never decays and never
//!   demotes: the first k values that lead keep their series.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Updates a value needs in the window, certainly its own, before it is promoted.
pub const MIN_COUNT: u64 = 3;

/// Sketch counters per promoted value: with 16·k, a heavy-tailed stream of
/// 100,000 distinct values still finds its true top 10 for k = 20.
const CAPACITY_PER_K: usize = 16;

/// The value under which every unpromoted value is counted.
pub const OTHER: &str = "other";

/// The keys of a `top` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopConfig {
    /// Values per family that keep their own series. Default 20.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Counts halve every this many seconds; 0 = never (and never demote). Default 3600.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
}

const fn default_k() -> usize {
    20
}
const fn default_window_secs() -> u64 {
    3600
}

impl Default for TopConfig {
    fn default() -> Self {
        TopConfig {
            k: default_k(),
            window_secs: default_window_secs(),
        }
    }
}

impl TopConfig {
    /// Checks the keys; `key` names the rule, e.g. `store.labels[0]`.
    pub fn validate(&self, key: &str) -> Result<(), crate::invalid::Invalid> {
        crate::invalid::Invalid::at_least(format!("{key}.k"), self.k as u64, 1)?;
        if self.k > 10_000 {
            return Err(crate::invalid::Invalid::new(
                format!("{key}.k"),
                "must be at most 10000 (each value is a series)",
            ));
        }
        Ok(())
    }

    /// An empty family for this rule.
    pub fn family(&self) -> Family {
        Family::new(self.k, self.window_secs.saturating_mul(1000) as i64)
    }
}

#[derive(Clone, Debug)]
struct Slot {
    value: Box<str>,
    /// Updates in the window (decayed), an upper bound of the true number.
    count: u64,
    /// How much of `count` may belong to values this slot held before.
    error: u64,
    /// Promoted: has its own series; never evicted from the sketch.
    promoted: bool,
    /// The window in which it was promoted.
    since: i64,
}

/// The sketch of one family: which values have their own series.
#[derive(Clone, Debug)]
pub struct Family {
    k: usize,
    capacity: usize,
    window_ms: i64,
    epoch: i64,
    slots: Vec<Slot>,
    index: HashMap<Box<str>, u32>,
    /// (count, slot) of the unpromoted slots: the first is evicted, the last leads.
    unpromoted: BTreeSet<(u64, u32)>,
    promoted: Vec<u32>,
}

impl Family {
    pub fn new(k: usize, window_ms: i64) -> Family {
        let k = k.max(1);
        Family {
            k,
            capacity: k * CAPACITY_PER_K,
            window_ms,
            epoch: 0,
            slots: Vec::new(),
            index: HashMap::new(),
            unpromoted: BTreeSet::new(),
            promoted: Vec::new(),
        }
    }

    /// Counts one update of `value` at `now_ms`; true when it goes to the value's
    /// own series, false for `"other"`. A promoted value costs a hash lookup and
    /// an addition, no allocation.
    pub fn observe(&mut self, value: &str, now_ms: i64) -> bool {
        self.roll(now_ms);
        let i = match self.index.get(value) {
            Some(&i) if self.slots[i as usize].promoted => {
                let s = &mut self.slots[i as usize];
                s.count = s.count.saturating_add(1);
                return true;
            }
            Some(&i) => {
                let s = &mut self.slots[i as usize];
                self.unpromoted.remove(&(s.count, i));
                s.count = s.count.saturating_add(1);
                i
            }
            None => self.admit(value),
        };
        if self.promote(i) {
            return true;
        }
        self.unpromoted.insert((self.slots[i as usize].count, i));
        false
    }

    /// Whether `value` has its own series now (no update counted).
    pub fn is_promoted(&self, value: &str) -> bool {
        self.index
            .get(value)
            .is_some_and(|&i| self.slots[i as usize].promoted)
    }

    /// Promotes `value` without evidence, if there is room: for series that a
    /// restart restores, so that a value keeps the series it had. False when full.
    pub fn seed(&mut self, value: &str, now_ms: i64) -> bool {
        self.roll(now_ms);
        if self.is_promoted(value) {
            return true;
        }
        if self.promoted.len() >= self.k {
            return false;
        }
        let i = match self.index.get(value) {
            Some(&i) => {
                self.unpromoted.remove(&(self.slots[i as usize].count, i));
                i
            }
            None => {
                let i = self.admit(value);
                // admit counted one update; a seed is none
                self.slots[i as usize].count -= 1;
                i
            }
        };
        self.pin(i);
        true
    }

    /// The promoted values, in no particular order.
    pub fn promoted(&self) -> impl Iterator<Item = &str> {
        self.promoted
            .iter()
            .map(|&i| &*self.slots[i as usize].value)
    }

    /// Takes a slot for a value the sketch does not hold, counting one update:
    /// a free slot, else the unpromoted slot with the fewest updates (whose
    /// count becomes the newcomer's error). The slot is left out of `unpromoted`.
    fn admit(&mut self, value: &str) -> u32 {
        let value: Box<str> = value.into();
        if self.slots.len() < self.capacity {
            let i = self.slots.len() as u32;
            self.index.insert(value.clone(), i);
            self.slots.push(Slot {
                value,
                count: 1,
                error: 0,
                promoted: false,
                since: 0,
            });
            return i;
        }
        let (min, i) = self
            .unpromoted
            .pop_first()
            .expect("capacity exceeds k, so some slot is unpromoted");
        let s = &mut self.slots[i as usize];
        self.index.remove(&s.value);
        self.index.insert(value.clone(), i);
        *s = Slot {
            value,
            count: min.saturating_add(1),
            error: min,
            promoted: false,
            since: 0,
        };
        i
    }

    /// Decides whether slot `i` (just counted, out of `unpromoted`) is promoted now.
    fn promote(&mut self, i: u32) -> bool {
        let s = &self.slots[i as usize];
        let sure = s.count - s.error;
        if sure < MIN_COUNT {
            return false;
        }
        if self.promoted.len() < self.k {
            // surely among the k − promoted first of the unpromoted values
            let room = self.k - self.promoted.len();
            let rival = rival_floor(sure);
            let rivals = self.unpromoted.range((rival, 0)..).take(room).count();
            if rivals >= room {
                return false;
            }
            self.pin(i);
            return true;
        }
        if self.window_ms <= 0 {
            return false;
        }
        let epoch = self.epoch;
        let weakest = self
            .promoted
            .iter()
            .enumerate()
            .filter(|&(_, &p)| self.slots[p as usize].since + 1 < epoch)
            .min_by_key(|&(_, &p)| self.slots[p as usize].count);
        let Some((at, &w)) = weakest else {
            return false;
        };
        if self.slots[w as usize].count >= rival_floor(sure) {
            return false;
        }
        self.promoted.swap_remove(at);
        let ws = &mut self.slots[w as usize];
        ws.promoted = false;
        self.unpromoted.insert((ws.count, w));
        self.pin(i);
        true
    }

    fn pin(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        s.promoted = true;
        s.since = self.epoch;
        self.promoted.push(i);
    }

    /// At a window boundary, halves every count (once per window passed).
    fn roll(&mut self, now_ms: i64) {
        if self.window_ms <= 0 {
            return;
        }
        let epoch = now_ms.div_euclid(self.window_ms);
        if epoch <= self.epoch {
            return;
        }
        if self.slots.is_empty() {
            self.epoch = epoch;
            return;
        }
        let shift = (epoch - self.epoch).min(63) as u32;
        self.epoch = epoch;
        for s in &mut self.slots {
            s.count >>= shift;
            s.error >>= shift;
        }
        self.unpromoted = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.promoted)
            .map(|(i, s)| (s.count, i as u32))
            .collect();
    }
}

/// The smallest count a rival of a value `sure` times certainly seen may have and
/// still perhaps be ahead of it: counts are taken as Poisson, so a rival is one
/// whose count plus two standard deviations reaches `sure` minus two.
fn rival_floor(sure: u64) -> u64 {
    let low = sure as f64 - 2.0 * (sure as f64).sqrt();
    if low <= 0.0 {
        return 0;
    }
    // x + 2·√x = low  ⇔  √x = −1 + √(1 + low)
    let root = (1.0 + low).sqrt() - 1.0;
    (root * root).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values `v0`…`v{n-1}`, rank r seen `max(1, total / ((r+1)^s · H))` times,
    /// shuffled with a fixed seed: a heavy-tailed (Zipf) stream.
    fn zipf(n: usize, total: f64, s: f64, seed: u64) -> (Vec<String>, Vec<u64>) {
        let h: f64 = (1..=n).map(|r| 1.0 / (r as f64).powf(s)).sum();
        let counts: Vec<u64> = (1..=n)
            .map(|r| ((total / ((r as f64).powf(s) * h)) as u64).max(1))
            .collect();
        let mut stream = Vec::new();
        for (r, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                stream.push(format!("v{r}"));
            }
        }
        fastrand::Rng::with_seed(seed).shuffle(&mut stream);
        (stream, counts)
    }

    /// Feeds a stream, returning the per-series totals ("other" under OTHER).
    fn feed(f: &mut Family, stream: &[String], now: i64) -> HashMap<String, u64> {
        let mut series = HashMap::new();
        for v in stream {
            let key = if f.observe(v, now) { v.as_str() } else { OTHER };
            *series.entry(key.to_string()).or_default() += 1;
        }
        series
    }

    #[test]
    fn heavy_tail_keeps_the_true_top_and_nothing_is_lost() {
        let show = std::env::var_os("SHOW").is_some();
        let (stream, counts) = zipf(100_000, 300_000.0, 1.0, 7);
        let mut f = TopConfig::default().family();
        let series = feed(&mut f, &stream, 0);
        if show {
            let mut p: Vec<_> = f.promoted().collect();
            p.sort_by_key(|v| v[1..].parse::<u32>().unwrap_or(0));
            eprintln!("promoted {p:?}");
        }
        assert!(series.len() <= 21, "{} series", series.len());
        // promoted only when sure: the true top values, no lucky tail value
        assert!((10..=20).contains(&f.promoted().count()));
        for v in f.promoted() {
            assert!(
                v[1..].parse::<usize>().is_ok_and(|r| r < 40),
                "{v} promoted"
            );
        }
        for r in 0..10 {
            assert!(series.contains_key(&format!("v{r}")), "v{r} missing");
        }
        assert_eq!(series.values().sum::<u64>(), counts.iter().sum::<u64>());
        assert_eq!(series.values().sum::<u64>(), stream.len() as u64);
        // the leader was promoted early: most of its updates are its own
        assert!(
            series["v0"] > counts[0] / 2,
            "{} of {}",
            series["v0"],
            counts[0]
        );
    }

    #[test]
    fn a_value_needs_min_count_and_to_be_surely_ahead() {
        let mut f = Family::new(2, 0);
        assert!(!f.observe("a", 0));
        assert!(!f.observe("a", 0));
        assert!(f.observe("a", 0), "third update, and no rival");
        // b and c are neck and neck: neither is surely ahead for the one place left
        for _ in 0..5 {
            assert!(!f.observe("b", 0));
            assert!(!f.observe("c", 0));
        }
        // b pulls ahead: after enough updates it is surely ahead of c
        let steps = (1..=40).find(|_| f.observe("b", 0));
        assert!(steps.is_some_and(|n| n > 3), "{steps:?}");
        // full (k = 2) and window 0: c never gets a series
        for _ in 0..100 {
            assert!(!f.observe("c", 0));
        }
        assert!(f.is_promoted("a") && f.is_promoted("b") && !f.is_promoted("c"));
    }

    #[test]
    fn equal_values_all_fit_when_there_is_room() {
        let mut f = Family::new(5, 0);
        for _ in 0..3 {
            for v in ["a", "b", "c", "d", "e"] {
                f.observe(v, 0);
            }
        }
        assert_eq!(f.promoted().count(), 5);
    }

    #[test]
    fn a_newcomer_replaces_the_weakest_only_after_a_full_window() {
        let w = 1000;
        let mut f = Family::new(1, w);
        for _ in 0..5 {
            f.observe("old", 0);
        }
        assert!(f.is_promoted("old"));
        // same window, and the next one: "new" cannot take the slot
        for _ in 0..50 {
            assert!(!f.observe("new", 10));
        }
        for _ in 0..50 {
            assert!(!f.observe("new", w + 10));
        }
        // two windows later, "new" is surely above "old" (both halved)
        assert!(f.observe("new", 2 * w + 10));
        assert!(f.is_promoted("new") && !f.is_promoted("old"));
        // and "old" now counts under other
        assert!(!f.observe("old", 2 * w + 11));
    }

    #[test]
    fn windows_halve_counts() {
        let mut f = Family::new(1, 1000);
        for _ in 0..8 {
            f.observe("x", 0);
        }
        f.observe("x", 3500); // three windows later: 8 >> 3 = 1, then +1
        let s = &f.slots[f.index["x"] as usize];
        assert_eq!(s.count, 2);
    }

    #[test]
    fn the_sketch_stays_bounded() {
        let mut f = Family::new(3, 0);
        for i in 0..10_000 {
            f.observe(&format!("ip{i}"), 0);
        }
        assert_eq!(f.slots.len(), 3 * CAPACITY_PER_K);
        assert_eq!(f.index.len(), 3 * CAPACITY_PER_K);
        assert_eq!(f.promoted().count(), 0, "no value was seen 3 times");
    }

    #[test]
    fn seeded_values_keep_their_series() {
        let mut f = Family::new(2, 1000);
        assert!(f.seed("a", 0));
        assert!(f.seed("b", 0));
        assert!(!f.seed("c", 0), "full");
        assert!(f.observe("a", 1));
        assert!(!f.observe("c", 1));
        assert!(f.is_promoted("b"));
    }

    #[test]
    fn bad_k_names_the_key() {
        let c = TopConfig {
            k: 0,
            ..TopConfig::default()
        };
        let e = c.validate("store.labels[3]").unwrap_err();
        assert_eq!(e.key, "store.labels[3].k");
    }
}
