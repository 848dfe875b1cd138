//! Groups audit records into events by `(node, time, serial)` with bounded memory.
//!
//! The tricky point is deciding when an event is complete without a clock. An
//! event is counted as soon as its labels are known: at its SYSCALL record
//! (kernel events log their other records before it), at a leading record that
//! carries `res=` (user-space messages have no EOE), or at EOE. Events that show
//! none of these (lone kernel records) wait: they are counted once a record more
//! than [`WINDOW_MS`] newer arrives, or when more than [`MAX_OPEN`] wait.
//! Counted events are remembered (up to [`MAX_OPEN`]) until their EOE, so late
//! auxiliary records join them instead of making new events.

use std::collections::{BTreeMap, HashMap};

use super::record::Outcome;

/// Events waiting to be counted, and counted events remembered, at most.
pub const MAX_OPEN: usize = 1024;
/// A waiting event is counted once a record this much newer (ms) was read.
pub const WINDOW_MS: u64 = 2000;

/// Records that only ever accompany another one, so never name an event.
const AUXILIARY: &[&str] = &[
    "PATH",
    "CWD",
    "EXECVE",
    "PROCTITLE",
    "SOCKADDR",
    "SOCKETCALL",
    "EOE",
    "OBJ_PID",
    "BPRM_FCAPS",
    "CAPSET",
    "MMAP",
    "FD_PAIR",
    "IPC",
    "IPC_SET_PERM",
    "MQ_OPEN",
    "MQ_SENDRECV",
    "MQ_NOTIFY",
    "MQ_GETSETATTR",
    "KERN_MODULE",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    pub node: String,
    pub ms: u64,
    pub serial: u32,
}

/// What an event is counted as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    /// Type of the first non-auxiliary record (of the first record when all are).
    pub kind: String,
    /// SYSCALL rule key, `(none)` without a SYSCALL or a key.
    pub key: String,
    pub outcome: Outcome,
}

/// One record, as far as grouping needs it.
pub struct Part<'a> {
    pub kind: &'a str,
    /// `res=` of the record, if any.
    pub res: Option<Outcome>,
    /// SYSCALL only: its rule key and `success=`.
    pub syscall: Option<(String, Option<Outcome>)>,
}

#[derive(Debug)]
struct Event {
    arrival: u64,
    first: String,
    primary: Option<String>,
    key: Option<String>,
    outcome: Option<Outcome>,
    counted: bool,
}

impl Event {
    fn counted_as(&self) -> Counted {
        Counted {
            kind: self.primary.clone().unwrap_or_else(|| self.first.clone()),
            key: self.key.clone().unwrap_or_else(|| "(none)".into()),
            outcome: self.outcome.unwrap_or(Outcome::Unknown),
        }
    }
}

/// The open events.
#[derive(Debug, Default)]
pub struct Events {
    events: HashMap<EventId, Event>,
    /// Not yet counted, by arrival.
    waiting: BTreeMap<u64, EventId>,
    /// Counted, kept for their late records, by arrival.
    done: BTreeMap<u64, EventId>,
    arrivals: u64,
}

impl Events {
    /// Adds a record; returns the events it completed (its own, and any pushed out).
    pub fn add(&mut self, id: EventId, part: Part<'_>) -> Vec<Counted> {
        let now_ms = id.ms;
        let mut out = Vec::new();
        let fresh = !self.events.contains_key(&id);
        if fresh {
            self.arrivals += 1;
            let e = Event {
                arrival: self.arrivals,
                first: part.kind.to_string(),
                primary: None,
                key: None,
                outcome: None,
                counted: false,
            };
            self.waiting.insert(self.arrivals, id.clone());
            self.events.insert(id.clone(), e);
        }
        let Some(event) = self.events.get_mut(&id) else {
            return out;
        };
        if event.primary.is_none() && !AUXILIARY.contains(&part.kind) {
            event.primary = Some(part.kind.to_string());
        }
        let decides = match part.syscall {
            Some((key, success)) => {
                event.key = Some(key);
                event.outcome = event.outcome.or(success);
                true
            }
            None => part.kind == "EOE" || (fresh && part.res.is_some()),
        };
        event.outcome = event.outcome.or(part.res);
        if decides && !event.counted {
            event.counted = true;
            out.push(event.counted_as());
            let arrival = event.arrival;
            self.waiting.remove(&arrival);
            self.done.insert(arrival, id.clone());
        }
        if part.kind == "EOE" {
            self.forget(&id);
        }
        self.evict(now_ms, &mut out);
        out
    }

    /// Counts waiting events over the cap or older than the window; forgets
    /// counted ones over the cap. Events newer than `now_ms` (a clock stepped
    /// back) only leave by the cap.
    fn evict(&mut self, now_ms: u64, out: &mut Vec<Counted>) {
        while let Some((_, id)) = self.waiting.first_key_value() {
            if self.waiting.len() <= MAX_OPEN && id.ms.saturating_add(WINDOW_MS) >= now_ms {
                break;
            }
            let id = id.clone();
            if let Some(e) = self.forget(&id) {
                out.push(e.counted_as());
            }
        }
        while self.done.len() > MAX_OPEN {
            if let Some((_, id)) = self.done.pop_first() {
                self.events.remove(&id);
            }
        }
    }

    fn forget(&mut self, id: &EventId) -> Option<Event> {
        let e = self.events.remove(id)?;
        self.waiting.remove(&e.arrival);
        self.done.remove(&e.arrival);
        Some(e).filter(|e| !e.counted)
    }

    /// Counts every waiting event and forgets all, as at the end of a file.
    pub fn drain(&mut self) -> Vec<Counted> {
        let ids: Vec<EventId> = self.waiting.values().cloned().collect();
        let out = ids
            .iter()
            .filter_map(|id| self.forget(id))
            .map(|e| e.counted_as())
            .collect();
        *self = Events {
            arrivals: self.arrivals,
            ..Events::default()
        };
        out
    }

    /// Events not yet counted.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Events held in memory, counted or not.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, serial: u32) -> EventId {
        EventId {
            node: String::new(),
            ms,
            serial,
        }
    }

    fn part(kind: &str) -> Part<'_> {
        Part {
            kind,
            res: None,
            syscall: None,
        }
    }

    fn syscall(key: &str, ok: bool) -> Part<'static> {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failed
        };
        Part {
            kind: "SYSCALL",
            res: None,
            syscall: Some((key.to_string(), Some(outcome))),
        }
    }

    #[test]
    fn late_auxiliary_records_join_their_counted_event() {
        let mut ev = Events::default();
        assert!(ev.add(id(1000, 60), syscall("k", true)).len() == 1);
        assert!(ev.add(id(9000, 61), syscall("k", false)).len() == 1);
        // PATH of 60 arrives 8 s of log time later: joins 60, no new event
        assert!(ev.add(id(1000, 60), part("PATH")).is_empty());
        assert_eq!(ev.waiting(), 0);
        assert!(ev.add(id(1000, 60), part("EOE")).is_empty());
        assert_eq!(ev.held(), 1);
    }

    #[test]
    fn held_events_stay_bounded() {
        let mut ev = Events::default();
        let mut counted = 0;
        for serial in 0..(MAX_OPEN as u32 * 3) {
            counted += ev.add(id(5000, serial), part("PATH")).len();
            counted += ev
                .add(id(5000, serial + 1_000_000), syscall("(none)", true))
                .len();
            assert!(ev.waiting() <= MAX_OPEN && ev.held() <= 2 * MAX_OPEN);
        }
        assert_eq!(counted, 2 * MAX_OPEN + 3 * MAX_OPEN);
        assert_eq!(ev.drain().len(), MAX_OPEN);
        assert_eq!(ev.held(), 0);
    }

    #[test]
    fn a_clock_stepped_back_does_not_split_events() {
        let mut ev = Events::default();
        ev.add(id(4_000_000, 1), part("ANOM_PROMISCUOUS"));
        // the clock steps back an hour; the new event is grouped normally
        ev.add(id(400_001, 2), part("AVC"));
        ev.add(id(400_001, 2), syscall("(none)", false));
        let rest = ev.add(id(400_001, 2), part("PATH"));
        assert!(rest.is_empty());
        let left = ev.drain();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].kind, "ANOM_PROMISCUOUS");
    }
}
