//! Prometheus text format 0.0.4 and OpenMetrics 1.0 text of a [`Snapshot`].
//!
//! Shared by `GET /metrics` and the `stdout` sink (and `rme parse`), the way
//! metrics-rs shares one `render()` between pull and push. OpenMetrics names a
//! counter family without `_total` and ends with `# EOF`.

use std::fmt::Write as _;

use crate::store::{Kind, Snapshot, Value};

pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text exposition to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

/// Renders every point; counters' OpenMetrics families lose their `_total` suffix.
pub fn render(snap: &Snapshot, format: Format) -> String {
    let mut out = String::with_capacity(snap.points.len() * 64);
    let mut current: Option<&str> = None;
    for p in &snap.points {
        let name = p.series.name();
        if current != Some(name) {
            current = Some(name);
            let meta = snap.meta.get(name);
            let kind = meta.map(|m| m.kind).unwrap_or(match p.value {
                Value::Counter(_) => Kind::Counter,
                Value::Gauge(_) => Kind::Gauge,
            });
            let family = match (format, kind) {
                (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            if let Some(m) = meta {
                let _ = writeln!(out, "# HELP {family} {}", escape_help(m.help));
            }
            let t = match (kind, format) {
                (Kind::Counter, _) => "counter",
                (Kind::Gauge, _) => "gauge",
            };
            let _ = writeln!(out, "# TYPE {family} {t}");
        }
        out.push_str(name);
        if p.series.labels().len() > 0 {
            out.push('{');
            for (i, (k, v)) in p.series.labels().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_value(v));
            }
            out.push('}');
        }
        match p.value {
            Value::Counter(v) => {
                let _ = writeln!(out, " {v}");
            }
            Value::Gauge(v) => {
                let _ = writeln!(out, " {}", format_float(v));
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Picks OpenMetrics when the scraper's Accept header asks for it.
pub fn negotiate(accept: Option<&str>) -> Format {
    match accept {
        Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
        _ => Format::Prometheus,
    }
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Series, Store};

    #[test]
    fn openmetrics_strips_total_from_family_and_ends_with_eof() {
        let mut s = Store::new(Limits::default());
        s.describe(&crate::store::Metric::counter(
            "fail2ban_bans_total",
            "Bans.",
        ));
        s.inc(Series::new("fail2ban_bans_total", &[("jail", "ss\"h")]), 3);
        let text = render(&s.snapshot(0), Format::OpenMetrics);
        assert!(text.contains("# TYPE fail2ban_bans counter\n"), "{text}");
        assert!(
            text.contains("fail2ban_bans_total{jail=\"ss\\\"h\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        let prom = render(&s.snapshot(0), Format::Prometheus);
        assert!(prom.contains("# TYPE fail2ban_bans_total counter\n"));
        assert!(!prom.contains("# EOF"));
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
