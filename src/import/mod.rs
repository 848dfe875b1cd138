//! `rme import`: another tool's config turned into an rme config, so moving costs nothing.
//!
//! Today one tool: reaction-metrics-exporter (`reaction_exporter.rs` reads its
//! file, `jinja.rs` translates its value templates, `to_rme.rs` writes rme's TOML).

mod jinja;
pub mod reaction_exporter;
pub mod to_rme;

use std::path::Path;

use anyhow::Context as _;

pub use to_rme::Imported;

/// The tools `rme import` knows.
pub const TOOLS: &[&str] = &["reaction-metrics-exporter"];

/// Reads reaction-metrics-exporter's config at `file` and writes the rme config that
/// exports the same. reaction's own config (for the pattern names) is read from the
/// file's `reaction.config`, or from `reaction_config` when given.
pub fn reaction_metrics_exporter(
    file: &Path,
    reaction_config: Option<&Path>,
) -> anyhow::Result<Imported> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ctx = || format!("reaction-metrics-exporter config {}", file.display());
    let config = reaction_exporter::parse(&text).with_context(ctx)?;
    let patterns = if config.needs_patterns() {
        let path = reaction_config.unwrap_or(Path::new(&config.reaction_config.value));
        let patterns = crate::sources::reaction::load_patterns(path, None).with_context(|| {
            format!(
                "{}: reaction.config: reading reaction's config {} for its pattern names \
                 (the exporter labels with every pattern); give its path with --reaction-config",
                file.display(),
                path.display()
            )
        })?;
        Some(patterns)
    } else {
        None
    };
    let name = file.display().to_string();
    to_rme::to_rme(&config, &name, patterns.as_ref()).with_context(ctx)
}
