//! rme's log output: tracing to stderr, with two guards every line passes.
//!
//! - **Secrets**: each formatted line goes through [`redact::text`]
//!   before it is written, so a URL's password or token never reaches a log.
//! - **Rate**: warnings and errors are limited per call site and per `source`
//!   or `sink` field ([`ratelimit`]): the first [`BURST`] of each
//!   [`WINDOW`] are written, the rest counted and summed up in one line per
//!   window. A warning that repeats for every read (and, with rme's stderr in
//!   a watched log directory, causes the next read) stays a few lines a minute.

pub mod ratelimit;
pub mod redact;

use std::fmt::Debug;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use ratelimit::Limiter;

/// Warnings (and errors) of one kind that pass per window.
pub const BURST: u32 = 10;
/// How often suppressed warnings are summed up.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The target of the summary lines (never limited themselves).
const SUMMARY_TARGET: &str = "rme::log_limit";

/// Installs the global subscriber: `filter` in tracing's EnvFilter syntax
/// (`info` if it does not parse), ANSI colours only on a terminal.
pub fn init(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let limit = RateLimit::default();
    let _ = LIMITS.set(limit.state.clone());
    tracing_subscriber::registry()
        .with(filter)
        .with(limit)
        .with(fmt)
        .init();
}

/// The limiter's state, for [`flush_suppressed`] at exit.
static LIMITS: std::sync::OnceLock<Arc<Mutex<LimitState>>> = std::sync::OnceLock::new();

/// Writes the summaries still due (a `--once` run ends before a window does).
pub fn flush_suppressed() {
    if let Some(state) = LIMITS.get() {
        summarize(state);
    }
}

/// Writes to stderr what it is given, secrets masked. The fmt layer writes
/// each event with one `write_all` of the whole line, so a URL is never split.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        std::io::Write::write_all(&mut std::io::stderr(), redact::text(&line).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut std::io::stderr())
    }
}

/// A warning's kind: where it is written, and for which source or sink.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    callsite: tracing::callsite::Identifier,
    /// `("source", name)` or `("sink", name)` when the event has such a field.
    owner: Option<(&'static str, String)>,
}

/// What the summary of one key says.
struct Pending {
    meta: &'static Metadata<'static>,
    owner: Option<(&'static str, String)>,
    /// The message of the first warning suppressed in the window.
    example: String,
}

struct RateLimit {
    state: Arc<Mutex<LimitState>>,
    summaries: Once,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            state: Arc::default(),
            summaries: Once::new(),
        }
    }
}

struct LimitState {
    limiter: Limiter<Key>,
    pending: std::collections::HashMap<Key, Pending>,
}

impl Default for LimitState {
    fn default() -> LimitState {
        LimitState {
            limiter: Limiter::new(BURST, WINDOW),
            pending: Default::default(),
        }
    }
}

/// Reads the `source`/`sink` field and the message of an event.
#[derive(Default)]
struct Fields {
    owner: Option<(&'static str, String)>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "source" => self.owner = Some(("source", value.to_string())),
            "sink" => self.owner = Some(("sink", value.to_string())),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        match field.name() {
            "source" | "sink" | "message" => {
                self.record_str(field, &format!("{value:?}"));
            }
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || meta.target() == SUMMARY_TARGET {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let key = Key {
            callsite: meta.callsite(),
            owner: fields.owner.clone(),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (admitted, first_suppressed) = state.limiter.admit(&key, Instant::now());
        if first_suppressed {
            state.pending.insert(
                key,
                Pending {
                    meta,
                    owner: fields.owner,
                    example: fields.message,
                },
            );
            drop(state);
            let shared = self.state.clone();
            self.summaries.call_once(|| {
                std::thread::spawn(move || summarize_forever(&shared));
            });
        }
        admitted
    }
}

/// Once per window: one line per key that had warnings suppressed.
fn summarize_forever(state: &Mutex<LimitState>) {
    loop {
        std::thread::sleep(WINDOW);
        summarize(state);
    }
}

/// One line per key that had warnings suppressed since the last summary.
fn summarize(state: &Mutex<LimitState>) {
    let due: Vec<(Pending, u64)> = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let counts = s.limiter.take_suppressed(Instant::now());
        counts
            .into_iter()
            .filter_map(|(k, n)| s.pending.remove(&k).map(|p| (p, n)))
            .collect()
    };
    for (p, n) in due {
        let of = p
            .owner
            .map(|(field, name)| format!("{field} {name}"))
            .unwrap_or_default();
        let at = format!(
            "{}:{}",
            p.meta.file().unwrap_or("?"),
            p.meta.line().unwrap_or(0)
        );
        tracing::warn!(
            target: SUMMARY_TARGET,
            suppressed = n,
            of,
            at,
            "{n} more warnings like this one were not written (at most {BURST} a minute): {}",
            p.example
        );
    }
}
