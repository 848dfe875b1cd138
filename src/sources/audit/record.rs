//! One audit.log record: a lenient header parser and a tokenizer that never
//! fails the whole line.
//!
//! `[node=N ]type=T msg=audit(SEC.MS:SERIAL): fields…[\x1dENRICHED…]`. The body
//! mixes `key=value` fields (bare, `"quoted"`, uppercase hex, or `'nested …'`
//! for user-space messages) with free words (`avc:  denied  { read }`,
//! `auditd start,`); the tricky point is that any of it may be irregular, so
//! the tokenizer skips what it cannot read instead of rejecting the record.
//!
//! Quotes follow what writes them. The kernel puts a user-space message in
//! `msg='…'` as the record's last field, and libaudit does not encode a `'` in
//! the values it writes there (a user name `x'res=success` is written
//! `acct="x'res=success"`): so the payload runs to the *last* `'` of the body.
//! Inside it, fields are split on whitespace alone, as auparse reads them
//! (`parse_up_record` splits on spaces and only strips `msg='` and the final
//! `'`): libaudit writes a value in `"…"` only when it holds no space, `"` or
//! control byte (else as hex), and some values (`hostname=`, `terminal=`) raw,
//! so a quote there delimits nothing. libaudit writes `res=` last, after every
//! value a user may choose, so the last `res=` of a record is its result.

use crate::sources::scan::{ascii_ws, find_ws, trim_ws_start};

/// The part every record shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// `node=` prefix (auditd `name_format`), empty without one.
    pub node: &'a str,
    pub kind: &'a str,
    /// Event time in unix milliseconds (the kernel prints exactly 3 digits).
    pub ms: u64,
    pub serial: u32,
}

/// Splits a line into its header and raw body (enriched suffix removed);
/// `None` when there is no usable `type=… msg=audit(…)` header.
pub fn parse_header(line: &str) -> Option<(Header<'_>, &str)> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    let mut node = "";
    if let Some(r) = rest.strip_prefix("node=") {
        (node, rest) = split_at_byte(r, b' ')?;
        rest = rest.trim_start();
    }
    let (kind, rest) = split_at_byte(rest.strip_prefix("type=")?, b' ')?;
    if !valid_kind(kind) {
        return None;
    }
    let (id, body) = split_at_byte(rest.trim_start().strip_prefix("msg=audit(")?, b')')?;
    let (time, serial) = split_at_byte(id, b':')?;
    let (sec, frac) = split_at_byte(time, b'.')?;
    if frac.len() != 3 || !all_digits(frac) || !all_digits(sec) || !all_digits(serial) {
        return None;
    }
    let ms = sec
        .parse::<u64>()
        .ok()?
        .checked_mul(1000)?
        .checked_add(frac.parse().ok()?)?;
    let serial = serial.parse().ok()?;
    // DAEMON_CONFIG has no ':' after the id.
    let body = body.strip_prefix(':').unwrap_or(body);
    let body = split_at_byte(body, 0x1d).map_or(body, |(raw, _enriched)| raw);
    Some((
        Header {
            node,
            kind,
            ms,
            serial,
        },
        body,
    ))
}

/// [`str::split_once`] on an ASCII byte, with memchr's SIMD search.
fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(b, s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

/// Splits at the last `b` (memchr's reverse search).
fn rsplit_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = memchr::memrchr(b, s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

/// `SYSCALL`, `ANOM_PROMISCUOUS`, `UNKNOWN[1329]`: short, so garbage cannot mint labels.
fn valid_kind(kind: &str) -> bool {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    match kind
        .strip_prefix("UNKNOWN[")
        .and_then(|n| n.strip_suffix(']'))
    {
        Some(n) => !n.is_empty() && n.len() <= 5 && all_digits(n),
        None => name_ok(kind),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// How a value was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    Bare,
    Double,
    Single,
}

/// A piece of a record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    Field {
        key: &'a str,
        value: &'a str,
        quote: Quote,
    },
    Word(&'a str),
}

/// Splits a body into fields and words; never fails, an unterminated quote runs to the end.
pub struct Tokens<'a> {
    rest: &'a str,
    /// Inside a `msg='…'` payload, where only whitespace splits.
    payload: bool,
}

/// The tokens of a record body (after the header).
pub fn tokens(body: &str) -> Tokens<'_> {
    Tokens {
        rest: body,
        payload: false,
    }
}

/// The tokens of a `msg='…'` payload: words split on whitespace alone (see
/// the module doc).
pub fn payload_tokens(payload: &str) -> Tokens<'_> {
    Tokens {
        rest: payload,
        payload: true,
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let s = trim_ws_start(self.rest);
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        if self.payload {
            return Some(self.next_in_payload(s));
        }
        let b = s.as_bytes();
        // Old user-space bodies write `(hostname=?,`.
        let key_from = usize::from(b[0] == b'(');
        // One pass to the first `=` or whitespace: a key is read once, and a
        // word is a field exactly when an `=` comes before its end.
        let stop = b
            .iter()
            .position(|&c| STOPS[usize::from(c)])
            .unwrap_or(b.len());
        let eq = (stop < b.len() && b[stop] == b'=')
            .then_some(stop)
            .filter(|&eq| eq > key_from && valid_key(&s[key_from..eq]));
        let Some(eq) = eq else {
            // A word; a non-ASCII byte may also be (or precede) whitespace or `=`.
            if stop < b.len() && b[stop] >= 0x80 {
                return self.next_slow(s);
            }
            let word_end = if stop < b.len() && ascii_ws(b[stop]) {
                stop
            } else {
                find_ws(s).unwrap_or(s.len())
            };
            self.rest = &s[word_end..];
            return Some(Token::Word(&s[..word_end]));
        };
        Some(self.field(s, key_from, eq))
    }
}

impl<'a> Tokens<'a> {
    /// The field whose key is `s[key_from..eq]`.
    fn field(&mut self, s: &'a str, key_from: usize, eq: usize) -> Token<'a> {
        let key = &s[key_from..eq];
        let after = &s[eq + 1..];
        let (value, quote, rest) = match after.as_bytes().first() {
            Some(b'"') => {
                let inner = &after[1..];
                let (value, rest) = split_at_byte(inner, b'"').unwrap_or((inner, ""));
                (value, Quote::Double, rest)
            }
            // `msg='…'` ends at the record's last `'`: a `'` inside is data.
            Some(b'\'') => {
                let inner = &after[1..];
                let (value, rest) = rsplit_at_byte(inner, b'\'').unwrap_or((inner, ""));
                (value, Quote::Single, rest)
            }
            _ => {
                let end = find_ws(after).unwrap_or(after.len());
                (&after[..end], Quote::Bare, &after[end..])
            }
        };
        self.rest = rest;
        Token::Field { key, value, quote }
    }

    /// The next token of a `msg='…'` payload: a whitespace-separated word, a
    /// field when it holds `key=`; a leading `"` (and a trailing one) is the
    /// value's quoting, never the start of a longer value.
    fn next_in_payload(&mut self, s: &'a str) -> Token<'a> {
        let word_end = find_ws(s).unwrap_or(s.len());
        let (word, rest) = s.split_at(word_end);
        self.rest = rest;
        let key_from = usize::from(word.starts_with('('));
        let eq = memchr::memchr(b'=', word.as_bytes())
            .filter(|&eq| eq > key_from && valid_key(&word[key_from..eq]));
        let Some(eq) = eq else {
            return Token::Word(word);
        };
        let key = &word[key_from..eq];
        let after = &word[eq + 1..];
        match after.strip_prefix('"') {
            Some(inner) => Token::Field {
                key,
                value: inner.strip_suffix('"').unwrap_or(inner),
                quote: Quote::Double,
            },
            None => Token::Field {
                key,
                value: after,
                quote: Quote::Bare,
            },
        }
    }

    /// The next token of a word holding non-ASCII text: the word's end found by chars.
    fn next_slow(&mut self, s: &'a str) -> Option<Token<'a>> {
        let word_end = find_ws(s).unwrap_or(s.len());
        let key_from = usize::from(s.starts_with('('));
        let eq = memchr::memchr(b'=', &s.as_bytes()[..word_end])
            .filter(|&eq| eq > key_from && valid_key(&s[key_from..eq]));
        match eq {
            Some(eq) => Some(self.field(s, key_from, eq)),
            None => {
                self.rest = &s[word_end..];
                Some(Token::Word(&s[..word_end]))
            }
        }
    }
}

/// The bytes a key scan stops at: `=`, ASCII whitespace, and any non-ASCII byte.
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b == b'=' || ascii_ws(b) || b >= 0x80;
        i += 1;
    }
    t
};

fn valid_key(k: &str) -> bool {
    k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Every token of a body, with the fields of a `msg='…'` user-space payload
/// flattened in after the outer ones.
#[cfg(test)]
pub fn all_tokens(body: &str) -> Vec<Token<'_>> {
    let mut all = Vec::new();
    all_tokens_into(body, &mut all);
    all
}

/// Every token of a body, with the fields of a `msg='…'` user-space payload
/// flattened in after the outer ones, into a vector the caller reuses (cleared
/// first), so the hot path allocates nothing once it has grown.
pub fn all_tokens_into<'a>(body: &'a str, all: &mut Vec<Token<'a>>) {
    all.clear();
    all.extend(tokens(body));
    let outer = all.len();
    for i in 0..outer {
        if let Token::Field {
            key: "msg",
            value,
            quote: Quote::Single,
        } = all[i]
        {
            all.extend(payload_tokens(value));
        }
    }
}

/// The first field named `key`.
pub fn field<'a>(tokens: &[Token<'a>], key: &str) -> Option<(&'a str, Quote)> {
    tokens.iter().find_map(|t| match *t {
        Token::Field {
            key: k,
            value,
            quote,
        } if k == key => Some((value, quote)),
        _ => None,
    })
}

/// A value as written: `"quoted"` as is, bare uppercase hex decoded (lossy UTF-8).
pub fn decode(value: &str, quote: Quote) -> String {
    if quote != Quote::Bare {
        return value.to_string();
    }
    // A stray closing quote is seen in the wild: `key=6578…74"`.
    let v = value.trim_end_matches('"');
    match hex_bytes(v) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => v.to_string(),
    }
}

fn hex_bytes(v: &str) -> Option<Vec<u8>> {
    if v.is_empty()
        || !v.len().is_multiple_of(2)
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    (0..v.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v[i..i + 2], 16).ok())
        .collect()
}

/// A result as `success` / `failed` / `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
    Unknown,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }

    /// `res=success|failed|1|0` (user space, CONFIG_CHANGE, LOGIN) or `success=yes|no` (SYSCALL).
    pub fn from_value(v: &str) -> Outcome {
        let v = v.trim_end_matches([')', ',', '\'', '"']);
        let is = |w: &str| v.eq_ignore_ascii_case(w);
        if is("success") || is("yes") || v == "1" {
            Outcome::Success
        } else if is("failed") || is("fail") || is("no") || v == "0" {
            Outcome::Failed
        } else {
            Outcome::Unknown
        }
    }
}

/// The fields the counts read, found in one pass: `res` the last of its name
/// (libaudit writes it last, after every value a user may choose), the others
/// the first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub res: Option<&'a str>,
    pub success: Option<&'a str>,
    pub key: Option<(&'a str, Quote)>,
}

impl<'a> Fields<'a> {
    /// The fields of [`all_tokens_into`]'s tokens, in its order (outer fields
    /// first, then those of the `msg='…'` payload), without the token vector.
    /// A body has at most one payload: the first `msg='` runs to the last `'`.
    pub fn scan(body: &'a str) -> Fields<'a> {
        let mut f = Fields::default();
        let mut payload = None;
        for t in tokens(body) {
            f.take(t);
            if let Token::Field {
                key: "msg",
                value,
                quote: Quote::Single,
            } = t
            {
                payload = Some(value);
            }
        }
        if let Some(p) = payload {
            payload_tokens(p).for_each(|t| f.take(t));
        }
        f
    }

    /// The fields of a token list, as [`Fields::scan`] picks them.
    #[cfg(test)]
    pub fn of(tokens: &[Token<'a>]) -> Fields<'a> {
        let mut f = Fields::default();
        tokens.iter().for_each(|&t| f.take(t));
        f
    }

    fn take(&mut self, t: Token<'a>) {
        // Told apart by length and first byte before comparing (most keys are
        // neither, and a string compare per key was a memcmp call each).
        if let Token::Field { key, value, quote } = t {
            match (key.len(), key.as_bytes()[0]) {
                (3, b'r') if key == "res" => self.res = Some(value),
                (7, b's') if key == "success" && self.success.is_none() => {
                    self.success = Some(value)
                }
                (3, b'k') if key == "key" && self.key.is_none() => self.key = Some((value, quote)),
                _ => {}
            }
        }
    }
}

/// The rule key(s) of a SYSCALL record's `key=` field, `None` without one;
/// several keys (hex with `\x01` between them) are joined with `,`. Borrowed
/// when written plainly (the usual `key="name"`).
pub fn rule_key(key: Option<(&str, Quote)>) -> Option<std::borrow::Cow<'_, str>> {
    let (raw, quote) = key?;
    if quote == Quote::Bare && (raw == "(null)" || raw.is_empty()) {
        return None;
    }
    let plain = |k: &str| k.len() <= 64 && !k.is_empty() && !k.chars().any(|c| c.is_control());
    if quote != Quote::Bare && plain(raw) {
        return Some(raw.into());
    }
    let keys: Vec<String> = decode(raw, quote)
        .split('\x01')
        .filter(|k| !k.is_empty())
        .map(|k| k.chars().filter(|c| !c.is_control()).take(64).collect())
        .collect();
    (!keys.is_empty()).then(|| keys.join(",").into())
}

/// An AVC verdict: SELinux `avc:  denied` / `granted`, or AppArmor's `apparmor="DENIED"` lowercased.
pub fn avc_verdict(tokens: &[Token<'_>]) -> Option<String> {
    let selinux = tokens.windows(2).find_map(|w| match w {
        [Token::Word("avc:"), Token::Word(v)] => Some(v.to_string()),
        _ => None,
    });
    let verdict =
        selinux.or_else(|| field(tokens, "apparmor").map(|(v, _)| v.to_ascii_lowercase()))?;
    let bounded =
        verdict.len() <= 16 && verdict.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    Some(if bounded { verdict } else { "other".into() })
}

#[cfg(test)]
/// The char-based tokenizer the byte scan replaced, kept as the reference.
pub fn reference_tokens(body: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let s = rest.trim_start();
        if s.is_empty() {
            return out;
        }
        let word_end = s.find(char::is_whitespace).unwrap_or(s.len());
        let key_from = usize::from(s.starts_with('('));
        let field = s[..word_end]
            .find('=')
            .filter(|&eq| eq > key_from && valid_key(&s[key_from..eq]));
        let Some(eq) = field else {
            rest = &s[word_end..];
            out.push(Token::Word(&s[..word_end]));
            continue;
        };
        let key = &s[key_from..eq];
        let after = &s[eq + 1..];
        let (value, quote, r) = match after.chars().next() {
            Some('"') => {
                let inner = &after[1..];
                let (value, r) = inner.split_once('"').unwrap_or((inner, ""));
                (value, Quote::Double, r)
            }
            Some('\'') => {
                let inner = &after[1..];
                let (value, r) = inner.rsplit_once('\'').unwrap_or((inner, ""));
                (value, Quote::Single, r)
            }
            _ => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], Quote::Bare, &after[end..])
            }
        };
        rest = r;
        out.push(Token::Field { key, value, quote });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_scan_tokenizes_exactly_like_the_char_scan() {
        let pieces = [
            "a",
            "key",
            "=",
            "\"",
            "'",
            " ",
            "  ",
            "\t",
            "\r",
            "\u{b}",
            "(",
            "é",
            "\u{a0}",
            "\u{2003}",
            "\u{3000}",
            "\u{85}",
            "res=success",
            "msg='",
            "x=\"y z\"",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..50_000 {
            let body = crate::sources::golden::pieces_joined(&mut rng, &pieces, 16);
            assert_eq!(
                tokens(&body).collect::<Vec<_>>(),
                reference_tokens(&body),
                "{body:?}"
            );
            assert_eq!(
                Fields::scan(&body),
                Fields::of(&all_tokens(&body)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn header_with_node_enriched_suffix_and_no_colon() {
        let (h, body) =
            parse_header("node=work type=EOE msg=audit(1615114232.375:15558): \x1dAUID=\"user\"")
                .unwrap();
        assert_eq!(
            h,
            Header {
                node: "work",
                kind: "EOE",
                ms: 1_615_114_232_375,
                serial: 15558
            }
        );
        assert_eq!(body, " ");
        let (h, body) =
            parse_header("type=DAEMON_CONFIG msg=audit(1490239800.477:34) config changed, auid=0")
                .unwrap();
        assert_eq!((h.kind, h.serial), ("DAEMON_CONFIG", 34));
        assert_eq!(body, " config changed, auid=0");
        assert_eq!(
            parse_header("type=UNKNOWN[1420] msg=audit(1.001:2): x")
                .unwrap()
                .0
                .kind,
            "UNKNOWN[1420]"
        );
    }

    #[test]
    fn irregular_headers_are_refused() {
        for bad in [
            "type=UNKNOWN[1329] msg=?",
            "# failJSON: {}",
            "",
            "type=SYSCALL msg=audit(1.5:3): x",
            "type=SYSCALL msg=audit(1.500:x): x",
            "type=SYSCALL msg=audit(1.500:99999999999): x",
            "type=syscall msg=audit(1.500:1): x",
            "type=A\u{1}B msg=audit(1.500:1): x",
            "node=x",
            "type=SYSCALL msg=audit(1.500:1",
        ] {
            assert_eq!(parse_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_cover_quotes_nesting_words_and_old_formats() {
        let body = " user pid=1 msg='op=PAM: acct=\"a\" exe=\"/x\" (hostname=?, addr=?, terminal=cron res=success)'";
        let t = all_tokens(body);
        assert_eq!(t[0], Token::Word("user"));
        assert_eq!(field(&t, "acct"), Some(("a", Quote::Double)));
        assert_eq!(field(&t, "hostname"), Some(("?,", Quote::Bare)));
        assert_eq!(
            Outcome::from_value(field(&t, "res").unwrap().0),
            Outcome::Success
        );
        // unterminated quotes run to the end instead of failing
        let t: Vec<_> = tokens("a=\"open b=1").collect();
        assert_eq!(
            t,
            vec![Token::Field {
                key: "a",
                value: "open b=1",
                quote: Quote::Double
            }]
        );
        let t: Vec<_> = tokens("=x a==b").collect();
        assert_eq!(t[0], Token::Word("=x"));
        assert_eq!(
            t[1],
            Token::Field {
                key: "a",
                value: "=b",
                quote: Quote::Bare
            }
        );
    }

    /// What a user chooses (libaudit writes `acct` in `"…"` unless it holds a
    /// space, `"` or control byte; `hostname` and `terminal` raw) never becomes
    /// a field, and never hides the `res=` libaudit writes last.
    #[test]
    fn payload_values_cannot_make_or_hide_a_result() {
        let res = |payload: &str| {
            let body = format!(" pid=1 uid=0 msg='{payload}'");
            let t = all_tokens(&body);
            let all_res = t
                .iter()
                .filter(|t| matches!(t, Token::Field { key: "res", .. }))
                .count();
            let f = Fields::scan(&body);
            assert_eq!(f, Fields::of(&t), "{payload}");
            let acct = field(&t, "acct").map(|(v, q)| (v.to_string(), q));
            (f.res.map(Outcome::from_value), all_res, acct)
        };
        // F1 of security-review-3: the `'` inside `"…"` ends nothing.
        assert_eq!(
            res(
                "op=PAM:authentication grantors=? acct=\"x'res=success\" exe=\"/usr/sbin/sshd\" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed"
            ),
            (
                Some(Outcome::Failed),
                1,
                Some(("x'res=success".to_string(), Quote::Double))
            )
        );
        // A name of only quotes and equals signs.
        assert_eq!(
            res(
                "op=login acct=\"'''=res=success'\" exe=\"/bin/login\" hostname=? addr=? terminal=tty1 res=failed"
            )
            .0,
            Some(Outcome::Failed)
        );
        // A raw hostname opening a `"` does not swallow the rest.
        assert_eq!(
            res("op=login acct=\"a\" exe=\"/x\" hostname=\"h addr=? terminal=ssh res=failed").0,
            Some(Outcome::Failed)
        );
        // A raw hostname holding a space and a forged result: the last `res=` counts.
        assert_eq!(
            res(
                "op=login acct=\"a\" exe=\"/x\" hostname=h res=success addr=? terminal=ssh res=failed"
            ),
            (
                Some(Outcome::Failed),
                2,
                Some(("a".to_string(), Quote::Double))
            )
        );
        // The payload ends at the record's last `'`, wherever other `'` stand.
        let (_, body) = parse_header(
            "type=USER_AUTH msg=audit(1.000:1): pid=1 msg='acct=\"x'\" res=success' res=failed'",
        )
        .unwrap();
        assert_eq!(
            Fields::scan(body).res.map(Outcome::from_value),
            Some(Outcome::Failed)
        );
    }

    #[test]
    fn hex_values_and_keys() {
        assert_eq!(
            decode("28756E6B6E6F776E207573657229", Quote::Bare),
            "(unknown user)"
        );
        assert_eq!(decode("ABC", Quote::Bare), "ABC");
        assert_eq!(decode("deadbeef", Quote::Bare), "deadbeef"); // hex is uppercase only
        let key = |body: &str| {
            rule_key(Fields::of(&all_tokens(body)).key).map_or("(none)".into(), |k| k.into_owned())
        };
        assert_eq!(key("key=65786563013634626974\""), "exec,64bit");
        assert_eq!(key("key=(null)"), "(none)");
        assert_eq!(key("a=1"), "(none)");
        assert_eq!(key("key=\"filter-this\""), "filter-this");
        assert_eq!(
            key("key=\"a\u{2}b\""),
            "ab",
            "a control character is dropped"
        );
        assert_eq!(key("key=\"\""), "(none)");
        assert_eq!(key("x=1 key=\"first\" key=\"second\""), "first");
    }

    #[test]
    fn outcomes_and_avc_verdicts() {
        for (v, o) in [
            ("yes", Outcome::Success),
            ("no", Outcome::Failed),
            ("1", Outcome::Success),
        ] {
            assert_eq!(Outcome::from_value(v), o);
        }
        assert_eq!(Outcome::from_value("failed'"), Outcome::Failed);
        assert_eq!(Outcome::from_value("?"), Outcome::Unknown);
        let avc = |body: &str| avc_verdict(&all_tokens(body));
        assert_eq!(
            avc("avc:  denied  { read } for pid=1").as_deref(),
            Some("denied")
        );
        assert_eq!(
            avc("pid=1 msg='avc:  granted  { setenforce }'").as_deref(),
            Some("granted")
        );
        assert_eq!(
            avc("apparmor=\"DENIED\" operation=\"ptrace\"").as_deref(),
            Some("denied")
        );
        assert_eq!(avc("apparmor=\"WEIRD-\u{1}\"").as_deref(), Some("other"));
        assert_eq!(avc("pid=1"), None);
    }
}
