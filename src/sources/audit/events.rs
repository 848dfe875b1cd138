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
use std::sync::Arc;

use super::record::Outcome;

/// Events waiting to be counted, and counted events remembered, at most.
pub const MAX_OPEN: usize = 1024;
/// A waiting event is counted once a record this much newer (ms) was read.
pub const WINDOW_MS: u64 = 2000;

/// An event's identity. `node` is a hash of the `node=` name (0 without one):
/// records are grouped without a string per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    pub node: u64,
    pub ms: u64,
    pub serial: u32,
}

/// A record type name kept inline: the header parser admits at most
/// [`Kind::MAX`] bytes of `[A-Z0-9_]` (or `UNKNOWN[n]`), so no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    len: u8,
    bytes: [u8; Kind::MAX],
}

impl Kind {
    pub const MAX: usize = 40;

    /// `kind` cut to [`Kind::MAX`] bytes (at a char boundary).
    pub fn new(kind: &str) -> Kind {
        let mut len = kind.len().min(Kind::MAX);
        while !kind.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Kind::MAX];
        bytes[..len].copy_from_slice(&kind.as_bytes()[..len]);
        Kind {
            len: len as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        // Cut at a char boundary of a `&str` in `new`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// What an event is counted as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    /// Type of the first non-auxiliary record (of the first record when all are).
    pub kind: Kind,
    /// SYSCALL rule key; `None` (exported as `(none)`) without a SYSCALL or a key.
    pub key: Option<Arc<str>>,
    pub outcome: Outcome,
}

/// One record, as far as grouping needs it.
pub struct Part<'a> {
    pub kind: &'a str,
    /// `res=` of the record, if any.
    pub res: Option<Outcome>,
    /// SYSCALL only: its rule key (`None` for none) and `success=`.
    pub syscall: Option<(Option<Arc<str>>, Option<Outcome>)>,
}

#[derive(Debug)]
struct Event {
    arrival: u64,
    first: Kind,
    primary: Option<Kind>,
    key: Option<Arc<str>>,
    outcome: Option<Outcome>,
    counted: bool,
}

impl Event {
    fn counted_as(&self) -> Counted {
        Counted {
            kind: self.primary.unwrap_or(self.first),
            key: self.key.clone(),
            outcome: self.outcome.unwrap_or(Outcome::Unknown),
        }
    }
}

/// Whether records of this type only ever accompany another one.
fn auxiliary(kind: &str) -> bool {
    matches!(
        kind,
        "PATH"
            | "CWD"
            | "EXECVE"
            | "PROCTITLE"
            | "SOCKADDR"
            | "SOCKETCALL"
            | "EOE"
            | "OBJ_PID"
            | "BPRM_FCAPS"
            | "CAPSET"
            | "MMAP"
            | "FD_PAIR"
            | "IPC"
            | "IPC_SET_PERM"
            | "MQ_OPEN"
            | "MQ_SENDRECV"
            | "MQ_NOTIFY"
            | "MQ_GETSETATTR"
            | "KERN_MODULE"
    )
}

/// The open events.
#[derive(Debug, Default)]
pub struct Events {
    events: HashMap<EventId, Event, foldhash::fast::RandomState>,
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
                first: Kind::new(part.kind),
                primary: None,
                key: None,
                outcome: None,
                counted: false,
            };
            self.waiting.insert(self.arrivals, id);
            self.events.insert(id, e);
        }
        let Some(event) = self.events.get_mut(&id) else {
            return out;
        };
        if event.primary.is_none() && !auxiliary(part.kind) {
            event.primary = Some(Kind::new(part.kind));
        }
        let decides = match part.syscall {
            Some((key, success)) => {
                event.key = key;
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
            self.done.insert(arrival, id);
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
            let id = *id;
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
        let ids: Vec<EventId> = self.waiting.values().copied().collect();
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
            node: 0,
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
            syscall: Some((Some(key.into()), Some(outcome))),
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
        assert_eq!(left[0].kind.as_str(), "ANOM_PROMISCUOUS");
    }
}
