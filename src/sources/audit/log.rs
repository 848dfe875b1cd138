//! audit.log: records counted by type, grouped into events (see `events.rs`),
//! and serial numbers followed for gaps.
//!
//! The tricky point of the serials: they are per node, wrap at 2³², restart at
//! boot, and records of neighbouring events may arrive out of order, so a
//! skipped serial only counts as lost once the sequence is a few serials past it.

use std::collections::{HashMap, VecDeque};

use std::sync::Arc;

use super::events::{Counted, EventId, Events, Part};
use super::record::{self, Fields, Header, Outcome, Token, all_tokens_into};
use crate::inputs::journal::Entry;
use crate::sources::{LineParser, Unparsed};
use crate::store::{Handle, Metric, Series, Store};

const RECORDS: Metric =
    Metric::counter("audit_records_total", "audit.log records, by record type.");
const EVENTS: Metric = Metric::counter(
    "audit_events_total",
    "Audit events (records sharing one serial), by the type of their first non-auxiliary record, \
             SYSCALL rule key ((none) without one; several joined by ',') and result (success, failed, unknown).",
);
const USER_AUTH: Metric = Metric::counter(
    "audit_user_auth_total",
    "USER_AUTH records (PAM authentication), by result.",
);
const USER_LOGIN: Metric =
    Metric::counter("audit_user_login_total", "USER_LOGIN records, by result.");
const AVC: Metric = Metric::counter(
    "audit_avc_total",
    "AVC and USER_AVC records, by SELinux verdict (denied, granted) or lowercased AppArmor value.",
);
const ANOMALIES: Metric = Metric::counter(
    "audit_anomalies_total",
    "ANOM_* records (kernel and user-space anomalies), by type.",
);
const GAPS: Metric = Metric::counter(
    "audit_sequence_gaps_total",
    "Event serial numbers never seen in the log: records lost between the kernel and the file.",
);

/// Every metric this module emits, for `describe`.
const METRICS: &[Metric] = &[RECORDS, EVENTS, USER_AUTH, USER_LOGIN, AVC, ANOMALIES, GAPS];

/// Nodes whose serials are followed for gaps (more are not followed).
const MAX_NODES: usize = 64;

/// Parses audit.log lines (raw or ENRICHED).
#[derive(Debug, Default)]
pub struct AuditLog {
    events: Events,
    sequences: HashMap<String, Sequence, Hasher>,
    counts: crate::sources::LineCounts,
    /// `audit_records_total` handles by record type.
    records: Memo,
    /// `audit_events_total` handles by type, key and result (joined by NUL).
    events_by_labels: Memo,
    /// `audit_user_auth_total` / `audit_user_login_total` handles by result.
    user_auth: [Handle; 3],
    user_login: [Handle; 3],
    /// `audit_avc_total` handles by verdict, `audit_anomalies_total` by type.
    avc: Memo,
    anomalies: Memo,
    /// Rule keys as shared strings, so an event holds one without a copy.
    rule_keys: HashMap<Box<str>, Arc<str>, Hasher>,
    /// Hashes `node=` names into [`EventId::node`].
    node_hash: foldhash::fast::FixedState,
    /// An empty token vector whose allocation the next line reuses.
    tokens: Vec<Token<'static>>,
}

/// `res=`, the literal every record with a result holds.
static RES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("res="));

/// An emptied vector with another lifetime, same allocation (a collect of an
/// empty iterator into an element type of the same layout reuses it in place).
fn reuse<'a, 'b>(mut v: Vec<Token<'a>>) -> Vec<Token<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}

use crate::sources::memo::{Hasher, MAX_MEMO, Memo};

/// Slot of an outcome in a per-result handle array.
fn slot(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failed => 1,
        Outcome::Unknown => 2,
    }
}

impl LineParser for AuditLog {
    fn source(&self) -> &'static str {
        "audit"
    }

    fn line_counts(&mut self) -> &mut crate::sources::LineCounts {
        &mut self.counts
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn parse(&mut self, line: &str, store: &mut Store) -> Result<(), Unparsed> {
        let (header, body) = record::parse_header(line).ok_or(Unparsed { parser: "audit" })?;
        // Only SYSCALL (success, key), AVC (verdict) and records holding `res=`
        // read a field; the others skip the field scan. Only AVC keeps its tokens
        // (the verdict is a word); the others read their fields in one pass.
        let avc = matches!(header.kind, "AVC" | "USER_AVC");
        let fields = if avc || header.kind == "SYSCALL" || RES.find(body.as_bytes()).is_some() {
            Fields::scan(body)
        } else {
            Fields::default()
        };
        // The token vector is kept between lines (emptied, so it borrows nothing).
        let mut tokens = reuse(std::mem::take(&mut self.tokens));
        if avc {
            all_tokens_into(body, &mut tokens);
        }
        let h = self.records.get(&[header.kind]);
        store.inc_at(h, RECORDS.name, &[("type", header.kind)], 1);
        self.count_record(&header, &tokens, &fields, store);
        if !header.kind.starts_with("DAEMON_") {
            // auditd numbers its own DAEMON_* records apart from the kernel's serials.
            self.follow_sequence(&header, store);
        }
        self.add_to_event(&header, &fields, store);
        self.tokens = reuse(tokens);
        Ok(())
    }

    /// A kernel record journald read itself (`_TRANSPORT=audit`): `MESSAGE` is
    /// `TYPE_NAME text` (`AUDIT1334 text` for a type journald has no name for),
    /// the header's time and serial are in `_SOURCE_REALTIME_TIMESTAMP` and
    /// `_AUDIT_ID`. The audit.log line is put back together and parsed as one.
    /// An entry without those fields is taken as an audit.log line.
    fn parse_entry(&mut self, entry: &Entry, store: &mut Store) -> Result<(), Unparsed> {
        match journal_record(entry) {
            Some(line) => self.parse(&line, store),
            None => self.parse(&entry.message, store),
        }
    }

    fn finish(&mut self, store: &mut Store) {
        self.close_all(store);
    }
}

/// Per-record metrics.
/// `type=NAME msg=audit(SEC.MS:ID): text` from a journal entry's audit fields.
fn journal_record(entry: &Entry) -> Option<String> {
    let audit = entry.audit.as_ref()?;
    let message = entry.message.as_str();
    let (word, text) = message.split_once(' ').unwrap_or((message, ""));
    let unnamed = format!("AUDIT{:04}", audit.kind);
    let kind = match audit.kind_name.as_deref() {
        Some(name) if name != unnamed => name.to_string(),
        _ if word != unnamed => word.to_string(),
        _ => format!("UNKNOWN[{}]", audit.kind),
    };
    // The name journald put before the text, when it did.
    let text = if word == kind || word == unnamed {
        text
    } else {
        message
    };
    let us = entry.realtime_us?;
    Some(format!(
        "type={kind} msg=audit({}.{:03}:{}): {text}",
        us / 1_000_000,
        us / 1000 % 1000,
        audit.id
    ))
}

impl AuditLog {
    /// Per-record metrics.
    fn count_record(
        &mut self,
        h: &Header<'_>,
        tokens: &[Token<'_>],
        fields: &Fields<'_>,
        store: &mut Store,
    ) {
        let res = || fields.res.map_or(Outcome::Unknown, Outcome::from_value);
        match h.kind {
            "USER_AUTH" => {
                let r = res();
                let h = &mut self.user_auth[slot(r)];
                store.inc_at(h, USER_AUTH.name, &[("result", r.label())], 1);
            }
            "USER_LOGIN" => {
                let r = res();
                let h = &mut self.user_login[slot(r)];
                store.inc_at(h, USER_LOGIN.name, &[("result", r.label())], 1);
            }
            "AVC" | "USER_AVC" => {
                if let Some(v) = record::avc_verdict(tokens) {
                    let h = self.avc.get(&[&v]);
                    store.inc_at(h, AVC.name, &[("result", &v)], 1);
                }
            }
            k if k.starts_with("ANOM_") => {
                let h = self.anomalies.get(&[k]);
                store.inc_at(h, ANOMALIES.name, &[("type", k)], 1);
            }
            _ => {}
        }
    }

    fn add_to_event(&mut self, h: &Header<'_>, fields: &Fields<'_>, store: &mut Store) {
        let node = if h.node.is_empty() {
            0
        } else {
            std::hash::BuildHasher::hash_one(&self.node_hash, h.node)
        };
        let id = EventId {
            node,
            ms: h.ms,
            serial: h.serial,
        };
        let syscall = if h.kind == "SYSCALL" {
            let success = fields.success.map(Outcome::from_value);
            let key = record::rule_key(fields.key).map(|k| self.shared_key(&k));
            Some((key, success))
        } else {
            None
        };
        let res = fields.res.map(Outcome::from_value);
        for event in self.events.add(
            id,
            Part {
                kind: h.kind,
                res,
                syscall,
            },
        ) {
            count_event(&event, &mut self.events_by_labels, store);
        }
    }

    /// The shared string for a rule key (a handful per host, so kept; the map
    /// starts over past [`MAX_MEMO`] like the handle memos).
    fn shared_key(&mut self, key: &str) -> Arc<str> {
        if let Some(k) = self.rule_keys.get(key) {
            return k.clone();
        }
        if self.rule_keys.len() >= MAX_MEMO {
            self.rule_keys.clear();
        }
        let k: Arc<str> = key.into();
        self.rule_keys.insert(key.into(), k.clone());
        k
    }

    /// Counts every event still waiting, as at the end of a file.
    pub fn close_all(&mut self, store: &mut Store) {
        for event in self.events.drain() {
            count_event(&event, &mut self.events_by_labels, store);
        }
    }

    fn follow_sequence(&mut self, h: &Header<'_>, store: &mut Store) {
        let nodes = self.sequences.len();
        let lost = match self.sequences.get_mut(h.node) {
            Some(seq) => seq.observe(h.serial),
            None => {
                if nodes < MAX_NODES {
                    self.sequences
                        .insert(h.node.to_string(), Sequence::starting_at(h.serial));
                }
                0
            }
        };
        if lost > 0 {
            store.inc(Series::new(GAPS.name, &[]), lost);
        }
    }
}

fn count_event(e: &Counted, memo: &mut Memo, store: &mut Store) {
    let labels = [
        ("type", e.kind.as_str()),
        ("key", e.key.as_deref().unwrap_or("(none)")),
        ("result", e.outcome.label()),
    ];
    let h = memo.get(&[labels[0].1, labels[1].1, labels[2].1]);
    store.inc_at(h, EVENTS.name, &labels, 1);
}

/// One node's serial numbers: the highest seen and the recent ones skipped,
/// which may still arrive out of order before they count as lost.
#[derive(Debug, Default)]
struct Sequence {
    last: u32,
    missing: VecDeque<u32>,
}

/// A skipped serial counts as lost once the sequence is this far past it.
const REORDER_WINDOW: u32 = 4;
/// Skipped serials remembered individually; beyond, they count as lost at once.
const MAX_MISSING: usize = 256;
/// A jump this large (either way) is a reboot or a different log, not a loss.
const RESTART_JUMP: u32 = 1 << 20;

impl Sequence {
    fn starting_at(serial: u32) -> Sequence {
        Sequence {
            last: serial,
            missing: VecDeque::new(),
        }
    }

    /// Takes a record's serial (u32, wraps to 0); returns serials newly known lost.
    fn observe(&mut self, serial: u32) -> u64 {
        let ahead = serial.wrapping_sub(self.last);
        let behind = self.last.wrapping_sub(serial);
        let mut lost = 0u64;
        if ahead == 0 {
            return 0;
        } else if ahead <= RESTART_JUMP {
            let skipped = ahead - 1;
            let remembered = skipped.min(MAX_MISSING as u32);
            lost += u64::from(skipped - remembered);
            let first = serial.wrapping_sub(remembered);
            self.missing
                .extend((0..remembered).map(|i| first.wrapping_add(i)));
            self.last = serial;
        } else if let Some(at) = self.missing.iter().position(|&m| m == serial) {
            self.missing.remove(at);
        } else if behind > RESTART_JUMP {
            lost += self.missing.len() as u64;
            *self = Sequence::starting_at(serial);
            return lost;
        }
        while self.missing.len() > MAX_MISSING {
            self.missing.pop_front();
            lost += 1;
        }
        while let Some(&m) = self.missing.front() {
            if self.last.wrapping_sub(m) < REORDER_WINDOW {
                break;
            }
            self.missing.pop_front();
            lost += 1;
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Value};

    fn run(lines: &[&str]) -> (AuditLog, Store) {
        let mut log = AuditLog::default();
        let mut store = Store::new(Limits::default());
        for l in lines {
            let _ = log.parse(l, &mut store);
        }
        (log, store)
    }

    fn events(store: &Store, kind: &str, key: &str, result: &str) -> u64 {
        store.sum(
            EVENTS.name,
            &[("type", kind), ("key", key), ("result", result)],
        )
    }

    #[test]
    fn syscall_event_takes_the_leading_records_type_and_the_syscall_key() {
        let (log, store) = run(&[
            "type=AVC msg=audit(10.000:5): avc:  denied  { read } for  pid=1",
            "type=SYSCALL msg=audit(10.000:5): arch=c000003e success=no exit=-13 key=\"secrets\"",
            "type=PATH msg=audit(10.000:5): item=0 name=\"/x\"",
            "type=EOE msg=audit(10.000:5):",
        ]);
        assert_eq!(events(&store, "AVC", "secrets", "failed"), 1);
        assert_eq!(store.sum(EVENTS.name, &[]), 1);
        assert_eq!(store.sum(RECORDS.name, &[]), 4);
        assert_eq!(store.sum(AVC.name, &[("result", "denied")]), 1);
        assert_eq!(log.events.held(), 0);
    }

    #[test]
    fn user_message_counts_at_once_and_its_syscall_does_not_count_again() {
        let (_, store) = run(&[
            "type=SERVICE_START msg=audit(1.000:9): pid=1 msg='unit=x res=success'\x1dUID=\"root\"",
            "type=SYSCALL msg=audit(1.000:9): success=yes key=(null)",
            "type=EOE msg=audit(1.000:9):",
            "type=USER_AUTH msg=audit(1.100:10): pid=2 msg='op=PAM:authentication acct=\"x\" res=failed'",
        ]);
        assert_eq!(events(&store, "SERVICE_START", "(none)", "success"), 1);
        assert_eq!(events(&store, "USER_AUTH", "(none)", "failed"), 1);
        assert_eq!(store.sum(EVENTS.name, &[]), 2);
        assert_eq!(store.sum(USER_AUTH.name, &[("result", "failed")]), 1);
    }

    /// F1 of security-review-3: sshd's user name `x'res=success` makes libaudit
    /// write `acct="x'res=success"` inside `msg='…'` (libaudit hex-encodes a
    /// name holding a space, `"` or a control byte, not `'`). auparse reads
    /// both records as failures (`aureport --auth -if` says `no` for each, and
    /// `ausearch --format csv` says `failed`; the integration test
    /// `audit::aureport_reads_the_forged_user_name_as_rme_does` runs them).
    #[test]
    fn a_quote_in_the_user_name_cannot_turn_a_failed_login_into_a_success() {
        let forged = "type=USER_AUTH msg=audit(1764600000.100:501): pid=4242 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? acct=\"x'res=success\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'";
        let plain = "type=USER_AUTH msg=audit(1764600001.100:502): pid=4242 uid=0 auid=4294967295 ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? acct=\"admin\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'";
        let (_, store) = run(&[forged, plain]);
        assert_eq!(store.sum(USER_AUTH.name, &[("result", "success")]), 0);
        assert_eq!(store.sum(USER_AUTH.name, &[("result", "failed")]), 2);
        assert_eq!(events(&store, "USER_AUTH", "(none)", "failed"), 2);
        assert_eq!(store.sum(EVENTS.name, &[]), 2);
        // The same name in a USER_LOGIN and with the ENRICHED suffix.
        let login = forged
            .replace("USER_AUTH", "USER_LOGIN")
            .replace(":501)", ":503)")
            + "\x1dUID=\"root\" AUID=\"unset\"";
        let (_, store) = run(&[&login]);
        assert_eq!(store.sum(USER_LOGIN.name, &[("result", "failed")]), 1);
        assert_eq!(store.sum(USER_LOGIN.name, &[]), 1);
    }

    #[test]
    fn lone_kernel_records_count_when_they_leave_the_window() {
        let (mut log, mut store) = run(&[
            "type=ANOM_PROMISCUOUS msg=audit(100.000:1): dev=eth0 prom=256",
            "type=NETFILTER_CFG msg=audit(101.000:2): table=filter",
        ]);
        assert_eq!(store.sum(EVENTS.name, &[]), 0, "both still within 2 s");
        log.parse(
            "type=NETFILTER_CFG msg=audit(103.000:3): table=nat",
            &mut store,
        )
        .unwrap();
        assert_eq!(events(&store, "ANOM_PROMISCUOUS", "(none)", "unknown"), 1);
        assert_eq!(
            store.sum(ANOMALIES.name, &[("type", "ANOM_PROMISCUOUS")]),
            1
        );
        log.close_all(&mut store);
        assert_eq!(events(&store, "NETFILTER_CFG", "(none)", "unknown"), 2);
    }

    #[test]
    fn sequence_gaps_out_of_order_and_rollover() {
        let mut s = Sequence::starting_at(49);
        assert_eq!(s.observe(59), 6, "50..=55 are 4+ behind 59");
        assert_eq!([60, 61, 62].map(|n| s.observe(n)), [1, 1, 1]);
        assert!(s.missing.is_empty());
        let mut s = Sequence::starting_at(10);
        assert_eq!(
            [12, 11, 13, 14, 15, 16]
                .map(|n| s.observe(n))
                .iter()
                .sum::<u64>(),
            0
        );
        let mut s = Sequence::starting_at(u32::MAX - 1);
        assert_eq!(
            [u32::MAX, 0, 1, 2]
                .map(|n| s.observe(n))
                .iter()
                .sum::<u64>(),
            0
        );
        // a reboot restarts the serials: no loss counted for the jump back
        let mut s = Sequence::starting_at(5_000_000);
        assert_eq!(s.observe(3), 0);
        assert_eq!(s.observe(4), 0);
        let mut s = Sequence::starting_at(1);
        // 256 remembered, of which the last 3 may still arrive
        assert_eq!(s.observe(1 + 100_000), 100_000 - 1 - 3);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut log = AuditLog::default();
        let mut store = Store::new(Limits::default());
        let pieces = [
            "type=",
            "SYSCALL",
            " msg=audit(",
            "1.",
            "000",
            ":",
            "7",
            "): ",
            "'",
            "\"",
            "=",
            " ",
            "\x1d",
            "node=",
            "res=",
            "key=",
            "avc:",
            "é",
            "(",
        ];
        for _ in 0..20_000 {
            let line: String = (0..rng.usize(0..24))
                .map(|_| {
                    if rng.bool() {
                        pieces[rng.usize(..pieces.len())].to_string()
                    } else {
                        rng.char(..).to_string()
                    }
                })
                .collect();
            let _ = log.parse(&line, &mut store);
        }
        log.close_all(&mut store);
        assert_eq!(log.events.held(), 0);
        assert!(matches!(
            store.get(&Series::new(GAPS.name, &[])),
            None | Some(Value::Counter(_))
        ));
    }
}
