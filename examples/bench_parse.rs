//! Measures the fail2ban log parser: lines per second over FILE (held in
//! memory, so disk speed is left out), and, when Debian's `mtail` is installed,
//! the same file through `mtail -one_shot` with the peers' fail2ban program.
//!
//! `cargo run --release --example bench_parse -- FILE [MTAIL_PROGS_DIR]` (after
//! `cargo build --release` it also times `target/release/rme parse fail2ban FILE`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use rme::sources::fail2ban::{BANS, Fail2banLog};
use rme::sources::{LINES_UNPARSED, LineParser, feed};
use rme::store::{Limits, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = PathBuf::from(
        args.next()
            .context("usage: bench_parse FILE [MTAIL_PROGS_DIR]")?,
    );
    let progs = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("integration/peers/mtail")
    });
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);

    let started = Instant::now();
    let mut parser = Fail2banLog::default();
    let mut store = Store::new(Limits::default());
    parser.describe(&mut store);
    let mut lines = 0u64;
    for line in text.lines() {
        feed(&mut parser, line, &mut store);
        lines += 1;
    }
    let rme_secs = started.elapsed().as_secs_f64();

    println!(
        "rme fail2ban parser: {lines} lines in {rme_secs:.3} s = {:.0} lines/s ({:.1} MB/s); bans {}, unparsed {}",
        lines as f64 / rme_secs,
        bytes.len() as f64 / rme_secs / 1e6,
        store.sum(BANS.name, &[]),
        store.sum(LINES_UNPARSED.name, &[]),
    );

    // The same without `feed`'s per-line self-metrics: the parser and its own store updates.
    let bare = Instant::now();
    let (mut parser, mut bare_store) = (Fail2banLog::default(), Store::new(Limits::default()));
    for line in text.lines() {
        let _ = parser.parse(line, &mut bare_store);
    }
    let bare_secs = bare.elapsed().as_secs_f64();
    println!(
        "rme parser alone (no self-metrics): {bare_secs:.3} s = {:.0} lines/s",
        lines as f64 / bare_secs
    );

    // Whole process like mtail's figure (start, read, parse, render), if the binary is built.
    let rme_bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/rme");
    let mut rme_whole = None;
    if rme_bin.exists() {
        let started = Instant::now();
        let status = Command::new(&rme_bin)
            .args(["parse", "fail2ban"])
            .arg(&file)
            .stdout(Stdio::null())
            .status()?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "rme parse (whole process, {status}): {secs:.3} s = {:.0} lines/s",
            lines as f64 / secs
        );
        rme_whole = Some(secs);
    }

    let started = Instant::now();
    let status = Command::new("mtail")
        .args(["-one_shot", "-one_shot_format", "prometheus", "-progs"])
        .arg(&progs)
        .arg("-logs")
        .arg(&file)
        .args(["-address", "127.0.0.1", "-port", "0", "-logtostderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {
            let mtail_secs = started.elapsed().as_secs_f64();
            println!(
                "mtail -one_shot (whole process): {mtail_secs:.3} s = {:.0} lines/s; rme parser is {:.1}x faster",
                lines as f64 / mtail_secs,
                mtail_secs / rme_secs
            );
            if let Some(whole) = rme_whole {
                println!(
                    "whole process: rme parse is {:.1}x faster than mtail",
                    mtail_secs / whole
                );
            }
        }
        Ok(s) => println!("mtail exited with {s}; no comparison"),
        Err(e) => println!("mtail not run ({e}); no comparison"),
    }
    Ok(())
}
