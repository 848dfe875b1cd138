//! `rme parse`: one source's parser run over a whole log file, without state,
//! probes or sinks; the metrics it gives printed as OpenMetrics text.

use std::path::{Path, PathBuf};

use crate::inputs::tail::Tailer;
use crate::sources::{self, SourceConfig};
use crate::store::text::{Format, render};
use crate::store::{Limits, Store, now_ms};

/// The metrics a whole log file gives, read by the parser of `source` (one of
/// [`sources::NAMES`]). `reaction_config` and `pattern_labels` are reaction's.
pub fn parse_file(
    source: &str,
    file: &Path,
    reaction_config: Option<PathBuf>,
    pattern_labels: Vec<String>,
) -> anyhow::Result<String> {
    let log = Some(file.to_path_buf());
    let mut config = SourceConfig::named(source).map_err(anyhow::Error::msg)?;
    match &mut config {
        SourceConfig::Fail2ban(c) => c.log = log,
        SourceConfig::Reaction(c) => {
            c.log = log;
            c.config = reaction_config;
            c.pattern_labels = pattern_labels;
        }
        SourceConfig::Audit(c) => {
            c.log = log;
            c.netlink = false;
        }
    }
    let built = sources::build(&config)?;
    let Some((_, mut parser)) = built.input else {
        anyhow::bail!("source {source} has no log parser");
    };
    let mut store = Store::new(Limits::default());
    sources::describe_self_metrics(&mut store);
    parser.describe(&mut store);
    let mut tailer = Tailer::new(file.to_path_buf(), None);
    if !file.exists() {
        anyhow::bail!("{}: no such file", file.display());
    }
    tailer.read_new(&mut |line| sources::feed(&mut *parser, line, &mut store))?;
    parser.finish(&mut store);
    Ok(render(&store.snapshot(now_ms()), Format::OpenMetrics))
}
