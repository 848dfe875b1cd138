//! Linux audit: the kernel's audit status over netlink, and audit.log records.
//!
//! Two independent parts: [`AuditStatusProbe`] asks the kernel (`AUDIT_GET`,
//! needs CAP_AUDIT_CONTROL) once per flush, itself or through `rme helper`;
//! [`AuditLog`] counts records and events from auditd's log. The tricky point
//! of each is in its module.

mod events;
mod log;
mod netlink;
mod record;
#[cfg(test)]
mod samples;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;

pub use log::AuditLog;
pub use netlink::{AuditStatus, QueryError, query};

use super::{Input, LineParser, Parts, Probe};
use crate::config::Invalid;
use crate::store::{Metric, Series, Store};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Source name (state file key, `source` label of self-metrics). Default `audit`.
    #[serde(default)]
    pub name: Option<String>,
    /// auditd's log, e.g. /var/log/audit/audit.log (raw or ENRICHED `log_format`;
    /// readable by group `adm` on Debian).
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Ask the kernel for its audit status (enabled, lost, backlog…) over netlink
    /// at each flush. Needs CAP_AUDIT_CONTROL in the initial namespaces, e.g.
    /// `AmbientCapabilities=CAP_AUDIT_CONTROL` in rme.service. Default true.
    #[serde(default = "default_netlink")]
    pub netlink: bool,
    /// Ask `rme helper` listening on this socket (e.g. /run/rme/helper.sock) for the
    /// kernel status instead of asking the kernel, so rme itself needs no capability.
    #[serde(default)]
    pub helper: Option<PathBuf>,
}

fn default_netlink() -> bool {
    true
}

impl AuditConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.log
            .iter_mut()
            .chain(self.helper.iter_mut())
            .for_each(fix);
    }

    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if self.log.is_none() && !self.netlink {
            return Err(Invalid::new(
                key,
                "an audit source needs `log` or `netlink = true`",
            ));
        }
        if self.helper.is_some() && !self.netlink {
            let why = "`helper` only serves the netlink status: remove it or set `netlink = true`";
            return Err(Invalid::new(key, why));
        }
        Ok(())
    }
}

pub fn build(config: &AuditConfig) -> anyhow::Result<Parts> {
    let input = config.log.clone().map(|p| {
        (
            Input::File(p),
            Box::new(AuditLog::default()) as Box<dyn LineParser>,
        )
    });
    let mut probes: Vec<Box<dyn Probe>> = Vec::new();
    if config.netlink {
        probes.push(Box::new(AuditStatusProbe::new(config.helper.clone())));
    }
    Ok((input, probes))
}

/// Longest wait for the kernel's answer, per flush.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

const UP: Metric = Metric::gauge(
    "audit_status_up",
    "1 if the kernel's audit status (AUDIT_GET, directly or through rme helper) was read at the last flush, else 0.",
);
const ERRORS: Metric = Metric::counter(
    "audit_status_errors_total",
    "Failed audit status reads, by error (eperm, econnrefused, eprotonosupport, timeout, helper…).",
);
const ENABLED: Metric = Metric::gauge(
    "audit_enabled",
    "Kernel auditing: 0 off, 1 on, 2 locked (immutable until reboot).",
);
const FAILURE_MODE: Metric = Metric::gauge(
    "audit_failure_mode",
    "What the kernel does on audit failure: 0 silent, 1 printk, 2 panic.",
);
const DAEMON_PID: Metric = Metric::gauge(
    "audit_daemon_pid",
    "PID of the registered audit daemon; 0 = none (records go to the kernel log).",
);
const RATE_LIMIT: Metric = Metric::gauge(
    "audit_rate_limit",
    "Kernel audit rate limit in messages per second; 0 = none.",
);
const BACKLOG_LIMIT: Metric =
    Metric::gauge("audit_backlog_limit", "Kernel audit backlog queue size.");
const BACKLOG: Metric = Metric::gauge(
    "audit_backlog",
    "Records waiting in the kernel audit backlog queue.",
);
const LOST: Metric = Metric::counter(
    "audit_lost_total",
    "Audit records the kernel dropped since boot (resets with auditctl --reset-lost).",
);
const WAIT_TIME: Metric = Metric::gauge(
    "audit_backlog_wait_time_jiffies",
    "Kernel backlog_wait_time, in kernel jiffies (HZ is kernel-specific).",
);
const WAIT_TIME_ACTUAL: Metric = Metric::counter(
    "audit_backlog_wait_time_actual_jiffies_total",
    "Time processes waited on a full audit backlog, in kernel jiffies (kernels ≥ 5.9).",
);

/// Every metric this module emits, for `describe`.
const METRICS: &[Metric] = &[
    UP,
    ERRORS,
    ENABLED,
    FAILURE_MODE,
    DAEMON_PID,
    RATE_LIMIT,
    BACKLOG_LIMIT,
    BACKLOG,
    LOST,
    WAIT_TIME,
    WAIT_TIME_ACTUAL,
];

/// Reads the kernel's audit status once per flush.
#[derive(Debug, Default)]
pub struct AuditStatusProbe {
    /// Ask this `rme helper` socket instead of the kernel.
    helper: Option<PathBuf>,
    /// The error of the previous probe, so a lasting one is logged once.
    last_error: Option<&'static str>,
}

impl AuditStatusProbe {
    pub fn new(helper: Option<PathBuf>) -> AuditStatusProbe {
        AuditStatusProbe {
            helper,
            last_error: None,
        }
    }

    /// The status, or the error label and a message saying what to do.
    fn read(&self) -> Result<AuditStatus, (&'static str, String)> {
        let Some(socket) = &self.helper else {
            return query_kernel(QUERY_TIMEOUT)
                .map_err(|e| (e.label(), format!("{e}. {}", advice(&e))));
        };
        let asked = crate::helper::ask(socket, crate::helper::Request::AuditStatus, QUERY_TIMEOUT)
            .and_then(|v| Ok(serde_json::from_value::<AuditStatus>(v)?));
        asked.map_err(|e| {
            let hint = "`rme helper` needs CAP_AUDIT_CONTROL (run it as root) and rme's user in its `--group`";
            ("helper", format!("{e:#}. {hint}"))
        })
    }
}

/// Asks the kernel directly, with a fresh sequence number.
pub fn query_kernel(timeout: Duration) -> Result<AuditStatus, QueryError> {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    query(SEQ.fetch_add(1, Ordering::Relaxed), timeout)
}

impl Probe for AuditStatusProbe {
    fn source(&self) -> &'static str {
        "audit"
    }

    fn describe(&self, store: &mut Store) {
        store.describe_all(METRICS);
    }

    fn probe(&mut self, store: &mut Store) -> anyhow::Result<()> {
        match self.read() {
            Ok(status) => {
                if self.last_error.take().is_some() {
                    tracing::info!("audit status: readable again");
                }
                store.set(Series::new(UP.name, &[]), 1.0);
                record_status(&status, store);
            }
            Err((label, message)) => {
                if self.last_error != Some(label) {
                    tracing::warn!(error = label, "audit status: {message}");
                }
                self.last_error = Some(label);
                store.set(Series::new(UP.name, &[]), 0.0);
                store.inc(Series::new(ERRORS.name, &[("error", label)]), 1);
                store.inc(
                    Series::new(super::PROBE_ERRORS.name, &[("source", "audit")]),
                    1,
                );
            }
        }
        // Failures are counted above; returning them would log the warning again at every flush.
        Ok(())
    }
}

/// What the user can do about a failed query.
pub fn advice(e: &QueryError) -> &'static str {
    match e.label() {
        "eperm" => {
            "Reading the kernel audit status needs CAP_AUDIT_CONTROL (in the initial user and PID namespaces). \
             Grant it to rme.service with `AmbientCapabilities=CAP_AUDIT_CONTROL` and \
             `CapabilityBoundingSet=CAP_AUDIT_CONTROL`, or run `rme helper` as root and set `helper = \"/run/rme/helper.sock\"` in the audit source, \
             or set `netlink = false` in the audit source"
        }
        "econnrefused" => {
            "The kernel only answers AUDIT_GET in the initial user namespace: run rme on the host, \
             not in a container, or set `netlink = false` in the audit source"
        }
        "eprotonosupport" => {
            "This kernel has no audit support (CONFIG_AUDIT); set `netlink = false` in the audit source"
        }
        _ => "It is retried at the next flush",
    }
}

/// Sets the status metrics (also for a status relayed by a privileged helper).
pub fn record_status(s: &AuditStatus, store: &mut Store) {
    let gauges = [
        (ENABLED.name, s.enabled),
        (FAILURE_MODE.name, s.failure),
        (DAEMON_PID.name, s.pid),
        (RATE_LIMIT.name, s.rate_limit),
        (BACKLOG_LIMIT.name, s.backlog_limit),
        (BACKLOG.name, s.backlog),
    ];
    for (name, v) in gauges {
        store.set(Series::new(name, &[]), f64::from(v));
    }
    store.set_counter(Series::new(LOST.name, &[]), u64::from(s.lost));
    if let Some(v) = s.backlog_wait_time {
        store.set(Series::new(WAIT_TIME.name, &[]), f64::from(v));
    }
    if let Some(v) = s.backlog_wait_time_actual {
        store.set_counter(Series::new(WAIT_TIME_ACTUAL.name, &[]), u64::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Value};

    #[test]
    fn config_needs_log_or_netlink_and_netlink_defaults_on() {
        let c: AuditConfig = toml::from_str("log = \"/var/log/audit/audit.log\"").unwrap();
        assert!(c.netlink);
        assert!(c.validate("sources[0]").is_ok());
        let c: AuditConfig = toml::from_str("netlink = false").unwrap();
        let err = c.validate("sources[0]").unwrap_err().to_string();
        assert!(
            err.contains("sources[0]") && err.contains("netlink"),
            "{err}"
        );
        assert!(toml::from_str::<AuditConfig>("netlnk = true").is_err());
        let c: AuditConfig =
            toml::from_str("netlink = false\nlog = \"/x\"\nhelper = \"/run/rme/helper.sock\"")
                .unwrap();
        assert!(
            c.validate("sources[1]")
                .unwrap_err()
                .to_string()
                .contains("helper")
        );
    }

    #[test]
    fn status_becomes_gauges_and_counters() {
        let mut store = Store::new(Limits::default());
        let status = AuditStatus {
            enabled: 2,
            failure: 1,
            lost: 9,
            backlog_limit: 8192,
            backlog_wait_time: Some(15000),
            ..AuditStatus::default()
        };
        record_status(&status, &mut store);
        assert_eq!(
            store.get(&Series::new(ENABLED.name, &[])),
            Some(Value::Gauge(2.0))
        );
        assert_eq!(
            store.get(&Series::new(BACKLOG_LIMIT.name, &[])),
            Some(Value::Gauge(8192.0))
        );
        assert_eq!(
            store.get(&Series::new(LOST.name, &[])),
            Some(Value::Counter(9))
        );
        assert_eq!(
            store.get(&Series::new(WAIT_TIME.name, &[])),
            Some(Value::Gauge(15000.0))
        );
        // a 40-byte reply has no backlog_wait_time_actual: no series rather than a false 0
        assert_eq!(store.get(&Series::new(WAIT_TIME_ACTUAL.name, &[])), None);
    }

    /// Against this machine's kernel: the test runs as root with all capabilities in CI;
    /// elsewhere it prints why it cannot check and passes.
    #[test]
    fn real_kernel_answers_audit_get() {
        match query(77, QUERY_TIMEOUT) {
            Ok(s) => {
                assert!(s.enabled <= 2, "{s:?}");
                assert!(s.failure <= 2, "{s:?}");
                assert!(s.backlog_limit > 0, "{s:?}");
                assert!(s.backlog <= s.backlog_limit.max(1) * 2, "{s:?}");
            }
            Err(e) if matches!(e.label(), "eperm" | "econnrefused" | "eprotonosupport") => {
                eprintln!(
                    "skipped: AUDIT_GET not permitted here ({e}); {}",
                    advice(&e)
                );
            }
            Err(e) => panic!("AUDIT_GET failed: {e}"),
        }
    }
}
