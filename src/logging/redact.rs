//! Secrets out of log lines and error messages.
//!
//! A sink URL may carry a password (`http://alice:pw@host/…`, which reqwest
//! turns into basic auth) or a token in its query (`?api_key=…`), and HTTP
//! client errors repeat the URL they failed on. [`text`] finds every URL in a
//! message and masks both: `http://alice:***@host/…?api_key=***`. The log
//! writer passes every line through it, and the sinks use [`url`] for the
//! URLs they put into their own messages, so neither a retry warning nor a
//! final error prints a secret.

use std::borrow::Cow;

/// What a masked secret becomes.
pub const MASK: &str = "***";

/// Query parameter names (lowercased) whose values are treated as secrets when
/// they contain one of these words.
const SECRET_PARAMS: [&str; 8] = [
    "token",
    "key",
    "secret",
    "pass",
    "auth",
    "sig",
    "credential",
    "session",
];

/// One URL rendered without its password and secret-looking query values.
pub fn url(raw: &str) -> String {
    text(raw).into_owned()
}

/// `s` with every URL in it masked as [`url`] does, and every query parameter
/// that looks like a token (also in a bare path such as a receiver's echo of
/// `requestURI: /write?api_key=…`); borrowed when nothing changed.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") && !s.contains('=') {
        return Cow::Borrowed(s);
    }
    let masked = mask_params(&mask_userinfo(s));
    if masked == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(masked)
    }
}

/// Where a URL, or a value in one, ends inside a message.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | ',')
}

/// The password of every `scheme://user:password@host`, masked.
fn mask_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| ends_url(c) || matches!(c, '/' | '?' | '#'))
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    // A lone userinfo may itself be a token (`https://TOKEN@host`).
                    None if looks_like_token(userinfo) => out.push_str(MASK),
                    None => out.push_str(userinfo),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The value of every `?name=value` / `&name=value` whose name looks secret, masked.
fn mask_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['?', '&']) {
        let (before, after) = rest.split_at(i + 1);
        out.push_str(before);
        let name_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(after.len());
        let (name, tail) = after.split_at(name_end);
        out.push_str(name);
        rest = tail;
        if let Some(value) = tail.strip_prefix('=')
            && is_secret_param(name)
        {
            let end = value_end(value);
            out.push('=');
            if end > 0 {
                out.push_str(MASK);
            }
            rest = &value[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Where a parameter's value ends: `&`, `#`, `;`, a character that ends a URL,
/// or a `:` that ends the URL in a message (`POST http://h/w?key=k: refused`).
fn value_end(value: &str) -> usize {
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let colon_ends = c == ':' && chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
        if ends_url(c) || matches!(c, '&' | '#' | ';') || colon_ends {
            return i;
        }
    }
    value.len()
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|w| name.contains(w))
}

/// A user name of 20+ characters with digits and letters is more likely a token.
fn looks_like_token(user: &str) -> bool {
    user.len() >= 20
        && user.chars().any(|c| c.is_ascii_digit())
        && user.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_token_parameters_are_masked() {
        assert_eq!(
            url("http://alice:s3cret@vm.example:8428/api/v1/write"),
            "http://alice:***@vm.example:8428/api/v1/write"
        );
        assert_eq!(
            url("https://h/v1/metrics?api_key=abc&tenant=t1&X-Auth-Token=z#frag"),
            "https://h/v1/metrics?api_key=***&tenant=t1&X-Auth-Token=***#frag"
        );
        assert_eq!(
            url("https://ghp0123456789abcdefghijklmn@h/"),
            "https://***@h/"
        );
        assert_eq!(url("http://alice@h/"), "http://alice@h/");
        // an '@' in the path is not userinfo
        assert_eq!(url("http://h/a@b:c"), "http://h/a@b:c");
        assert_eq!(url("http://h/?q=1&key="), "http://h/?q=1&key=");
    }

    #[test]
    fn urls_inside_messages_are_found() {
        let msg = "POST http://u:p%40ss@127.0.0.1:1/w: error sending request for url (http://u:p%40ss@127.0.0.1:1/w): connection refused";
        let got = text(msg);
        assert!(!got.contains("p%40ss"), "{got}");
        assert_eq!(got.matches("u:***@127.0.0.1:1/w").count(), 2, "{got}");
        assert!(got.ends_with("/w): connection refused"), "{got}");
        assert!(matches!(text("no url here"), Cow::Borrowed(_)));
        assert_eq!(
            text("HTTP 400: requestURI: /api/v1/nowrite?api_key=tok&x=; unsupported path"),
            "HTTP 400: requestURI: /api/v1/nowrite?api_key=***&x=; unsupported path"
        );
        assert_eq!(text("a & b, c=d"), "a & b, c=d");
        assert_eq!(
            text("POST http://h/w?key=k:1: refused"),
            "POST http://h/w?key=***: refused"
        );
        assert!(matches!(text("http://h:1/w is down"), Cow::Borrowed(_)));
    }
}
