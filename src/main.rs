//! The `rme` command line: a dispatcher over the library's modules (see lib.rs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use rme::agent::parse::parse_file;
use rme::agent::{FlushReport, Mode};
use rme::config::{self, Config};
use rme::sources;

/// Where `rme` looks for its config when `--config` is not given.
const SYSTEM_CONFIG: &str = "/etc/rme/rme.toml";

#[derive(Parser)]
#[command(
    version,
    about = "Turns reaction, fail2ban and Linux audit events into metrics and pushes them"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `debug` or `rme=trace`.
    #[arg(long, global = true, env = "RME_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the sources and push every `interval_secs` (or once, for cron).
    Push {
        /// Config file; default /etc/rme/rme.toml, else the embedded demo (examples/demo.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Read what is new since the last run, flush once, exit (non-zero if delivery failed).
        #[arg(long)]
        once: bool,
    },
    /// Follow the sources and serve GET /metrics only (no pushing).
    Serve {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Check a config file (`-` for stdin) as `rme push` would, by building every
    /// source and sink, and print the effective config as TOML (secrets as `***`).
    CheckConfig {
        config: PathBuf,
        /// Print it as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Print a full, commented default config.
    Defaults,
    /// Print the state rme keeps between runs (read positions, counters, sink
    /// bookkeeping) as JSON; the files themselves are compact binary.
    State {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Dry run: print the metrics a log file would give, as OpenMetrics text.
    Parse {
        /// Which program wrote the log.
        #[arg(value_parser = sources::NAMES)]
        source: String,
        file: PathBuf,
        /// reaction's config, to name pattern labels (reaction only).
        #[arg(long)]
        reaction_config: Option<PathBuf>,
        /// Pattern names whose values become labels (reaction only).
        #[arg(long, value_delimiter = ',')]
        pattern_labels: Vec<String>,
    },
    /// Print an rme config that does what another tool's config does, e.g.
    /// `rme import reaction-metrics-exporter /etc/reaction-metrics-exporter/config.yml > /etc/rme/rme.toml`.
    Import {
        #[arg(value_parser = rme::import::TOOLS.to_vec())]
        tool: String,
        /// The tool's config file (YAML or JSON).
        file: PathBuf,
        /// reaction's config, when not at the path the file names (read for its pattern names).
        #[arg(long)]
        reaction_config: Option<PathBuf>,
    },
    /// The privileged helper: answers fixed status requests (fail2ban-status, audit-status) as JSON on a
    /// unix socket, so `rme push` can run unprivileged. Run it as root; nothing else needs to be.
    Helper {
        /// Socket to listen on (created mode 0660; a stale socket is replaced).
        #[arg(long, default_value = rme::helper_proto::DEFAULT_SOCKET)]
        listen: PathBuf,
        /// Group that owns the socket, i.e. may ask (e.g. `rme`); default the helper's own group.
        #[arg(long)]
        group: Option<String>,
        /// fail2ban's control socket.
        #[arg(long, default_value = "/var/run/fail2ban/fail2ban.sock")]
        fail2ban_socket: PathBuf,
    },
    /// Print a shell completion script, e.g. `rme completions bash > /etc/bash_completion.d/rme`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `rme man | man -l -`.
    Man {
        /// Write rme.1 and one page per subcommand (rme-push.1, ...) into this directory instead.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    rme::logging::init(&cli.log);
    let result = run(cli.command);
    rme::logging::flush_suppressed();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rme: {}", rme::logging::redact::text(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Push { config, once: true } => return run_push(config.as_deref(), Mode::Once),
        Command::Push {
            config,
            once: false,
        } => return run_push(config.as_deref(), Mode::Daemon),
        Command::Serve { config } => return run_push(config.as_deref(), Mode::Serve),
        Command::CheckConfig { config, json } => check_config(&config, json)?,
        Command::Defaults => out(config::REFERENCE_CONFIG)?,
        Command::State { config } => print_state(config.as_deref())?,
        Command::Parse {
            source,
            file,
            reaction_config,
            pattern_labels,
        } => out(&parse_file(
            &source,
            &file,
            reaction_config,
            pattern_labels,
        )?)?,
        Command::Import {
            tool: _,
            file,
            reaction_config,
        } => import(&file, reaction_config.as_deref())?,
        Command::Helper {
            listen,
            group,
            fail2ban_socket,
        } => helper(listen, group, fail2ban_socket)?,
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man(out_dir.as_deref())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout. A reader that went away (`rme parse … | head`) is
/// a clean end, as for ripgrep: the rest is not wanted, nothing went wrong.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// `rme check-config`: builds the plan as `rme push` would, prints the config.
fn check_config(path: &Path, json: bool) -> anyhow::Result<()> {
    let plan = load_plan(Some(path))?;
    if json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&plan.config)?
        ))
    } else {
        out(&plan.config.to_toml()?)
    }
}

/// `rme state`: the state dir's files as JSON.
fn print_state(path: Option<&Path>) -> anyhow::Result<()> {
    out(&format!(
        "{}\n",
        rme::state_dir::state::dump(&load(path)?.state_dir)?
    ))
}

/// `rme import`: another tool's config as rme's, its warnings on stderr.
fn import(file: &Path, reaction_config: Option<&Path>) -> anyhow::Result<()> {
    let imported = rme::import::reaction_metrics_exporter(file, reaction_config)?;
    for warning in &imported.warnings {
        eprintln!("rme: warning: {warning}");
    }
    out(&imported.toml)
}

/// `rme helper`: the privileged server.
fn helper(listen: PathBuf, group: Option<String>, fail2ban_socket: PathBuf) -> anyhow::Result<()> {
    rme::helper::run(&rme::helper::HelperOptions {
        listen,
        group,
        fail2ban_socket,
        timeout: sources::fail2ban::socket::PROBE_TIMEOUT,
    })
}

fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Cli::command(), "rme", &mut std::io::stdout());
}

/// `rme man`: the page on stdout, or every page into `out_dir`.
fn man(out_dir: Option<&Path>) -> anyhow::Result<()> {
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            out(&String::from_utf8_lossy(&page))?
        }
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("writing man pages to {}", dir.display()))?,
    }
    Ok(())
}

/// `rme push` and `rme serve`: plan, run, and say what is left undone.
fn run_push(path: Option<&Path>, mode: Mode) -> anyhow::Result<ExitCode> {
    let plan = load_plan(path)?;
    let reload = || load_plan(path).map(|_| ());
    let report = rme::agent::run(plan, mode, &reload)?;
    Ok(exit_code(&report))
}

/// The exit code of a run (`push --once`'s; a daemon reports nothing), the
/// first that applies: 1 something is still spooled (the next run sends it),
/// 3 a source could not be read, 4 a receiver refused bodies for good; else 0.
/// (2, a config or state error, comes from `main`.)
fn exit_code(report: &FlushReport) -> ExitCode {
    for (sink, reason) in &report.failed {
        eprintln!(
            "rme: sink {sink}: not delivered, kept in the spool: {}",
            rme::logging::redact::text(reason)
        );
    }
    for (source, reason) in &report.unreadable {
        eprintln!("rme: source {source}: not read: {reason}");
    }
    if report.refused > 0 {
        eprintln!(
            "rme: {} request bodies refused by receivers (dropped, counted in rme_sink_samples_total{{result=\"rejected\"}})",
            report.refused
        );
    }
    ExitCode::from(if !report.failed.is_empty() {
        1
    } else if !report.unreadable.is_empty() {
        3
    } else if report.refused > 0 {
        4
    } else {
        0
    })
}

/// [`load`], then [`Config::plan`]; a build error names the file as a parse error does.
fn load_plan(path: Option<&Path>) -> anyhow::Result<rme::config::Plan> {
    let source = match path {
        Some(p) => p.display().to_string(),
        None if Path::new(SYSTEM_CONFIG).exists() => SYSTEM_CONFIG.to_string(),
        None => "(embedded demo)".to_string(),
    };
    load(path)?
        .plan()
        .with_context(|| format!("config {source}"))
}

/// The given config, else the system one, else the embedded demo.
fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new(SYSTEM_CONFIG).exists() => Config::load(Path::new(SYSTEM_CONFIG)),
        None => {
            tracing::info!(
                "no --config and no {SYSTEM_CONFIG}: using the embedded demo config (examples/demo.toml)"
            );
            Config::embedded()
        }
    }
}
