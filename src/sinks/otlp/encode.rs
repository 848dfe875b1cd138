//! Snapshot → `ExportMetricsServiceRequest`: one metric per name, counters as
//! monotonic cumulative sums carrying the store's start time, gauges as gauges,
//! split into requests of at most N data points that each carry the resource.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::store::{Point, Snapshot, Value};

pub(super) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

/// This host's name, as the kernel knows it (`uname -n`).
pub(super) fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The resource every request carries: built-in attributes, then the user's.
pub(super) fn resource(user: &BTreeMap<String, String>) -> Resource {
    let mut attrs = BTreeMap::new();
    attrs.insert("service.name".to_string(), "rme".to_string());
    attrs.insert(
        "service.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Some(host) = host_name() {
        attrs.insert("host.name".to_string(), host);
    }
    attrs.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    Resource {
        attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
        ..Resource::default()
    }
}

const fn ms_to_ns(ms: i64) -> u64 {
    (if ms < 0 { 0 } else { ms as u64 }).saturating_mul(1_000_000)
}

fn data_point(p: &Point, at_ms: i64) -> NumberDataPoint {
    let (value, start) = match p.value {
        Value::Counter(v) => (
            number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX)),
            ms_to_ns(p.start_ms.min(at_ms)),
        ),
        Value::Gauge(v) => (number_data_point::Value::AsDouble(v), 0),
    };
    NumberDataPoint {
        attributes: p.series.labels().map(|(k, v)| string_kv(k, v)).collect(),
        start_time_unix_nano: start,
        time_unix_nano: ms_to_ns(at_ms),
        value: Some(value),
        ..NumberDataPoint::default()
    }
}

/// One OTLP metric per metric name: counters as monotonic cumulative sums, gauges as gauges.
pub fn metrics(snap: &Snapshot) -> Vec<Metric> {
    metrics_with_zeros(snap, &|_| None)
}

/// [`metrics`], with a zero point (start = time = the zero's time) before
/// each point `zero` gives a time for: a new counter's first increment.
pub fn metrics_with_zeros(snap: &Snapshot, zero: &dyn Fn(&Point) -> Option<i64>) -> Vec<Metric> {
    snap.points
        .chunk_by(|a, b| a.series.name() == b.series.name())
        .map(|points| {
            let name = points[0].series.name();
            let data_points = points
                .iter()
                .flat_map(|p| {
                    let zero = zero(p).map(|z| NumberDataPoint {
                        start_time_unix_nano: ms_to_ns(z),
                        time_unix_nano: ms_to_ns(z),
                        value: Some(number_data_point::Value::AsInt(0)),
                        ..data_point(p, snap.at_ms)
                    });
                    zero.into_iter().chain([data_point(p, snap.at_ms)])
                })
                .collect();
            let data = match points[0].value {
                Value::Counter(_) => metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Value::Gauge(_) => metric::Data::Gauge(Gauge { data_points }),
            };
            Metric {
                name: name.to_string(),
                description: snap
                    .meta
                    .get(name)
                    .map(|m| m.help.to_string())
                    .unwrap_or_default(),
                data: Some(data),
                ..Metric::default()
            }
        })
        .collect()
}

pub(super) fn points_mut(m: &mut Metric) -> Option<&mut Vec<NumberDataPoint>> {
    match m.data.as_mut()? {
        metric::Data::Sum(s) => Some(&mut s.data_points),
        metric::Data::Gauge(g) => Some(&mut g.data_points),
        _ => None,
    }
}

/// Splits metrics into groups of at most `max` data points, cutting a metric in two where needed.
pub fn batches(metrics: Vec<Metric>, max: usize) -> Vec<Vec<Metric>> {
    let max = max.max(1);
    let (mut out, mut current, mut room) = (Vec::new(), Vec::new(), max);
    for mut m in metrics {
        while let Some(points) = points_mut(&mut m)
            && points.len() > room
        {
            let rest_points = points.split_off(room);
            let mut rest = m.clone();
            if let Some(p) = points_mut(&mut rest) {
                *p = rest_points;
            }
            current.push(m);
            out.push(std::mem::take(&mut current));
            room = max;
            m = rest;
        }
        room -= points_mut(&mut m).map_or(0, |p| p.len());
        current.push(m);
        if room == 0 {
            out.push(std::mem::take(&mut current));
            room = max;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One self-contained request: the resource, the `rme` scope and these metrics.
pub fn request(resource: &Resource, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "rme".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
