//! Counting for rate-limited warnings: per key, the first `burst` in each
//! window pass, the rest are counted, and the counts are taken once per window
//! for one summary line each. No clock of its own (the caller passes `now`),
//! so it is tested without sleeping; `logging/mod.rs` wires it to tracing.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Per-key windows of at most `burst` admitted events.
#[derive(Debug)]
pub struct Limiter<K> {
    burst: u32,
    window: Duration,
    keys: HashMap<K, Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(burst: u32, window: Duration) -> Limiter<K> {
        Limiter {
            burst,
            window,
            keys: HashMap::new(),
        }
    }

    /// Whether an event of `key` at `now` may pass; a suppressed one is counted.
    /// Returns `(admitted, first_suppressed_in_window)`.
    pub fn admit(&mut self, key: &K, now: Instant) -> (bool, bool) {
        let w = match self.keys.get_mut(key) {
            Some(w) => w,
            None => self.keys.entry(key.clone()).or_insert(Window {
                start: now,
                passed: 0,
                suppressed: 0,
            }),
        };
        if now.saturating_duration_since(w.start) >= self.window {
            w.start = now;
            w.passed = 0;
        }
        if w.passed < self.burst {
            w.passed += 1;
            return (true, false);
        }
        w.suppressed += 1;
        (false, w.suppressed == 1)
    }

    /// The keys with suppressed events and how many, zeroing them; keys idle
    /// for a whole window are forgotten, so the map holds only live keys.
    pub fn take_suppressed(&mut self, now: Instant) -> Vec<(K, u64)> {
        let mut out = Vec::new();
        let window = self.window;
        self.keys.retain(|k, w| {
            if w.suppressed > 0 {
                out.push((k.clone(), std::mem::take(&mut w.suppressed)));
                return true;
            }
            now.saturating_duration_since(w.start) < window
        });
        out
    }

    /// The window length, i.e. how often summaries are due.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_burst_passes_then_counted_per_key_and_window() {
        let t0 = Instant::now();
        let mut l = Limiter::new(3, Duration::from_secs(60));
        let passed: Vec<bool> = (0..10).map(|_| l.admit(&"a", t0).0).collect();
        assert_eq!(passed.iter().filter(|p| **p).count(), 3);
        assert_eq!(
            l.admit(&"b", t0),
            (true, false),
            "another key has its own budget"
        );
        assert_eq!(l.take_suppressed(t0), vec![("a", 7)]);
        assert_eq!(l.take_suppressed(t0), vec![], "counts are taken once");
        // the next window starts with a fresh budget
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(l.admit(&"a", t1), (true, false));
        l.admit(&"a", t1);
        l.admit(&"a", t1);
        assert_eq!(l.admit(&"a", t1), (false, true));
        assert_eq!(l.admit(&"a", t1), (false, false));
        // keys idle for a window are forgotten
        let t2 = t1 + Duration::from_secs(120);
        assert_eq!(l.take_suppressed(t2), vec![("a", 2)]);
        assert!(l.take_suppressed(t2).is_empty());
        assert!(l.keys.is_empty());
    }
}
