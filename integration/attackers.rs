//! Attackers as labels, bounded: `geoip` against Debian's real `tor-geoipdb`
//! tables (checked with an independent lookup written here in Python), `.mmdb`
//! fixtures built by PyPI `mmdb-writer`, and `top` over a generated reaction
//! log of 100,000 distinct addresses with a heavy-tailed (Zipf) distribution,
//! also through VictoriaMetrics over two `push --once` runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{append, peer, push_once, root, run_rme, stderr, unique, write};

const TOR_GEOIP: &str = "/usr/share/tor/geoip";

/// Python with `mmdb-writer`, installed by `peers.sh install` (PEERS_TOOLS).
fn mmdb_python() -> PathBuf {
    let tools = std::env::var("PEERS_TOOLS").unwrap_or_else(|_| "/opt/rme-peers".into());
    let py = Path::new(&tools).join("mmdb-writer/bin/python");
    assert!(
        py.exists(),
        "{} missing: run `integration/peers/peers.sh install`",
        py.display()
    );
    py
}

fn tor_installed() {
    assert!(
        Path::new(TOR_GEOIP).exists(),
        "{TOR_GEOIP} missing: run `integration/peers/peers.sh install` (Debian package tor-geoipdb)"
    );
}

/// Runs python3 (or `python`) with a script and stdin; returns stdout.
fn python(python: &Path, script: &str, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer.join().expect("writer").expect("writing to python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An independent country lookup over tor's tables: sorted starts, bisect,
/// `??` and gaps as `unknown`. Reads addresses on stdin, prints `ip cc`.
const TOR_LOOKUP: &str = r#"
import bisect, ipaddress, sys
def load(path, conv):
    rows = []
    for line in open(path):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        a, b, cc = line.split(',')
        rows.append((conv(a), conv(b), cc))
    rows.sort()
    return [r[0] for r in rows], rows
v4 = load(sys.argv[1], int)
v6 = load(sys.argv[1] + '6', lambda s: int(ipaddress.IPv6Address(s)))
for ip in sys.stdin.read().split():
    a = ipaddress.ip_address(ip)
    starts, rows = v4 if a.version == 4 else v6
    n = int(a)
    i = bisect.bisect_right(starts, n) - 1
    cc = 'unknown'
    if i >= 0 and rows[i][0] <= n <= rows[i][1] and rows[i][2] != '??':
        cc = rows[i][2]
    print(ip, cc)
"#;

/// Some addresses: random IPv4 and IPv6 ones, and the first and last address
/// of random rows of both tables and their neighbours (edges are where an
/// off-by-one hides).
const PICK_ADDRESSES: &str = r#"
import ipaddress, random, sys
rng = random.Random(11)
out = set()
for path, conv, to in ((sys.argv[1], int, ipaddress.IPv4Address), (sys.argv[1] + '6', lambda s: int(ipaddress.IPv6Address(s)), ipaddress.IPv6Address)):
    rows = [l.strip().split(',') for l in open(path) if l.strip() and not l.startswith('#')]
    top = 2**32 - 1 if to is ipaddress.IPv4Address else 2**128 - 1
    for a, b, _ in rng.sample(rows, 400):
        for n in (conv(a) - 1, conv(a), conv(b), conv(b) + 1):
            if 0 <= n <= top:
                out.add(str(to(n)))
for _ in range(1500):
    out.add(str(ipaddress.IPv4Address(rng.getrandbits(32))))
for _ in range(500):
    out.add(str(ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125))))
print('\n'.join(sorted(out)))
"#;

/// One `reaction_match_total` sample line of an exposition: its labels and value.
fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .filter_map(|l| {
            let (labels, value) = l[metric.len() + 1..].rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|kv| kv.split_once("=\""))
                .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn reaction_config() -> PathBuf {
    root().join("src/sources/testdata/reaction/v1-app_example.yml")
}

/// rme.toml for a reaction log with pattern label `ip`, the given rules, and sinks.
fn config(dir: &Path, rules: &str, sinks: &str) -> PathBuf {
    let text = format!(
        "state_dir = \"state\"\n{rules}\n[[sources]]\ntype = \"reaction\"\nlog = \"reaction.log\"\n\
         config = \"{}\"\npattern_labels = [\"ip\"]\n{sinks}\n",
        reaction_config().display()
    );
    write(dir, "rme.toml", &text)
}

fn match_lines(ips: &[&str]) -> String {
    ips.iter()
        .map(|ip| format!("2026/11/24 10:00:00 INFO  ssh.failedlogin: match [{ip}]\n"))
        .collect()
}

#[test]
fn geoip_countries_match_an_independent_lookup_over_debians_tor_tables() {
    tor_installed();
    let py = Path::new("python3");
    let picked = python(py, PICK_ADDRESSES, &[TOR_GEOIP], "");
    let ips: Vec<&str> = picked.split_whitespace().collect();
    assert!(ips.len() > 3000, "{}", ips.len());
    let expected: HashMap<String, String> = python(py, TOR_LOOKUP, &[TOR_GEOIP], &picked)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(ip, cc)| (ip.to_string(), cc.to_string()))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "reaction.log", &match_lines(&ips));
    // no country_db: the Debian tables are the default
    let rules = "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\n";
    let cfg = config(dir.path(), rules, "[[sinks]]\ntype = \"stdout\"\n");
    let text = push_once(&cfg);
    let got: HashMap<String, String> = samples(&text, "reaction_match_total")
        .into_iter()
        .map(|(l, _)| (l["ip"].clone(), l["country"].clone()))
        .collect();
    assert_eq!(got.len(), ips.len());
    let wrong: Vec<_> = got
        .iter()
        .filter(|(ip, cc)| expected.get(*ip) != Some(cc))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "differ from the independent lookup: {wrong:?}"
    );
    let known = got.values().filter(|c| *c != "unknown").count();
    assert!(known > ips.len() / 2, "{known} of {} found", ips.len());
}

/// A country and an ASN `.mmdb` built by mmdb-writer in the GeoLite2 layouts.
const WRITE_MMDB: &str = r#"
import sys
from netaddr import IPSet
from mmdb_writer import MMDBWriter
out = sys.argv[1]
c = MMDBWriter(ip_version=6, database_type='GeoLite2-Country', ipv4_compatible=True)
c.insert_network(IPSet(['203.0.113.0/24']), {'country': {'iso_code': 'ZZ'}})
c.insert_network(IPSet(['198.51.100.0/24', '2001:db8::/32']), {'country': {'iso_code': 'XX'}})
c.to_db_file(out + '/country.mmdb')
a = MMDBWriter(ip_version=6, database_type='GeoLite2-ASN', ipv4_compatible=True)
a.insert_network(IPSet(['203.0.113.0/25']), {'autonomous_system_number': 64500, 'autonomous_system_organization': 'Example Transit'})
a.insert_network(IPSet(['2001:db8::/32']), {'autonomous_system_number': 64501, 'autonomous_system_organization': 'Doc Net'})
a.to_db_file(out + '/asn.mmdb')
"#;

#[test]
fn geoip_from_mmdb_fixtures_adds_country_asn_and_org() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    python(&mmdb_python(), WRITE_MMDB, &[d], "");
    let ips = [
        "203.0.113.5",
        "203.0.113.200",
        "198.51.100.7",
        "2001:db8::1",
        "192.0.2.1",
    ];
    write(dir.path(), "reaction.log", &match_lines(&ips));
    let rules = format!(
        "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\ncountry_db = \"{d}/country.mmdb\"\n\
         asn_db = \"{d}/asn.mmdb\"\nas_org = true\nkeep = false\n"
    );
    let cfg = config(dir.path(), &rules, "[[sinks]]\ntype = \"stdout\"\n");
    let text = push_once(&cfg);
    let mut got: Vec<String> = samples(&text, "reaction_match_total")
        .into_iter()
        .map(|(l, v)| {
            assert!(!l.contains_key("ip"), "keep = false drops the address");
            format!("{} {} {} {v}", l["country"], l["asn"], l["as_org"])
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "XX 64501 Doc Net 1",
            "XX unknown unknown 1",
            "ZZ 64500 Example Transit 1",
            "ZZ unknown unknown 1",
            "unknown unknown unknown 1",
        ]
    );

    // a database that is not one is a config error naming the key
    write(dir.path(), "bad.mmdb", "not a database\n");
    let bad = format!(
        "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\nasn_db = \"{d}/bad.mmdb\"\ncountry_db = \"{d}/country.mmdb\"\n"
    );
    let cfg = config(dir.path(), &bad, "[[sinks]]\ntype = \"stdout\"\n");
    let out = run_rme(&["check-config", cfg.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("store.labels[0].asn_db"),
        "{}",
        stderr(&out)
    );
}

/// The generated log (examples/attackers_log.py): 100,000 distinct addresses.
fn attackers_log(dir: &Path) -> (PathBuf, String) {
    let text = python(
        Path::new("python3"),
        &std::fs::read_to_string(root().join("examples/attackers_log.py")).expect("generator"),
        &["--ips", "100000", "--total", "100000"],
        "",
    );
    (write(dir, "all.log", &text), text)
}

/// Matches per address, counted from the log itself.
fn truth(log: &str) -> HashMap<String, u64> {
    let mut n = HashMap::new();
    for l in log.lines() {
        if let Some(ip) = l
            .split_once("ssh.failedlogin: match [")
            .and_then(|(_, r)| r.strip_suffix(']'))
        {
            *n.entry(ip.to_string()).or_default() += 1;
        }
    }
    n
}

fn top_ten(truth: &HashMap<String, u64>) -> Vec<String> {
    let mut all: Vec<_> = truth.iter().collect();
    all.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    all.into_iter().take(10).map(|(ip, _)| ip.clone()).collect()
}

#[test]
fn top_k_bounds_a_100k_address_log_and_keeps_the_true_top() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, text) = attackers_log(dir.path());
    std::fs::rename(&all, dir.path().join("reaction.log")).expect("rename");
    let truth = truth(&text);
    assert_eq!(truth.len(), 100_000);
    let total: u64 = truth.values().sum();
    let rules = "[[store.labels]]\nlabel = \"ip\"\naction = \"top\"\nk = 20\n";
    let cfg = config(dir.path(), rules, "[[sinks]]\ntype = \"stdout\"\n");
    let out = push_once(&cfg);
    let matches = samples(&out, "reaction_match_total");
    assert!(matches.len() <= 21, "{} series", matches.len());
    let sum: f64 = matches.iter().map(|(_, v)| v).sum();
    assert_eq!(sum as u64, total, "every match counted once");
    let own: HashMap<&str, f64> = matches
        .iter()
        .map(|(l, v)| (l["ip"].as_str(), *v))
        .collect();
    for ip in top_ten(&truth) {
        let got = own.get(ip.as_str()).copied().unwrap_or(0.0);
        assert!(got > 0.0, "{ip} ({} matches) has no series", truth[&ip]);
        assert!(got as u64 <= truth[&ip]);
    }
    assert!(own.contains_key("other"));
    // ban runs are their own metric, so their own family
    let actions = samples(&out, "reaction_action_total");
    assert!(
        !actions.is_empty() && actions.len() <= 21,
        "{}",
        actions.len()
    );
}

fn curl(url: &str, params: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-G", url]);
    for (k, v) in params {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = cmd.output().expect("curl");
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `query` at now, as label value of `by` → value.
fn promql(vm: &str, query: &str, by: &str) -> BTreeMap<String, f64> {
    curl(&format!("{vm}/internal/force_flush"), &[]);
    let v: Value = serde_json::from_str(&curl(&format!("{vm}/api/v1/query"), &[("query", query)]))
        .expect("JSON");
    v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            let key = r["metric"][by].as_str().unwrap_or_default().to_string();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (key, value)
        })
        .collect()
}

/// geoip then top, two `push --once` runs (the log grows between them) into
/// VictoriaMetrics: `sum by (country)` equals an independent count, per
/// country family at most k + 1 series, the total is every match.
#[test]
fn geoip_and_top_through_victoriametrics_over_two_runs() {
    tor_installed();
    let env = peer("vm");
    let vm = &env["VM_URL"];
    let job = unique("attackers");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, text) = attackers_log(dir.path());
    let truth = truth(&text);
    let ips: String = truth.keys().map(|k| format!("{k}\n")).collect();
    let countries: HashMap<String, String> =
        python(Path::new("python3"), TOR_LOOKUP, &[TOR_GEOIP], &ips)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(ip, cc)| (ip.to_string(), cc.to_string()))
            .collect();
    let mut by_country: BTreeMap<String, f64> = BTreeMap::new();
    for (ip, n) in &truth {
        *by_country.entry(countries[ip].clone()).or_default() += *n as f64;
    }

    let rules = "[[store.labels]]\nlabel = \"ip\"\naction = \"geoip\"\n\
                 [[store.labels]]\nlabel = \"ip\"\naction = \"top\"\nk = 20\n";
    let sinks = format!(
        "[[sinks]]\ntype = \"remote_write\"\nurl = \"{}\"\nexternal_labels = {{ job = \"{job}\" }}\n",
        env["VM_WRITE_URL"]
    );
    let cfg = config(dir.path(), rules, &sinks);
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let log = dir.path().join("reaction.log");
    append(&log, &(first.join("\n") + "\n"));
    push_once(&cfg);
    append(&log, &(second.join("\n") + "\n"));
    push_once(&cfg);

    let sel = format!("reaction_match_total{{job=\"{job}\"}}");
    let mut got = promql(vm, &format!("sum by (country) ({sel})"), "country");
    for _ in 0..20 {
        if got.values().sum::<f64>() == truth.values().sum::<u64>() as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        got = promql(vm, &format!("sum by (country) ({sel})"), "country");
    }
    assert_eq!(got, by_country, "sum by (country)");
    let per_family = promql(vm, &format!("count by (country) ({sel})"), "country");
    let (worst, n) = per_family
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("families");
    assert!(*n <= 21.0, "{worst}: {n} series");
    let own = promql(vm, &format!("sum by (ip) ({sel})"), "ip");
    for ip in top_ten(&truth) {
        assert!(own.get(&ip).is_some_and(|v| *v > 0.0), "{ip} missing");
    }
}
