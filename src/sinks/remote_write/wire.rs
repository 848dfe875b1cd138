//! `WriteRequest` protobuf written by hand from the store's label sets: the
//! same bytes prost writes for the generated messages (fields in number order,
//! proto3 defaults left out, repeated messages always written), without
//! building a `TimeSeries` with owned label strings for every series.

use std::hash::{Hash as _, Hasher as _};

use crate::store::Series;
use crate::varint;

/// A request being written; `buf` holds the protobuf of the series and
/// metadata written since it was cleared.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
    labels: Vec<(&'static str, &'static str)>,
}

/// A length-delimited field's size with its tag (tags here are one byte).
fn delimited_len(len: usize) -> usize {
    1 + varint::len(len as u64) + len
}

/// A string field, left out when empty (proto3).
fn string(buf: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        buf.push(tag);
        varint::put(buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    }
}

fn string_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(s.len())
    }
}

fn label_len(name: &str, value: &str) -> usize {
    string_len(name) + string_len(value)
}

impl Encoder {
    /// Appends one `TimeSeries` (field 1 of `WriteRequest`): `__name__`, the
    /// series' labels with a value, the external labels it lacks, sorted by
    /// name; one sample, after a zero sample at `zero_ms` when given (a new
    /// counter's leading zero). Returns the fingerprint of the labels sent.
    pub fn series(
        &mut self,
        series: &Series,
        external: &[(String, String)],
        value: f64,
        at_ms: i64,
        zero_ms: Option<i64>,
    ) -> u64 {
        // The vector is kept between calls empty, so it borrows nothing.
        let mut l: Vec<(&str, &str)> = reuse(std::mem::take(&mut self.labels));
        l.push(("__name__", series.name()));
        l.extend(series.labels().filter(|(_, v)| !v.is_empty()));
        for (k, v) in external {
            if series.label(k).is_none_or(str::is_empty) {
                l.push((k, v));
            }
        }
        l.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        l.hash(&mut h);
        let labels_len: usize = l.iter().map(|(k, v)| delimited_len(label_len(k, v))).sum();
        let zero_len = zero_ms.map_or(0, |z| delimited_len(sample_len(0.0, z)));
        let value_len = delimited_len(sample_len(value, at_ms));
        let buf = &mut self.buf;
        buf.push(0x0a);
        varint::put(buf, (labels_len + zero_len + value_len) as u64);
        for (k, v) in &l {
            buf.push(0x0a);
            varint::put(buf, label_len(k, v) as u64);
            string(buf, 0x0a, k);
            string(buf, 0x12, v);
        }
        if let Some(z) = zero_ms {
            sample(buf, 0.0, z);
        }
        sample(buf, value, at_ms);
        self.labels = reuse(l);
        h.finish()
    }

    /// Appends one `MetricMetadata` (field 3 of `WriteRequest`).
    pub fn metadata(&mut self, kind: i32, name: &str, help: &str) {
        let kind = kind as u64;
        let kind_len = if kind != 0 { 1 + varint::len(kind) } else { 0 };
        let len = kind_len + string_len(name) + string_len(help);
        let buf = &mut self.buf;
        buf.push(0x1a);
        varint::put(buf, len as u64);
        if kind != 0 {
            buf.push(0x08);
            varint::put(buf, kind);
        }
        string(buf, 0x12, name);
        string(buf, 0x22, help);
    }
}

/// A `Sample`'s size without its tag and length: proto3 leaves out a 0 value and a 0 time.
fn sample_len(value: f64, at_ms: i64) -> usize {
    let ts = at_ms as u64;
    (if value != 0.0 { 9 } else { 0 }) + if ts != 0 { 1 + varint::len(ts) } else { 0 }
}

/// Appends one `Sample` (field 2 of `TimeSeries`).
fn sample(buf: &mut Vec<u8>, value: f64, at_ms: i64) {
    buf.push(0x12);
    varint::put(buf, sample_len(value, at_ms) as u64);
    if value != 0.0 {
        buf.push(0x09);
        buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    let ts = at_ms as u64;
    if ts != 0 {
        buf.push(0x10);
        varint::put(buf, ts);
    }
}

/// An emptied vector with other lifetimes, same allocation (collecting an
/// empty iterator into an element type of the same layout reuses it in place).
fn reuse<'a, 'b>(mut v: Vec<(&'a str, &'a str)>) -> Vec<(&'b str, &'b str)> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}
