//! The metric model as sources define it and sinks read it: a [`Metric`]'s
//! kind and help, and a [`Snapshot`], the store at one instant.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Series;

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
