//! The leading zero: makes a new counter's first increment visible to `increase()`.
//!
//! Prometheus' `increase()`/`rate()` only count what happens between two
//! samples of a series, and VictoriaMetrics assumes a new series started from
//! 0 only while its first value is below 10 × (its next delta + 1). A series
//! rme creates with its first events already in it (a new jail's first bans,
//! an attacker's one ban) is therefore lost, or part of it. So on its first
//! push a counter series born while rme watches carries `[0 @ zero_ts, value @ t]`
//! (Prometheus' own created-timestamp zero, written by the sender).
//!
//! The rules (design brief remote-write-2.md §7.3), per sink:
//! - `zero_ts` lies strictly after everything this sink put in a snapshot
//!   before (its *watermark*: the previous snapshot's time and the start of
//!   every series in it), and never more than [`MAX_ZERO_AGE_MS`] before `t`,
//!   which keeps it inside Prometheus' out-of-bounds window (about 1 h).
//! - Only series whose store start time lies after the watermark are new; the
//!   sink's first snapshot (a fresh state, a new sink, an upgrade from an rme
//!   without this) writes none: its series come from reading a backlog that
//!   existed before, and would all look like one spike.
//! - Each spooled body's note says which series got a zero in it and the
//!   watermark it moved to; after a crash before the state file caught up,
//!   the notes of what is still spooled are replayed, so a zero is never
//!   written twice nor after a real sample of its series.
//! - Gauges never get one. `first_increment = "none"` turns it off.
//!
//! A series whose start time is not after the watermark (a clock stepped back,
//! a series made in the same millisecond as the snapshot) gets no zero: it is
//! then pushed as before this existed, never with a zero too many.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::store::{Point, Series, Snapshot, Value};

/// The oldest a zero may be, before the sample it precedes: half of
/// Prometheus' out-of-bounds window (a zero 3 h old made Prometheus 3.5.3
/// refuse the whole request).
pub const MAX_ZERO_AGE_MS: i64 = 30 * 60 * 1000;

/// What a sink writes before a new counter series' first value (`first_increment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstIncrement {
    /// A zero sample (OTLP: a zero data point) just after the sink's previous snapshot.
    #[default]
    Zero,
    /// Nothing: a new series' first value is invisible to Prometheus' `increase()`.
    None,
}

/// What the state file keeps of a sink's zeros.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Saved {
    /// See [`Zeros::watermark`].
    watermark_ms: Option<i64>,
}

/// A spooled body's note: what became true when it was spooled.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Note {
    watermark_ms: i64,
    #[serde(default)]
    zeroed: Vec<Series>,
}

/// One sink's zero bookkeeping.
#[derive(Debug, Default)]
pub struct Zeros {
    mode: FirstIncrement,
    /// The latest of the previous snapshot's time and its series' start
    /// times; `None` before this sink's first snapshot.
    watermark: Option<i64>,
    /// Series given a zero in bodies still spooled at start (replayed notes):
    /// they may come back with a new start time after a crash.
    announced: HashSet<Series>,
}

impl Zeros {
    pub fn new(mode: FirstIncrement) -> Zeros {
        Zeros {
            mode,
            ..Zeros::default()
        }
    }

    /// When the zero before `p`'s value at `at_ms` goes, if it gets one.
    pub fn zero_ms(&self, p: &Point, at_ms: i64) -> Option<i64> {
        if self.mode == FirstIncrement::None || !matches!(p.value, Value::Counter(_)) {
            return None;
        }
        let watermark = self.watermark?;
        if p.start_ms <= watermark || self.announced.contains(&*p.series) {
            return None;
        }
        let zero = (watermark + 1).max(at_ms - MAX_ZERO_AGE_MS);
        (zero < at_ms).then_some(zero)
    }

    /// The watermark after `snap`: every series in it is known to the receiver from now on.
    pub fn after(&self, snap: &Snapshot) -> i64 {
        snap.points
            .iter()
            .map(|p| p.start_ms)
            .fold(snap.at_ms, i64::max)
            .max(self.watermark.unwrap_or(i64::MIN))
    }

    /// Moves the watermark once a snapshot's bodies are made.
    pub fn advance(&mut self, watermark: i64) {
        self.watermark = Some(watermark);
    }

    /// The note spooled with a body: the watermark and the series zeroed in it.
    pub fn note(watermark: i64, zeroed: Vec<Series>) -> Vec<u8> {
        serde_json::to_vec(&Note {
            watermark_ms: watermark,
            zeroed,
        })
        .unwrap_or_default()
    }

    /// Applies the note of a body still spooled (after [`Zeros::restore`]).
    pub fn replay(&mut self, note: &[u8]) {
        let Ok(note) = serde_json::from_slice::<Note>(note) else {
            return;
        };
        self.watermark = Some(self.watermark.unwrap_or(i64::MIN).max(note.watermark_ms));
        self.announced.extend(note.zeroed);
    }

    /// The state file's part.
    pub fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            watermark_ms: self.watermark,
        })
        .unwrap_or_default()
    }

    /// Takes back [`Zeros::save`] (at start, and when a flush is taken back).
    pub fn restore(&mut self, state: serde_json::Value) {
        if let Ok(s) = serde_json::from_value::<Saved>(state) {
            self.watermark = s.watermark_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn point(name: &str, value: Value, start_ms: i64) -> Point {
        Point {
            series: Arc::new(Series::new(name, &[("jail", "sshd")])),
            value,
            start_ms,
        }
    }

    fn snap(at_ms: i64, points: Vec<Point>) -> Snapshot {
        Snapshot {
            at_ms,
            points,
            ..Snapshot::default()
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_new_counter_gets_its_zero_just_after_the_previous_snapshot_and_only_once() {
        let mut z = Zeros::new(FirstIncrement::Zero);
        let old = point("a_total", Value::Counter(3), 1_000);
        // the sink's first snapshot: a backlog, no zero
        assert_eq!(z.zero_ms(&old, 5 * MIN), None);
        z.advance(z.after(&snap(5 * MIN, vec![old.clone()])));
        let new = point("b_total", Value::Counter(12), 7 * MIN);
        assert_eq!(z.zero_ms(&new, 10 * MIN), Some(5 * MIN + 1));
        assert_eq!(z.zero_ms(&old, 10 * MIN), None);
        z.advance(z.after(&snap(10 * MIN, vec![old.clone(), new.clone()])));
        // the second push of the same series: no zero
        assert_eq!(z.zero_ms(&new, 15 * MIN), None);
    }

    #[test]
    fn gauges_and_first_increment_none_get_no_zero() {
        let mut z = Zeros::new(FirstIncrement::Zero);
        z.advance(MIN);
        assert_eq!(
            z.zero_ms(&point("g", Value::Gauge(1.0), 2 * MIN), 3 * MIN),
            None
        );
        let mut none = Zeros::new(FirstIncrement::None);
        none.advance(MIN);
        let c = point("c_total", Value::Counter(1), 2 * MIN);
        assert_eq!(none.zero_ms(&c, 3 * MIN), None);
        assert_eq!(z.zero_ms(&c, 3 * MIN), Some(MIN + 1));
    }

    #[test]
    fn after_a_long_downtime_the_zero_is_at_most_30_minutes_old() {
        let mut z = Zeros::new(FirstIncrement::Zero);
        z.advance(0);
        let c = point("c_total", Value::Counter(1), 179 * MIN);
        assert_eq!(z.zero_ms(&c, 180 * MIN), Some(150 * MIN));
    }

    #[test]
    fn a_series_started_before_the_watermark_gets_none() {
        // a series made after the snapshot's time but before the snapshot was
        // taken is in it: its start moves the watermark
        let mut z = Zeros::new(FirstIncrement::Zero);
        z.advance(MIN);
        let racing = point("r_total", Value::Counter(1), 2 * MIN + 5);
        z.advance(z.after(&snap(2 * MIN, vec![racing.clone()])));
        assert_eq!(z.zero_ms(&racing, 3 * MIN), None);
        // no room between the watermark and the sample: no zero
        let late = point("l_total", Value::Counter(1), 2 * MIN + 6);
        assert_eq!(z.zero_ms(&late, 2 * MIN + 6), None);
    }

    #[test]
    fn replayed_notes_keep_a_crashed_flushs_zeros_from_being_written_again() {
        let series = Series::new("b_total", &[("jail", "sshd")]);
        let note = Zeros::note(10 * MIN, vec![series.clone()]);
        // the state file from before that flush
        let mut before = Zeros::new(FirstIncrement::Zero);
        before.advance(5 * MIN);
        let mut z = Zeros::new(FirstIncrement::Zero);
        z.restore(before.save());
        z.replay(&note);
        // the same series, made again by re-reading the same lines after the crash
        let again = point("b_total", Value::Counter(12), 11 * MIN);
        assert_eq!(z.zero_ms(&again, 12 * MIN), None);
        let other = point("c_total", Value::Counter(1), 11 * MIN);
        assert_eq!(z.zero_ms(&other, 12 * MIN), Some(10 * MIN + 1));
        // garbage or old notes change nothing
        z.replay(b"not json");
        assert_eq!(z.zero_ms(&other, 12 * MIN), Some(10 * MIN + 1));
    }

    #[test]
    fn state_without_a_watermark_writes_no_zero() {
        let mut z = Zeros::new(FirstIncrement::Zero);
        z.restore(serde_json::json!({}));
        assert_eq!(
            z.zero_ms(&point("c_total", Value::Counter(1), MIN), 2 * MIN),
            None
        );
    }
}
