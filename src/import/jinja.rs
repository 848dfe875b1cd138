//! The Jinja2 templates reaction-metrics-exporter applies to a pattern's value
//! (`{{ email.split('@') | last }}`), turned into rme label rewrites.
//!
//! Only a small, exact subset translates: one `{{ var … }}` with literal text
//! around it, where `var` is the pattern and each step is a string operation a
//! whole-value regex replacement (or lower-casing) does exactly:
//! `.split(SEP)` then `[N]` / `[-1]` / `| first` / `| last`; `[N]`, `[-N]` and
//! slices `[a:b]`, `[a:]`, `[:b]`, `[-n:]`, `[:-n]` of a string; `| first` /
//! `| last` of a string; `.lower()` / `| lower`; `.strip()` / `.lstrip()` /
//! `.rstrip()` / `| trim`; `| string`. Anything else is refused with the reason,
//! so the importer can name it: never a rewrite that only looks right.
//!
//! Python semantics kept: an index past the end gives Jinja's undefined, i.e.
//! an empty value (a removed label in rme, an empty one the TSDB drops in the exporter).

/// One rewrite of the value, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Whole-value regex and replacement (`${1}` style groups).
    Replace {
        regex: String,
        replacement: String,
    },
    Lowercase,
}

/// Translates `template` (rendered with the pattern's value bound to `var`).
/// The error is why it cannot be translated.
pub fn translate(template: &str, var: &str) -> Result<Vec<Step>, String> {
    if template.contains("{%") || template.contains("{#") {
        return Err("Jinja statements and comments ({% %}, {# #}) are not translated".into());
    }
    // Jinja drops one trailing newline of a template by default.
    let template = template.strip_suffix('\n').unwrap_or(template);
    let Some(open) = template.find("{{") else {
        return Ok(vec![constant(template)]);
    };
    let rest = &template[open + 2..];
    let close = rest
        .find("}}")
        .ok_or_else(|| "`{{` without `}}`".to_string())?;
    let (mut prefix, mut inner, mut suffix) =
        (&template[..open], &rest[..close], &rest[close + 2..]);
    if suffix.contains("{{") {
        return Err("more than one {{ }} expression".into());
    }
    // whitespace control: `{{-` and `-}}` trim the text beside them
    if let Some(i) = inner.strip_prefix('-') {
        inner = i;
        prefix = prefix.trim_end();
    }
    if let Some(i) = inner.strip_suffix('-') {
        inner = i;
        suffix = suffix.trim_start();
    }
    let mut steps = expression(&tokens(inner)?, var)?;
    if !prefix.is_empty() || !suffix.is_empty() {
        let wrap = |r: &str| format!("{}{r}{}", literal(prefix), literal(suffix));
        match steps.last_mut() {
            Some(Step::Replace { replacement, .. }) => *replacement = wrap(replacement),
            _ => steps.push(Step::Replace {
                regex: "(?s)(.*)".into(),
                replacement: wrap("${1}"),
            }),
        }
    }
    Ok(steps)
}

/// A template without `{{ }}`: every value becomes this text.
fn constant(text: &str) -> Step {
    Step::Replace {
        regex: "(?s).*".into(),
        replacement: literal(text),
    }
}

/// Text for a replacement, `$` escaped.
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Punct(char),
}

fn tokens(expr: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_alphabetic() || c == '_' {
            let mut id = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                id.push(c);
                chars.next();
            }
            out.push(Tok::Ident(id));
        } else if c.is_ascii_digit() || c == '-' {
            chars.next();
            let mut digits = c.to_string();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(d);
                chars.next();
            }
            let n = digits
                .parse()
                .map_err(|_| format!("`{digits}` is not translated"))?;
            out.push(Tok::Int(n));
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string".into()),
                    Some(q) if q == c => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(e @ ('\\' | '\'' | '"')) => s.push(e),
                        Some(e) => {
                            s.push('\\');
                            s.push(e);
                        }
                        None => return Err("unterminated string".into()),
                    },
                    Some(x) => s.push(x),
                }
            }
            out.push(Tok::Str(s));
        } else if ".()[]:|,".contains(c) {
            chars.next();
            out.push(Tok::Punct(c));
        } else {
            return Err(format!("`{c}` is not translated"));
        }
    }
    Ok(out)
}

fn show(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => s.clone(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Int(n) => n.to_string(),
        Tok::Punct(c) => c.to_string(),
    }
}

/// What the expression holds so far.
enum Value {
    Str,
    /// The result of `.split(sep)`.
    List(String),
}

/// A literal argument list `( … )` at `toks[*i]`, if one is there.
fn args(toks: &[Tok], i: &mut usize) -> Result<Vec<Tok>, String> {
    if toks.get(*i) != Some(&Tok::Punct('(')) {
        return Ok(Vec::new());
    }
    *i += 1;
    let mut out = Vec::new();
    loop {
        match toks.get(*i) {
            Some(Tok::Punct(')')) => {
                *i += 1;
                return Ok(out);
            }
            Some(t @ (Tok::Str(_) | Tok::Int(_))) if out.len() < 8 => {
                out.push(t.clone());
                *i += 1;
                match toks.get(*i) {
                    Some(Tok::Punct(',')) => *i += 1,
                    Some(Tok::Punct(')')) => {}
                    _ => return Err("only literal arguments are translated".into()),
                }
            }
            _ => return Err("only literal arguments are translated".into()),
        }
    }
}

/// `[N]`, `[a:b]`: (start, stop, is_slice).
fn subscript(toks: &[Tok], i: &mut usize) -> Result<(Option<i64>, Option<i64>, bool), String> {
    let int = |t: Option<&Tok>| match t {
        Some(Tok::Int(n)) => Some(*n),
        _ => None,
    };
    let start = int(toks.get(*i));
    if start.is_some() {
        *i += 1;
    }
    let slice = toks.get(*i) == Some(&Tok::Punct(':'));
    let mut stop = None;
    if slice {
        *i += 1;
        stop = int(toks.get(*i));
        if stop.is_some() {
            *i += 1;
        }
    }
    if toks.get(*i) != Some(&Tok::Punct(']')) || (!slice && start.is_none()) {
        return Err("only integer indexes and slices `[a:b]` are translated".into());
    }
    *i += 1;
    if [start, stop]
        .iter()
        .flatten()
        .any(|n| n.unsigned_abs() > 1000)
    {
        return Err("indexes beyond 1000 are not translated".into());
    }
    Ok((start, stop, slice))
}

fn replace(regex: String) -> Step {
    Step::Replace {
        regex,
        replacement: "${1}".into(),
    }
}

fn expression(toks: &[Tok], var: &str) -> Result<Vec<Step>, String> {
    match toks.first() {
        Some(Tok::Ident(v)) if v == var => {}
        Some(Tok::Ident(v)) => {
            return Err(format!(
                "it reads `{v}`, but the exporter renders it with only `{var}` set"
            ));
        }
        _ => return Err("it does not start with the pattern's name".into()),
    }
    let mut steps = Vec::new();
    let mut value = Value::Str;
    let mut filtered = false;
    let mut i = 1;
    while i < toks.len() {
        let tok = &toks[i];
        i += 1;
        match (tok, &value) {
            (Tok::Punct('.'), _) if !filtered => {
                let Some(Tok::Ident(method)) = toks.get(i) else {
                    return Err("`.` must be followed by a method name".into());
                };
                i += 1;
                if toks.get(i) != Some(&Tok::Punct('(')) {
                    return Err(format!("attribute `.{method}` is not translated"));
                }
                let a = args(toks, &mut i)?;
                value = method_call(method, &a, value, &mut steps)?;
            }
            (Tok::Punct('['), _) if !filtered => {
                let (start, stop, slice) = subscript(toks, &mut i)?;
                steps.extend(index(start, stop, slice, &value)?);
                value = Value::Str;
            }
            (Tok::Punct('|'), _) => {
                filtered = true;
                let Some(Tok::Ident(filter)) = toks.get(i) else {
                    return Err("`|` must be followed by a filter name".into());
                };
                i += 1;
                let a = args(toks, &mut i)?;
                value = filter_call(filter, &a, value, &mut steps)?;
            }
            _ => return Err(format!("`{}` is not translated here", show(tok))),
        }
    }
    match value {
        Value::Str => Ok(steps),
        Value::List(_) => Err(
            "the expression ends with a list (the exporter would print it as Python's list repr)"
                .into(),
        ),
    }
}

fn method_call(
    name: &str,
    args: &[Tok],
    value: Value,
    steps: &mut Vec<Step>,
) -> Result<Value, String> {
    match (name, args, &value) {
        ("split", [Tok::Str(sep)], Value::Str) if !sep.is_empty() => {
            return Ok(Value::List(sep.clone()));
        }
        ("split", [], Value::Str) => {
            return Err(
                "`.split()` without a separator (whitespace runs) is not translated".into(),
            );
        }
        ("lower", [], Value::Str) => steps.push(Step::Lowercase),
        ("strip", [], Value::Str) => steps.push(replace(r"(?s)\s*(.*?)\s*".into())),
        ("lstrip", [], Value::Str) => steps.push(replace(r"(?s)\s*(.*)".into())),
        ("rstrip", [], Value::Str) => steps.push(replace(r"(?s)(.*?)\s*".into())),
        ("replace", _, _) => return Err(REPLACE_ALL.into()),
        ("upper", _, _) => return Err("rme has no upper-case rule".into()),
        _ => return Err(format!("`.{name}(…)` is not translated")),
    }
    Ok(value)
}

const REPLACE_ALL: &str =
    "`replace` rewrites every occurrence; an rme replace rule rewrites one whole-value match";

fn filter_call(
    name: &str,
    args: &[Tok],
    value: Value,
    steps: &mut Vec<Step>,
) -> Result<Value, String> {
    match (name, args) {
        ("first", []) => steps.extend(index(Some(0), None, false, &value)?),
        ("last", []) => steps.extend(index(Some(-1), None, false, &value)?),
        ("lower", []) if matches!(value, Value::Str) => steps.push(Step::Lowercase),
        ("trim", []) if matches!(value, Value::Str) => {
            steps.push(replace(r"(?s)\s*(.*?)\s*".into()))
        }
        ("string", []) if matches!(value, Value::Str) => {}
        ("replace", _) => return Err(REPLACE_ALL.into()),
        ("upper", _) => return Err("rme has no upper-case rule".into()),
        ("truncate", _) => {
            return Err(
                "Jinja's `truncate` cuts at word ends and appends `...`; use a slice `[:N]`".into(),
            );
        }
        _ => return Err(format!("the filter `| {name}` is not translated here")),
    }
    Ok(Value::Str)
}

/// `[N]` or `[a:b]` of the current value, as one whole-value replacement (none for `[:]`).
fn index(
    start: Option<i64>,
    stop: Option<i64>,
    slice: bool,
    value: &Value,
) -> Result<Option<Step>, String> {
    let regex = match (value, slice) {
        (Value::List(sep), false) => {
            let s = regex::escape(sep);
            match start.unwrap_or(0) {
                0 => format!("(?s)(.*?)(?:{s}.*)?"),
                -1 => format!("(?s)(?:.*{s})?(.*)"),
                n if n > 0 => format!("(?s)(?:(?:.*?{s}){{{n}}}(.*?)(?:{s}.*)?|.*)"),
                n => {
                    return Err(format!(
                        "field [{n}] of a split is not translated (only [N] and [-1])"
                    ));
                }
            }
        }
        (Value::List(_), true) => return Err("slices of a split list are not translated".into()),
        (Value::Str, false) => match start.unwrap_or(0) {
            n if n >= 0 => format!("(?s)(?:.{{{n}}}(.).*|.*)"),
            n => format!("(?s)(?:.*(.).{{{}}}|.*)", -n - 1),
        },
        (Value::Str, true) => match (start.unwrap_or(0), stop) {
            (0, None) => return Ok(None),
            (a, None) if a > 0 => format!("(?s).{{0,{a}}}(.*)"),
            (a, None) => format!("(?s).*?(.{{0,{}}})", -a),
            (a, Some(b)) if a >= 0 && b >= 0 && b <= a => "(?s)().*".to_string(),
            (0, Some(b)) if b >= 0 => format!("(?s)(.{{0,{b}}}).*"),
            (a, Some(b)) if a >= 0 && b >= 0 => format!("(?s).{{0,{a}}}(.{{0,{}}}).*", b - a),
            (0, Some(b)) => format!("(?s)(?:(.*).{{{}}}|.*)", -b),
            (a, Some(b)) => return Err(format!("the slice [{a}:{b}] is not translated")),
        },
    };
    Ok(Some(replace(regex)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::relabel::{WholeRegex, lowercase};

    /// Applies the translated steps as rme will; `""` for a removed label.
    fn run(template: &str, var: &str, value: &str) -> String {
        let steps = translate(template, var).unwrap_or_else(|e| panic!("{template}: {e}"));
        let mut v = Some(value.to_string());
        for step in steps {
            v = v.and_then(|v| match &step {
                Step::Replace { regex, replacement } => {
                    WholeRegex::new(regex).unwrap().replace(&v, replacement)
                }
                Step::Lowercase => lowercase(&v),
            });
        }
        v.unwrap_or_default()
    }

    /// Expected values are what Python/Jinja2 give, worked out by hand.
    #[test]
    fn the_readme_example_keeps_the_domain() {
        let t = "{{ email.split('@') | last }}";
        assert_eq!(run(t, "email", "alice@example.org"), "example.org");
        assert_eq!(run(t, "email", "a@b@example.org"), "example.org");
        assert_eq!(run(t, "email", "nobody"), "nobody");
        assert_eq!(run(t, "email", "trailing@"), "");
    }

    #[test]
    fn split_fields() {
        let first = "{{ host.split('.')[0] }}";
        assert_eq!(run(first, "host", "mail.example.org"), "mail");
        assert_eq!(run(first, "host", "localhost"), "localhost");
        assert_eq!(run("{{ host.split('.') | first }}", "host", "a.b"), "a");
        let second = "{{ host.split('.')[1] }}";
        assert_eq!(run(second, "host", "mail.example.org"), "example");
        assert_eq!(run(second, "host", "localhost"), "");
        assert_eq!(run("{{ host.split('.')[2] }}", "host", "a.b.c.d"), "c");
        assert_eq!(run("{{ host.split('.')[-1] }}", "host", "a.b.c"), "c");
        assert_eq!(run("{{ x.split('::')[1] }}", "x", "a::b::c"), "b");
        // regex metacharacters in the separator are literal
        assert_eq!(run("{{ x.split('|')[0] }}", "x", "a|b"), "a");
    }

    #[test]
    fn lower_trim_and_chains() {
        let t = "{{ email.split('@') | last | lower }}";
        assert_eq!(run(t, "email", "Bob@Example.ORG"), "example.org");
        assert_eq!(run("{{ u.lower() }}", "u", "ROOT"), "root");
        assert_eq!(run("{{ u | trim }}", "u", "  a b \t"), "a b");
        assert_eq!(run("{{ u.lstrip() }}", "u", "  a "), "a ");
        assert_eq!(run("{{ u.rstrip() }}", "u", "  a "), "  a");
        assert_eq!(run("{{ u | string }}", "u", "x"), "x");
        assert_eq!(run("{{ u }}", "u", "x"), "x");
        assert!(translate("{{ u }}", "u").unwrap().is_empty());
    }

    #[test]
    fn truncation_and_slices() {
        assert_eq!(run("{{ user[:3] }}", "user", "administrator"), "adm");
        assert_eq!(run("{{ user[:3] }}", "user", "ab"), "ab");
        assert_eq!(run("{{ user[2:] }}", "user", "abcdef"), "cdef");
        assert_eq!(run("{{ user[9:] }}", "user", "abc"), "");
        assert_eq!(run("{{ user[1:3] }}", "user", "abcdef"), "bc");
        assert_eq!(run("{{ user[3:1] }}", "user", "abcdef"), "");
        assert_eq!(run("{{ user[-2:] }}", "user", "abcdef"), "ef");
        assert_eq!(run("{{ user[-2:] }}", "user", "a"), "a");
        assert_eq!(run("{{ user[:-2] }}", "user", "abcdef"), "abcd");
        assert_eq!(run("{{ user[:-2] }}", "user", "a"), "");
        assert_eq!(run("{{ user[:] }}", "user", "abc"), "abc");
        assert!(translate("{{ user[:] }}", "user").unwrap().is_empty());
        // characters, not bytes, as in Python
        assert_eq!(run("{{ user[:2] }}", "user", "éèà"), "éè");
    }

    #[test]
    fn string_indexes() {
        assert_eq!(run("{{ u[0] }}", "u", "abc"), "a");
        assert_eq!(run("{{ u[2] }}", "u", "abc"), "c");
        assert_eq!(run("{{ u[5] }}", "u", "abc"), "");
        assert_eq!(run("{{ u[-1] }}", "u", "abc"), "c");
        assert_eq!(run("{{ u[-3] }}", "u", "abc"), "a");
        assert_eq!(run("{{ u | first }}", "u", "abc"), "a");
        assert_eq!(run("{{ u | last }}", "u", "abc"), "c");
        assert_eq!(run("{{ u | first }}", "u", ""), "");
    }

    #[test]
    fn literal_text_around_the_expression() {
        assert_eq!(
            run("net-{{ ip.split('.')[0] }}", "ip", "203.0.113.9"),
            "net-203"
        );
        assert_eq!(run("{{ ip.split('.')[0] }}0", "ip", "203.0.113.9"), "2030");
        assert_eq!(run("${{ ip }}$1", "ip", "x"), "$x$1");
        assert_eq!(run("<{{ u | lower }}>", "u", "AB"), "<ab>");
        assert_eq!(run("  {{- u -}}  !", "u", "a"), "a!");
        assert_eq!(run("hidden", "u", "anything"), "hidden");
        assert_eq!(run("", "u", "anything"), "");
        assert_eq!(run("{{ u }}\n", "u", "a"), "a");
    }

    #[test]
    fn what_cannot_be_translated_says_why() {
        for (t, why) in [
            ("{{ u | replace('/', '_') }}", "every occurrence"),
            ("{{ u.replace('/', '_') }}", "every occurrence"),
            ("{{ u | upper }}", "upper"),
            ("{{ u | truncate(5) }}", "truncate"),
            ("{{ other }}", "only `u`"),
            ("{% if u %}x{% endif %}", "statements"),
            ("{{ u }}{{ u }}", "more than one"),
            ("{{ u.split('.') }}", "list"),
            ("{{ u.split() | first }}", "whitespace"),
            ("{{ u.split('.')[-2] }}", "[-2]"),
            ("{{ u.split('.')[1:] | join('.') }}", "slices"),
            ("{{ u | hash }}", "`| hash`"),
            ("{{ u + 'x' }}", "`+`"),
            ("{{ u", "without `}}`"),
            ("{{ u | last [0] }}", "not translated"),
        ] {
            let err = translate(t, "u").unwrap_err();
            assert!(err.contains(why), "{t}: {err}");
        }
    }

    #[test]
    fn every_regex_compiles() {
        for t in [
            "{{ u.split('.')[0] }}",
            "{{ u.split('.')[3] }}",
            "{{ u.split('.')[-1] }}",
            "{{ u[1:4] }}",
            "{{ u[-3:] }}",
            "{{ u[:-3] }}",
            "{{ u[3] }}",
            "{{ u[-3] }}",
            "{{ u | trim }}",
        ] {
            for step in translate(t, "u").unwrap() {
                if let Step::Replace { regex, .. } = step {
                    WholeRegex::new(&regex).unwrap();
                }
            }
        }
    }
}
