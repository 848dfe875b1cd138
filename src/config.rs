//! The config file as written (serde, unknown keys rejected) and its checks.
//!
//! `Config::load` names the file in every error; `Config::validate` names the
//! key and the reason (`sinks[1].url: scheme must be http or https`). Each
//! source's and sink's own struct lives in its module, beside the code that uses it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use crate::invalid::Invalid;
use crate::labels::rules::{LabelAction, LabelRule, Rules};
use crate::sinks::{AnySink, Sink as _, SinkConfig};
use crate::sources::{self, SourceConfig};
use crate::store::Limits;
use crate::web_config::WebConfig;

/// The embedded default: what `rme push` runs without `--config` or /etc/rme/rme.toml.
/// It reads the sample logs in examples/ and prints to stdout.
pub const DEFAULT_CONFIG: &str = include_str!("../examples/demo.toml");

/// Every key, commented, with its default: what `rme defaults` prints.
pub const REFERENCE_CONFIG: &str = include_str!("../examples/rme.toml");

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seconds between flushes in `rme push`; ignored by `--once`. Default 30.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Up to this many seconds are added at random to each interval, so a fleet
    /// does not hit the receiver at once. Default 0.
    #[serde(default)]
    pub jitter_secs: u64,
    /// At SIGTERM (or a SIGHUP restart), after the last flush into the spools,
    /// how long the sinks may go on sending before rme exits; what is not sent
    /// stays spooled for the next run. Keep it below systemd's `TimeoutStopSec`
    /// (30 s in the shipped unit). Default 20.
    #[serde(default = "default_stop_timeout_secs")]
    pub stop_timeout_secs: u64,
    /// Where the state file and the spool live. Relative paths are taken from
    /// the config file's directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Bound of each sink's spool in bytes; past it the oldest bodies are dropped
    /// and counted in `rme_spool_dropped_total{reason="overflow"}`. Default 64 MiB.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// The `host` label on every series the push sinks send (remote-write
    /// external label, OTLP `host.name`, statsd tag or path segment). Default:
    /// this host's name from `uname(2)` (`uname -n`); `host = ""` adds none.
    /// `check-config` shows the name it resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Labels added to every series in every push sink, like `host`; a sink's
    /// own `external_labels` (OTLP: `resource_attributes`) entry of the same
    /// name wins. Not added to `stdout` or the pull `/metrics`: a scraper adds
    /// its own. Default none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Optional pull endpoint served by `rme push` and `rme serve`.
    #[serde(default)]
    pub serve: Option<ServeConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

const fn default_stop_timeout_secs() -> u64 {
    20
}

const fn default_interval_secs() -> u64 {
    30
}

const fn default_spool_max_bytes() -> u64 {
    64 << 20
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/rme")
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address of `GET /metrics`. Default 127.0.0.1:9899 (loopback only).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// exporter-toolkit web config file (TLS, client certificates, basic auth,
    /// headers): the `--web.config.file` of Prometheus exporters.
    #[serde(default)]
    pub web_config: Option<PathBuf>,
    /// Connections served at once; past it a new one replaces the oldest
    /// idle one, or is closed at once. Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `web_config` as read and checked at load (not part of the file).
    #[serde(skip)]
    pub web: Option<Arc<WebConfig>>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            web_config: None,
            max_connections: default_max_connections(),
            web: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9899".to_string()
}

const fn default_max_connections() -> usize {
    64
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// New series past this many per metric are folded into one series per
    /// set of their `FOLD_KEEPS` labels (jail, stream, …) with
    /// `rme_overflow="true"`, and counted. Default 10000.
    #[serde(default = "default_max_series")]
    pub max_series_per_metric: usize,
    /// Label values longer than this many bytes are cut to it (a prefix, `…`
    /// and a hash of the whole value) and counted in
    /// `rme_label_values_truncated_total{metric}`. Default 256, at least 32.
    #[serde(default = "default_max_label_value_bytes")]
    pub max_label_value_bytes: usize,
    /// Series not updated for this many seconds are forgotten (0 = never). Default 0.
    #[serde(default)]
    pub idle_expiry_secs: u64,
    /// Label rewrites: drop, prefix, replace, lowercase; each optionally for one metric
    /// and for series matching `match`.
    #[serde(default)]
    pub labels: Vec<LabelRule>,
    /// Metrics not kept at all (e.g. `["reaction_match_total"]`). Default none.
    #[serde(default)]
    pub drop_metrics: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_series_per_metric: default_max_series(),
            max_label_value_bytes: default_max_label_value_bytes(),
            idle_expiry_secs: 0,
            labels: Vec::new(),
            drop_metrics: Vec::new(),
        }
    }
}

const fn default_max_series() -> usize {
    crate::store::DEFAULT_MAX_SERIES
}

const fn default_max_label_value_bytes() -> usize {
    crate::store::DEFAULT_MAX_LABEL_VALUE_BYTES
}

impl StoreConfig {
    /// The store's limits with the label rules compiled (GeoIP databases
    /// opened, hash keys read): errors name `store.labels[i]` and the key.
    pub fn limits(&self) -> Result<Limits, Invalid> {
        Invalid::at_least(
            "store.max_label_value_bytes",
            self.max_label_value_bytes as u64,
            crate::store::MIN_LABEL_VALUE_BYTES as u64,
        )?;
        Ok(Limits {
            max_series_per_metric: self.max_series_per_metric,
            max_label_value_bytes: self.max_label_value_bytes,
            idle_expiry_ms: (self.idle_expiry_secs as i64).saturating_mul(1000),
            rules: Rules::compile(&self.labels)?,
            drop_metrics: self.drop_metrics.iter().cloned().collect(),
        })
    }
}

/// A config checked by building everything it names (URLs parsed, TLS and
/// secret files read, reaction's patterns loaded): what `rme push` runs, and
/// what `rme check-config` checks, so the two refuse exactly the same configs.
pub struct Plan {
    /// The settings as written, defaults filled in and paths resolved.
    pub config: Config,
    pub sources: Vec<sources::Built>,
    pub sinks: Vec<AnySink>,
    /// The store's limits, label rules compiled (GeoIP databases opened, hash
    /// keys read), so a SIGHUP with a database gone bad keeps the running config.
    pub limits: Limits,
}

/// A build error named by its entry: a key the part names itself (`url`) is put
/// under the entry (`sinks[1].url: …`, as `validate` names keys), any other error
/// gets the entry as context (`sinks[1]: …`).
fn keyed(e: anyhow::Error, entry: &str) -> anyhow::Error {
    match e.downcast::<Invalid>() {
        Ok(invalid) => invalid.under(entry).into(),
        Err(e) => e.context(entry.to_string()),
    }
}

impl Config {
    /// Builds every source and sink; an error names the entry (`sinks[0]`) and its key.
    pub fn plan(self) -> anyhow::Result<Plan> {
        let limits = self.store.limits()?;
        let sources = (self.sources.iter().enumerate())
            .map(|(i, s)| sources::build(s).map_err(|e| keyed(e, &format!("sources[{i}]"))))
            .collect::<anyhow::Result<_>>()?;
        let sinks: Vec<AnySink> = (self.sinks.iter().enumerate())
            .map(|(i, s)| AnySink::build(s).map_err(|e| keyed(e, &format!("sinks[{i}]"))))
            .collect::<anyhow::Result<_>>()?;
        debug_assert!(
            sinks
                .iter()
                .zip(&self.sinks)
                .all(|(b, c)| b.name() == c.name())
        );
        Ok(Plan {
            config: self,
            sources,
            sinks,
            limits,
        })
    }

    /// The effective config as TOML a user could paste back (secrets as `***`).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("writing the config as TOML")
    }

    /// Reads and checks a config file (`-` = standard input); errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("reading config from stdin")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading config {}", path.display()))?
        };
        let base = path.parent().filter(|_| path != Path::new("-"));
        Config::parse(&text, base).with_context(|| format!("config {}", path.display()))
    }

    /// The embedded default (examples/rme.toml), with paths taken from the current directory.
    pub fn embedded() -> anyhow::Result<Config> {
        Config::parse(DEFAULT_CONFIG, None).context("embedded default config")
    }

    /// Parses, resolves relative paths against `base`, and validates.
    pub fn parse(text: &str, base: Option<&Path>) -> anyhow::Result<Config> {
        let mut config: Config = match crate::envsubst::expand_config(text)? {
            Some(expanded) => toml::from_str(&expanded)?,
            None => toml::from_str(text)?,
        };
        if let Some(base) = base.filter(|b| !b.as_os_str().is_empty()) {
            config.resolve_paths(base);
        }
        config.validate()?;
        config.apply_labels()?;
        config.load_web_config()?;
        Ok(config)
    }

    /// Resolves `host` (shown so by `check-config`) and adds it and `[labels]`
    /// to every push sink, under the sink's own entries.
    fn apply_labels(&mut self) -> Result<(), Invalid> {
        let global = crate::host::global_labels(self.host.as_deref(), &self.labels)?;
        if self.host.is_none() {
            self.host = Some(global.get("host").cloned().unwrap_or_default());
        }
        for s in &mut self.sinks {
            s.add_labels(&global);
        }
        Ok(())
    }

    /// Reads and checks `serve.web_config` (TLS files, hashes), so a broken one
    /// is refused like a broken config: by `check-config`, at start and on SIGHUP.
    fn load_web_config(&mut self) -> Result<(), Invalid> {
        if let Some(serve) = &mut self.serve
            && let Some(path) = &serve.web_config
        {
            let web = WebConfig::load(path)
                .map_err(|e| Invalid::new("serve.web_config", format!("{e:#}")))?;
            serve.web = Some(Arc::new(web));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.state_dir);
        for rule in &mut self.store.labels {
            match &mut rule.action {
                LabelAction::Geoip(c) => c.resolve_paths(&fix),
                LabelAction::Hash(c) => c.resolve_paths(&fix),
                _ => {}
            }
        }
        if let Some(p) = self.serve.as_mut().and_then(|s| s.web_config.as_mut()) {
            fix(p);
        }
        for s in &mut self.sources {
            s.resolve_paths(&fix);
        }
        for s in &mut self.sinks {
            s.resolve_paths(&fix);
        }
    }

    /// Checks what serde cannot: names unique, URLs usable, at least one sink.
    pub fn validate(&self) -> Result<(), Invalid> {
        Invalid::at_least("interval_secs", self.interval_secs, 1)?;
        Invalid::at_least("spool_max_bytes", self.spool_max_bytes, 4096)?;
        let mut seen = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !seen.insert(s.name().to_string()) {
                return Err(Invalid::new(
                    format!("sources[{i}].name"),
                    format!("two sources are named '{}'; give one a `name`", s.name()),
                ));
            }
            s.validate(&format!("sources[{i}]"))?;
        }
        let mut seen = HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            if !seen.insert(s.name().to_string()) {
                return Err(Invalid::new(
                    format!("sinks[{i}].name"),
                    format!("two sinks are named '{}'; give one a `name`", s.name()),
                ));
            }
            crate::state_dir::check_sink_name(s.name())
                .map_err(|reason| Invalid::new(format!("sinks[{i}].name"), reason))?;
            s.validate(&format!("sinks[{i}]"))?;
        }
        if let Some(serve) = &self.serve {
            if serve.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(Invalid::new(
                    "serve.listen",
                    format!("'{}' is not an address:port", serve.listen),
                ));
            }
            Invalid::at_least("serve.max_connections", serve.max_connections as u64, 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert!(!c.sources.is_empty());
        assert!(!c.sinks.is_empty());
    }

    #[test]
    fn victoriametrics_example_is_valid() {
        let c = Config::parse(include_str!("../examples/victoriametrics.toml"), None).unwrap();
        assert!(matches!(c.sinks[0], SinkConfig::RemoteWrite(_)));
    }

    #[test]
    fn a_bad_value_inside_a_source_or_sink_names_its_key() {
        let e = Config::parse(
            "[[sources]]\ntype = \"fail2ban\"\nlog = \"/x\"\nrotate_wait_secs = -1\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("in `rotate_wait_secs`"), "{e:#}");
        let e = Config::parse(
            "[[sinks]]\ntype = \"remote_write\"\nurl = \"http://x/\"\ntimeout_secs = \"3\"\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("in `timeout_secs`"), "{e:#}");
    }

    #[test]
    fn reference_config_is_valid() {
        Config::parse(REFERENCE_CONFIG, None).unwrap();
    }

    #[test]
    fn label_rules_of_every_kind_parse() {
        let c = Config::parse(
            "[store]\ndrop_metrics = [\"a_total\"]\n\
             [[store.labels]]\nlabel = \"ip\"\naction = \"drop\"\n\
             [[store.labels]]\nlabel = \"ip\"\nmetric = \"m\"\naction = \"prefix\"\nipv4 = 16\n\
             [[store.labels]]\nlabel = \"email\"\nmatch = { stream = \"mail\" }\naction = \"replace\"\nregex = \"(?:.*@)?(.*)\"\n\
             [[store.labels]]\nlabel = \"email\"\naction = \"lowercase\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.store.labels.len(), 4);
        assert_eq!(c.store.drop_metrics, ["a_total"]);
        let err = Config::parse(
            "[[store.labels]]\nlabel = \"ip\"\naction = \"replace\"\nregex = \"[\"\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("regex \"[\""), "{err:#}");
    }

    #[test]
    fn misspelt_key_is_rejected_with_its_name() {
        let err =
            Config::parse("[[sources]]\ntype = \"fail2ban\"\nlogg = \"/x\"\n", None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("logg"), "{msg}");
    }

    #[test]
    fn rotate_wait_secs_is_read_and_shown_by_check_config() {
        let c = Config::parse(
            "[[sources]]\ntype = \"fail2ban\"\nlog = \"/a\"\nrotate_wait_secs = 5\n[[sources]]\ntype = \"reaction\"\nlog = \"/b\"\n",
            None,
        )
        .unwrap();
        let waits: Vec<u64> = c.sources.iter().map(|s| s.rotate_wait().0).collect();
        assert_eq!(waits, vec![5, 30]);
        let shown = c.to_toml().unwrap();
        assert!(shown.contains("rotate_wait_secs = 5"), "{shown}");
        assert!(shown.contains("rotate_wait_secs = 30"), "{shown}");
        let err = Config::parse(
            "[[sources]]\ntype = \"audit\"\nlog = \"/a\"\nrotate_wait_secs = -1\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("`-1`"), "{err:#}");
    }

    #[test]
    fn misspelt_top_level_key_is_rejected() {
        let err = Config::parse("intervall_secs = 3\n", None).unwrap_err();
        assert!(format!("{err:#}").contains("intervall_secs"));
    }

    #[test]
    fn duplicate_source_names_name_the_key() {
        let err = Config::parse(
            "[[sources]]\ntype = \"fail2ban\"\nlog = \"/a\"\n[[sources]]\ntype = \"fail2ban\"\nlog = \"/b\"\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("sources[1].name"), "{err:#}");
    }

    #[test]
    fn sink_name_cannot_leave_the_spool() {
        let err = Config::parse(
            "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"stdout\"\nname = \"../../x\"\n",
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("sinks[1].name"), "{err:#}");
    }

    const PUSH_SINKS: &str = "[[sinks]]\ntype = \"remote_write\"\nurl = \"http://x/w\"\n\
        [[sinks]]\ntype = \"otlp\"\n\
        [[sinks]]\ntype = \"statsd\"\n[[sinks]]\ntype = \"stdout\"\n";

    /// Every push sink's labels, as `add_labels` left them (OTLP's resource attributes).
    fn sink_labels(c: &Config) -> Vec<BTreeMap<String, String>> {
        c.sinks
            .iter()
            .map(|s| match s {
                SinkConfig::RemoteWrite(c) => c.external_labels.clone(),
                SinkConfig::Otlp(c) => c.resource_attributes.clone(),
                SinkConfig::Statsd(c) => c.external_labels.clone(),
                SinkConfig::Stdout(_) => BTreeMap::new(),
            })
            .collect()
    }

    #[test]
    fn every_push_sink_gets_the_nodename_as_host_by_default() {
        let host = crate::host::nodename().expect("this host has a name");
        let c = Config::parse(PUSH_SINKS, None).unwrap();
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            sink_labels(&c),
            [
                m(&[("host", &host)]),
                m(&[("host.name", &host)]),
                m(&[("host", &host)]),
                m(&[]),
            ]
        );
        // check-config shows the name it resolved to
        assert!(c.to_toml().unwrap().contains(&format!("host = \"{host}\"")));
    }

    #[test]
    fn host_is_overridable_removable_and_a_sinks_own_label_wins() {
        let text = format!(
            "host = \"web1\"\n[labels]\ndc = \"fra1\"\n{PUSH_SINKS}\
             [[sinks]]\ntype = \"remote_write\"\nname = \"own\"\nurl = \"http://y/w\"\n\
             external_labels = {{ host = \"mine\" }}\n"
        );
        let c = Config::parse(&text, None).unwrap();
        let l = sink_labels(&c);
        assert_eq!(l[0]["host"], "web1");
        assert_eq!(l[0]["dc"], "fra1");
        assert_eq!(l[1]["host.name"], "web1");
        assert_eq!(l[1]["dc"], "fra1");
        assert_eq!(l[2]["dc"], "fra1");
        assert!(l[3].is_empty(), "stdout gets none");
        assert_eq!(l[4]["host"], "mine");
        assert_eq!(l[4]["dc"], "fra1");
        let c = Config::parse(&format!("host = \"\"\n{PUSH_SINKS}"), None).unwrap();
        assert!(sink_labels(&c).iter().all(BTreeMap::is_empty));
        // what check-config prints reads back the same
        let again = Config::parse(&c.to_toml().unwrap(), None).unwrap();
        assert!(sink_labels(&again).iter().all(BTreeMap::is_empty));
        let err = Config::parse("[labels]\nhost = \"x\"\n", None).unwrap_err();
        assert!(format!("{err:#}").contains("labels.host: "), "{err:#}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "interval_secs = \"x\"\n").unwrap();
        let msg = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(
            msg.contains("bad.toml") && msg.contains("interval_secs"),
            "{msg}"
        );
    }
}
