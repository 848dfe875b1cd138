//! Text scans the parsers share: whitespace exactly as [`char::is_whitespace`]
//! and [`str::trim_start`] see it, by bytes while the text is ASCII (log lines
//! nearly always are) and by chars from the first non-ASCII byte on.

/// ASCII whitespace as [`char::is_whitespace`] sees it (`\t`..=`\r` and space).
pub const fn ascii_ws(b: u8) -> bool {
    b == b' ' || (b >= b'\t' && b <= b'\r')
}

/// The first whitespace of `s`, by [`char::is_whitespace`]: a byte scan while
/// the text is ASCII, chars from the first non-ASCII byte on (a char boundary,
/// since every byte before it was ASCII).
pub fn find_ws(s: &str) -> Option<usize> {
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if ascii_ws(b) {
            return Some(i);
        }
        if b >= 0x80 {
            return s[i..].find(char::is_whitespace).map(|j| i + j);
        }
    }
    None
}

/// [`str::trim_start`] with the same ASCII fast path as [`find_ws`].
pub fn trim_ws_start(s: &str) -> &str {
    match s.as_bytes().iter().position(|&b| !ascii_ws(b)) {
        Some(i) if s.as_bytes()[i] >= 0x80 => s[i..].trim_start(),
        Some(i) => &s[i..],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_scans_agree_with_the_char_scans() {
        let pieces = [
            "a", " ", "\t", "\r", "\n", "\u{b}", "\u{c}", "é", "\u{a0}", "\u{85}", "\u{2003}",
            "\u{3000}", "=", "\u{1}",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let s = crate::sources::golden::pieces_joined(&mut rng, &pieces, 10);
            assert_eq!(find_ws(&s), s.find(char::is_whitespace), "{s:?}");
            assert_eq!(trim_ws_start(&s), s.trim_start(), "{s:?}");
        }
    }
}
