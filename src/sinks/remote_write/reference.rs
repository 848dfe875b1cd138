//! The reference encoder: a snapshot as prost `WriteRequest` messages, built
//! the obvious way (every label copied into a `prompb::Label`), then encoded by
//! prost (then [`super::compress`]). It is not on the send path: the sink's
//! `encode` writes the same bytes straight from the store through `wire.rs`.
//! This is the oracle `wire.rs` is checked against (the test
//! `hand_written_protobuf_is_the_bytes_prost_writes`), and what
//! `examples/bench_remote_write.rs` times beside it.

use super::RemoteWrite;
use super::prompb::{self, metric_metadata::MetricType};
use crate::store::{Kind, Point, Series, Snapshot};

impl RemoteWrite {
    /// The snapshot as `WriteRequest`s of at most `batch_size` samples, each with
    /// the metadata of the metrics it carries, and its sample count.
    pub fn requests(&self, snap: &Snapshot) -> Vec<(prompb::WriteRequest, u64)> {
        snap.points
            .chunks(self.batch_size)
            .map(|chunk| self.request(chunk, snap))
            .collect()
    }

    /// One `WriteRequest` of [`RemoteWrite::requests`].
    fn request(&self, chunk: &[Point], snap: &Snapshot) -> (prompb::WriteRequest, u64) {
        let timeseries: Vec<_> = chunk.iter().map(|p| self.series(p, snap.at_ms)).collect();
        let mut metadata: Vec<prompb::MetricMetadata> = Vec::new();
        for p in chunk {
            let name = p.series.name();
            if metadata
                .last()
                .is_some_and(|m| m.metric_family_name == name)
            {
                continue;
            }
            if let Some(meta) = snap.meta.get(name) {
                metadata.push(prompb::MetricMetadata {
                    r#type: match meta.kind {
                        Kind::Counter => MetricType::Counter,
                        Kind::Gauge => MetricType::Gauge,
                    } as i32,
                    metric_family_name: name.to_string(),
                    help: meta.help.to_string(),
                    unit: String::new(),
                });
            }
        }
        let n = timeseries.len() as u64;
        (
            prompb::WriteRequest {
                timeseries,
                metadata,
            },
            n,
        )
    }

    /// One point as a series: its labels, then external labels it lacks, sorted by name; empty values dropped.
    fn series(&self, p: &Point, at_ms: i64) -> prompb::TimeSeries {
        let zero = self.zeros.zero_ms(p, at_ms).map(|z| prompb::Sample {
            value: 0.0,
            timestamp: z,
        });
        prompb::TimeSeries {
            labels: self.labels(&p.series),
            samples: zero
                .into_iter()
                .chain([prompb::Sample {
                    value: p.value.as_f64(),
                    timestamp: at_ms,
                }])
                .collect(),
        }
    }

    /// A series' labels as sent: `__name__`, its own, the external ones it lacks.
    fn labels(&self, series: &Series) -> Vec<prompb::Label> {
        let label = |name: &str, value: &str| prompb::Label {
            name: name.to_string(),
            value: value.to_string(),
        };
        let mut labels = vec![label("__name__", series.name())];
        labels.extend(
            series
                .labels()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| label(k, v)),
        );
        for (k, v) in &self.external_labels {
            if series.label(k).is_none_or(str::is_empty) {
                labels.push(label(k, v));
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }
}
