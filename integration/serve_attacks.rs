//! `/metrics` under a local attacker holding connections (security review 3,
//! F4 and F5): real TCP connections against the real `rme serve`, a scraper
//! beside them that must be answered. Plain HTTP with basic auth (a web config
//! with only `basic_auth_users`) so the attack reaches the HTTP layer as it
//! does over TLS without client certificates.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::f2b_line as ban;
use crate::common::*;

const BANS: &str = "fail2ban_bans_total{jail=\"sshd\"}";
const PASSWORD: &str = "right-scrape-pw";

/// `rme serve` killed (and reaped) when the test ends, also on a failed assertion.
struct Rme(Child);

impl Drop for Rme {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rme serve` on a free port reading a fail2ban log of 3 bans; `web`: the web config's text.
fn start(dir: &Path, web: Option<&str>) -> (Rme, u16) {
    let log = dir.join("fail2ban.log");
    for i in 0..3 {
        append(&log, &ban(i));
    }
    let port = free_port();
    let mut toml = format!(
        "state_dir = \"{}\"\n[serve]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.join("state").display()
    );
    if let Some(web) = web {
        let path = write(dir, "web.yml", web);
        toml.push_str(&format!("web_config = \"{}\"\n", path.display()));
    }
    toml.push_str(&format!(
        "[[sources]]\ntype = \"fail2ban\"\nlog = \"{}\"\n",
        log.display()
    ));
    let config = write(dir, "rme.toml", &toml);
    let out = std::fs::File::create(dir.join("rme.log")).unwrap();
    let child = rme()
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let rme = Rme(child);
    let auth = web.map(|_| basic(&format!("prometheus:{PASSWORD}")));
    let end = Instant::now() + Duration::from_secs(30);
    while !scrape(port, auth.as_deref()).is_some_and(|(s, b, _)| s == 200 && b.contains(BANS)) {
        assert!(Instant::now() < end, "rme did not serve /metrics");
        std::thread::sleep(Duration::from_millis(100));
    }
    (rme, port)
}

fn basic(user_pw: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pw)
    )
}

/// A web config with only basic auth: user `prometheus`, bcrypt of `cost`.
fn auth_only(cost: u32) -> String {
    format!(
        "basic_auth_users:\n  prometheus: '{}'\n",
        bcrypt::hash(PASSWORD, cost).unwrap()
    )
}

/// Sends one GET /metrics and reads its answer: (status, body, server closes).
fn exchange(
    s: &mut TcpStream,
    auth: Option<&str>,
    close: bool,
) -> std::io::Result<(u16, String, bool)> {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let conn = if close { "Connection: close\r\n" } else { "" };
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}{conn}\r\n")?;
    let mut r = BufReader::new(&*s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {status:?}")))?;
    let (mut len, mut closes) = (0usize, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "connection: close" {
            closes = true;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((code, String::from_utf8_lossy(&body).into_owned(), closes))
}

/// One scrape on a fresh connection: (status, body, latency), None if refused or cut.
fn scrape(port: u16, auth: Option<&str>) -> Option<(u16, String, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let (code, body, _) = exchange(&mut s, auth, true).ok()?;
    Some((code, body, t.elapsed()))
}

fn scrape_why(port: u16, auth: Option<&str>) -> std::io::Result<(u16, String, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let (code, body, _) = exchange(&mut s, auth, true)?;
    Ok((code, body, t.elapsed()))
}

/// `conns` attacker threads, each keeping one connection open and sending a
/// request every `pause` on it (a new one whenever rme closes it).
struct Attack {
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Attack {
    /// `auth(i)`: the Authorization header of the attacker's i-th request.
    fn start(
        port: u16,
        conns: usize,
        pause: Duration,
        auth: impl Fn(u64) -> Option<String> + Send + Sync + 'static,
    ) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicU64::new(0));
        let auth = Arc::new(auth);
        let threads = (0..conns)
            .map(|_| {
                let (stop, answers, auth) = (stop.clone(), answers.clone(), auth.clone());
                std::thread::spawn(move || {
                    let mut first = true;
                    while !stop.load(Ordering::Relaxed) {
                        if !first {
                            nap(pause, &stop);
                        }
                        first = false;
                        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        while !stop.load(Ordering::Relaxed) {
                            let n = answers.load(Ordering::Relaxed);
                            match exchange(&mut s, auth(n).as_deref(), false) {
                                Ok((_, _, closes)) => {
                                    answers.fetch_add(1, Ordering::Relaxed);
                                    if closes {
                                        break;
                                    }
                                }
                                Err(_) => break,
                            }
                            nap(pause, &stop);
                        }
                    }
                })
            })
            .collect();
        Attack {
            stop,
            answers,
            threads,
        }
    }
}

/// Sleeps `pause`, or until `stop`.
fn nap(pause: Duration, stop: &AtomicBool) {
    let end = Instant::now() + pause;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(pause));
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `n` scrapes, one every `every`: how many were answered 200 with the bans,
/// and the latencies of those.
fn scrapes(port: u16, auth: Option<&str>, n: usize, every: Duration) -> (usize, Vec<Duration>) {
    let mut lat = Vec::new();
    for _ in 0..n {
        match scrape_why(port, auth) {
            Ok((200, body, t)) if metric_value(&body, BANS) == Some(3.0) => lat.push(t),
            other => eprintln!("scrape failed: {other:?}"),
        }
        std::thread::sleep(every);
    }
    (lat.len(), lat)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// F4: 64 keep-alive connections that each sent one request (answered, even
/// 401) held every slot, so 0 of 46 scrapes were answered. Now a connection
/// is protected only while a request is answered on it; idle ones make room,
/// the one idle longest first. Checked without auth (the attacker's requests
/// answered 200) and with basic auth (answered 401).
#[test]
fn keep_alive_connections_cannot_hold_the_slots() {
    let mut results = Vec::new();
    for with_auth in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let web = with_auth.then(|| auth_only(4));
        let (_rme, port) = start(dir.path(), web.as_deref());
        let wrong = with_auth.then(|| basic("x:x"));
        let attack = Attack::start(port, 64, Duration::from_secs(2), move |_| wrong.clone());
        let end = Instant::now() + Duration::from_secs(30);
        while attack.answers.load(Ordering::Relaxed) < 64 {
            assert!(
                Instant::now() < end,
                "the attacker's connections were not answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let auth = with_auth.then(|| basic(&format!("prometheus:{PASSWORD}")));
        let (answered, lat) = scrapes(port, auth.as_deref(), 20, Duration::from_millis(100));
        let attacker = attack.answers.load(Ordering::Relaxed);
        drop(attack);
        eprintln!(
            "F4 auth={with_auth}: {answered} of 20 scrapes answered under 64 keep-alive connections, max latency {} ms; attacker answers {attacker}",
            lat.iter().copied().max().map_or(0, ms)
        );
        results.push((with_auth, answered));
    }
    assert_eq!(
        results,
        [(false, 20), (true, 20)],
        "(auth, scrapes answered of 20)"
    );
}

/// F5: failed logins were cached too and evicted the scraper's success (100
/// entries, arbitrary eviction), and every request waited for one bcrypt at a
/// time: 60 attacker connections sending fresh passwords pushed a scrape to
/// 5.7 s. Now successes are kept apart (a failure cannot evict one), at most a
/// few checks wait for bcrypt (one per peer address) and the rest are refused
/// at once, so the scraper's remembered success answers at once.
#[test]
fn failed_logins_cannot_evict_or_delay_a_remembered_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let web = auth_only(10);
    let (_rme, port) = start(dir.path(), Some(&web));
    let auth = basic(&format!("prometheus:{PASSWORD}"));
    // the scraper's success is remembered before the attack (start() scraped already)
    let (answered, lat) = scrapes(port, Some(&auth), 5, Duration::from_millis(100));
    assert_eq!(answered, 5);
    let quiet = lat.iter().copied().max().unwrap();
    let attack = Attack::start(port, 64, Duration::from_millis(100), |i| {
        Some(basic(&format!("prometheus:guess-{i}-{}", fastrand_ish(i))))
    });
    // let the attack fill whatever it can fill
    std::thread::sleep(Duration::from_secs(2));
    let (answered, lat) = scrapes(port, Some(&auth), 20, Duration::from_millis(250));
    let attacker = attack.answers.load(Ordering::Relaxed);
    drop(attack);
    let max = lat.iter().copied().max().unwrap_or_default();
    let mut sorted = lat.clone();
    sorted.sort();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "F5: quiet max {} ms; under 64 connections guessing passwords: {answered} of 20 scrapes answered, p50 {} ms, max {} ms; attacker answers {attacker}",
        ms(quiet),
        ms(p50),
        ms(max)
    );
    assert_eq!(answered, 20);
    // generous: a remembered success needs no bcrypt at all (before: 5.7 s)
    assert!(max < Duration::from_secs(2), "a scrape took {} ms", ms(max));
}

/// A distinct-enough number per request without another dependency.
fn fastrand_ish(i: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ t
}
