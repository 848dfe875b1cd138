//! `action = "geoip"`: adds `country` (and, with an ASN database, `asn` and
//! optionally `as_org`) derived from an IP address label.
//!
//! Databases: MaxMind-format `.mmdb` files (GeoLite2 / DB-IP lite Country and
//! ASN layouts: `country.iso_code`, `autonomous_system_number`,
//! `autonomous_system_organization`; ip-location-db's `country_code` too) read
//! with the `maxminddb` crate, and Debian's `tor-geoipdb` text tables
//! (`/usr/share/tor/geoip`: `FROM,TO,CC` with IPv4 addresses as integers;
//! `geoip6`: `FROM,TO,CC` with IPv6 addresses), loaded into sorted ranges and
//! searched by bisection. With no `country_db`, the tor tables are used when
//! installed. A database is read once when the rules are compiled; SIGHUP
//! re-executes rme, so a file replaced on disk is read again then.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// The label value when an address is not in the database (or is no address).
pub const UNKNOWN: &str = "unknown";

/// Debian's `tor-geoipdb` tables, the default country database.
pub const TOR_GEOIP: &str = "/usr/share/tor/geoip";

/// The keys of a `geoip` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// A country `.mmdb`, or tor's `geoip` table (its `geoip6` is read from beside
    /// it). Default: /usr/share/tor/geoip{,6} (Debian package `tor-geoipdb`).
    #[serde(default)]
    pub country_db: Option<PathBuf>,
    /// An ASN `.mmdb` (GeoLite2-ASN, DB-IP ASN lite): adds `asn`.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// Also add `as_org`, the AS's organisation name (needs `asn_db`). Default false.
    #[serde(default)]
    pub as_org: bool,
    /// Keep the address label itself. Default true (set false, or add a `top`
    /// or `drop` rule for it, to bound cardinality).
    #[serde(default = "yes")]
    pub keep: bool,
}

fn yes() -> bool {
    true
}

impl Default for GeoipConfig {
    fn default() -> Self {
        GeoipConfig {
            country_db: None,
            asn_db: None,
            as_org: false,
            keep: true,
        }
    }
}

impl GeoipConfig {
    pub fn resolve_paths(&mut self, fix: &dyn Fn(&mut PathBuf)) {
        self.country_db
            .iter_mut()
            .chain(self.asn_db.iter_mut())
            .for_each(fix);
    }

    /// Opens the databases; errors name `key.country_db` / `key.asn_db`.
    pub fn open(&self, key: &str) -> Result<Geo, Invalid> {
        if self.as_org && self.asn_db.is_none() {
            return Err(Invalid::new(format!("{key}.as_org"), "needs `asn_db`"));
        }
        let country = match &self.country_db {
            Some(path) => Country::open(path).map_err(|e| {
                Invalid::new(
                    format!("{key}.country_db"),
                    format!("{}: {e}", path.display()),
                )
            })?,
            None if Path::new(TOR_GEOIP).exists() => {
                Country::open(Path::new(TOR_GEOIP)).map_err(|e| {
                    Invalid::new(
                        format!("{key}.country_db"),
                        format!("(default {TOR_GEOIP}): {e}"),
                    )
                })?
            }
            None => {
                return Err(Invalid::new(
                    format!("{key}.country_db"),
                    format!(
                        "no database named and {TOR_GEOIP} is not installed \
                         (Debian/Ubuntu: apt install tor-geoipdb)"
                    ),
                ));
            }
        };
        let asn = match &self.asn_db {
            Some(path) => Some(open_mmdb(path).map_err(|e| {
                Invalid::new(format!("{key}.asn_db"), format!("{}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Geo {
            country,
            asn,
            as_org: self.as_org,
        })
    }
}

/// Opened databases: what a compiled `geoip` rule looks addresses up in.
pub struct Geo {
    country: Country,
    asn: Option<maxminddb::Reader<Vec<u8>>>,
    as_org: bool,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("country", &self.country.kind())
            .field("asn", &self.asn.is_some())
            .field("as_org", &self.as_org)
            .finish()
    }
}

impl Geo {
    /// The labels this rule adds for `value`: `country`, then `asn` and `as_org`
    /// when configured; `unknown` where the database has nothing (or `value` is
    /// no IP address).
    pub fn labels(&self, value: &str) -> Vec<(&'static str, String)> {
        let ip = value.trim().parse::<IpAddr>().ok();
        let mut out = vec![(
            "country",
            ip.and_then(|ip| self.country.lookup(ip))
                .unwrap_or(UNKNOWN)
                .to_string(),
        )];
        if let Some(asn) = &self.asn {
            let found = ip.and_then(|ip| asn.lookup(ip).ok());
            // any unsigned type: GeoLite2 has uint32, other writers pick the smallest
            let number = found
                .as_ref()
                .and_then(|r| {
                    let path = maxminddb::path!["autonomous_system_number"];
                    r.decode_path::<serde_json::Value>(&path).ok()
                })
                .flatten()
                .and_then(|v| v.as_u64());
            out.push(("asn", number.map_or(UNKNOWN.to_string(), |n| n.to_string())));
            if self.as_org {
                let org: Option<&str> = found
                    .as_ref()
                    .and_then(|r| {
                        r.decode_path(&maxminddb::path!["autonomous_system_organization"])
                            .ok()
                    })
                    .flatten();
                out.push(("as_org", org.unwrap_or(UNKNOWN).to_string()));
            }
        }
        out
    }

    /// The ISO 3166 alpha-2 code of `ip`, if the country database has one.
    pub fn country(&self, ip: IpAddr) -> Option<&str> {
        self.country.lookup(ip)
    }
}

/// A country database: an mmdb, or tor's two tables.
enum Country {
    Mmdb(maxminddb::Reader<Vec<u8>>),
    Tor(TorTables),
}

impl Country {
    fn kind(&self) -> &'static str {
        match self {
            Country::Mmdb(_) => "mmdb",
            Country::Tor(_) => "tor",
        }
    }

    /// An `.mmdb` (recognised by its metadata marker) or a tor table.
    fn open(path: &Path) -> Result<Country, String> {
        if is_mmdb(path).map_err(|e| e.to_string())? {
            let reader = maxminddb::Reader::open_readfile(path).map_err(|e| e.to_string())?;
            return Ok(Country::Mmdb(reader));
        }
        let lines = |p: &Path| {
            std::fs::File::open(p)
                .map(std::io::BufReader::new)
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        let mut tables = TorTables {
            v4: Ranges::parse(lines(path)?, |s| s.parse::<u32>().ok())?,
            v6: Ranges::default(),
        };
        let v6 = path.with_file_name(format!(
            "{}6",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("geoip")
        ));
        if v6.exists() {
            tables.v6 = Ranges::parse(lines(&v6)?, |s| {
                s.parse::<std::net::Ipv6Addr>().ok().map(u128::from)
            })
            .map_err(|e| format!("{}: {e}", v6.display()))?;
        }
        if tables.v4.from.is_empty() && tables.v6.from.is_empty() {
            return Err("no ranges in this table".into());
        }
        Ok(Country::Tor(tables))
    }

    fn lookup(&self, ip: IpAddr) -> Option<&str> {
        match self {
            Country::Tor(t) => t.lookup(ip),
            Country::Mmdb(r) => {
                let found = r.lookup(ip).ok()?;
                let code = |path: &[maxminddb::PathElement<'_>]| {
                    found.decode_path::<&str>(path).ok().flatten()
                };
                code(&maxminddb::path!["country", "iso_code"])
                    .or_else(|| code(&maxminddb::path!["country_code"]))
                    .or_else(|| code(&maxminddb::path!["registered_country", "iso_code"]))
                    .filter(|c| !c.is_empty())
            }
        }
    }
}

/// The marker before an mmdb file's metadata section.
const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The format puts that marker in the file's last 128 KiB.
const MMDB_METADATA_MAX: usize = 128 * 1024;

#[derive(Default)]
struct TorTables {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

impl TorTables {
    fn lookup(&self, ip: IpAddr) -> Option<&str> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            // IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are IPv4 ones
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.lookup(u32::from(v4)),
                None => self.v6.lookup(u128::from(a)),
            },
        }
    }
}

/// Sorted, non-overlapping `[from, to]` ranges with a two-letter code each,
/// kept as three arrays (13 MB for both tor tables instead of 22 MB as tuples).
#[derive(Default)]
struct Ranges<T> {
    from: Vec<T>,
    to: Vec<T>,
    code: Vec<[u8; 2]>,
}

impl<T: Copy + Ord> Ranges<T> {
    /// `FROM,TO,CC` lines; `#` comments and blank lines skipped; `??` (tor's
    /// "unknown") rows left out. A malformed line is an error naming its number.
    /// Read line by line into the three arrays: loading costs little more
    /// memory than the loaded table.
    fn parse(
        mut input: impl std::io::BufRead,
        addr: impl Fn(&str) -> Option<T>,
    ) -> Result<Ranges<T>, String> {
        let mut out = Ranges {
            from: Vec::new(),
            to: Vec::new(),
            code: Vec::new(),
        };
        let mut buf = String::new();
        let mut n = 0;
        loop {
            buf.clear();
            if input.read_line(&mut buf).map_err(|e| e.to_string())? == 0 {
                break;
            }
            n += 1;
            let line = buf.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {n}: expected FROM,TO,CC, got {line:?}");
            let mut parts = line.split(',');
            let (Some(from), Some(to), Some(cc), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let (Some(from), Some(to)) = (addr(from.trim()), addr(to.trim())) else {
                return Err(bad());
            };
            let cc = cc.trim().as_bytes();
            if cc.len() != 2 || from > to || !cc.iter().all(|b| b.is_ascii_graphic()) {
                return Err(bad());
            }
            if cc != b"??" {
                out.from.push(from);
                out.to.push(to);
                out.code.push([cc[0], cc[1]]);
            }
        }
        if !out.from.is_sorted() {
            let mut order: Vec<usize> = (0..out.from.len()).collect();
            order.sort_unstable_by_key(|&i| out.from[i]);
            out = Ranges {
                from: order.iter().map(|&i| out.from[i]).collect(),
                to: order.iter().map(|&i| out.to[i]).collect(),
                code: order.iter().map(|&i| out.code[i]).collect(),
            };
        }
        if (1..out.from.len()).any(|i| out.from[i] <= out.to[i - 1]) {
            return Err("overlapping ranges".into());
        }
        out.from.shrink_to_fit();
        out.to.shrink_to_fit();
        out.code.shrink_to_fit();
        Ok(out)
    }

    fn lookup(&self, at: T) -> Option<&str> {
        let i = self.from.partition_point(|&f| f <= at).checked_sub(1)?;
        if at > self.to[i] {
            return None;
        }
        std::str::from_utf8(&self.code[i]).ok()
    }
}

/// Whether `path` ends like an mmdb file (its metadata marker in the last 128 KiB).
fn is_mmdb(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(
        len.saturating_sub(MMDB_METADATA_MAX as u64),
    ))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    Ok(tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER))
}

fn open_mmdb(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, String> {
    maxminddb::Reader::open_readfile(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tor(v4: &str, v6: &str) -> (tempfile::TempDir, GeoipConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("geoip"), v4).expect("write");
        std::fs::write(dir.path().join("geoip6"), v6).expect("write");
        let config = GeoipConfig {
            country_db: Some(dir.path().join("geoip")),
            ..GeoipConfig::default()
        };
        (dir, config)
    }

    const V4: &str =
        "# comment\n\n16777216,16777471,AU\n134744064,134744319,US\n3405803776,3405804031,??\n";
    const V6: &str = "# c\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,XX\n";

    #[test]
    fn tor_tables_are_searched_by_range() {
        let (_d, c) = tor(V4, V6);
        let geo = c.open("store.labels[0]").expect("open");
        let country = |s: &str| geo.labels(s)[0].1.clone();
        assert_eq!(country("1.0.0.0"), "AU");
        assert_eq!(country("1.0.0.255"), "AU");
        assert_eq!(country("1.0.1.0"), UNKNOWN);
        assert_eq!(country("8.8.8.8"), "US");
        assert_eq!(country("0.0.0.1"), UNKNOWN);
        assert_eq!(country("203.0.113.5"), UNKNOWN, "?? is unknown");
        assert_eq!(country("2001:db8::1"), "XX");
        assert_eq!(country("::ffff:8.8.8.8"), "US");
        assert_eq!(country("2001:db9::1"), UNKNOWN);
        assert_eq!(country("not-an-ip"), UNKNOWN);
        assert_eq!(geo.labels("8.8.8.8").len(), 1, "no asn without asn_db");
    }

    #[test]
    fn bad_databases_name_the_key() {
        let c = GeoipConfig {
            country_db: Some("/nonexistent/GeoLite2-Country.mmdb".into()),
            ..GeoipConfig::default()
        };
        let e = c.open("store.labels[1]").unwrap_err();
        assert_eq!(e.key, "store.labels[1].country_db");
        assert!(
            e.reason.contains("/nonexistent/GeoLite2-Country.mmdb"),
            "{e}"
        );

        let (_d, c) = tor("1,2,AU\nthis is not a range\n", "");
        let e = c.open("store.labels[1]").unwrap_err();
        assert!(e.reason.contains("line 2"), "{e}");

        let (_d, c) = tor("1,5,AU\n3,9,US\n", "");
        assert!(c.open("k").unwrap_err().reason.contains("overlapping"));

        let (_d, mut c) = tor(V4, V6);
        c.asn_db = Some("/nonexistent/asn.mmdb".into());
        assert_eq!(c.open("k").unwrap_err().key, "k.asn_db");
        c.asn_db = None;
        c.as_org = true;
        assert_eq!(c.open("k").unwrap_err().key, "k.as_org");
    }

    /// The real Debian table, when installed (the integration tests install it
    /// and compare with an independent lookup).
    #[test]
    fn debian_tor_geoipdb_when_installed() {
        if !Path::new(TOR_GEOIP).exists() {
            eprintln!("{TOR_GEOIP} not installed; skipped");
            return;
        }
        let geo = GeoipConfig::default().open("k").expect("default db");
        assert_eq!(geo.labels("10.0.0.1")[0].1, UNKNOWN);
        assert_eq!(geo.labels("8.8.8.8")[0].1.len(), 2);
    }
}
