//! Checks the `# Layout` list of `lib.rs` against the code: every `crate::`
//! path outside the tests (and every `rme::` path of `main.rs`) names a module
//! on a lower layer than the module it is written in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module (`agent`, `serve`, `main`, ...) and its layer, from
/// the numbered lines of `lib.rs`'s `# Layout`: `N. \`room\`, \`room\`: ...`.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    // (layer, its rooms so far, whether the `: ` after them was seen)
    let mut entries: Vec<(usize, String, bool)> = Vec::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let numbered = rest
            .split_once(". ")
            .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)));
        match (numbered, entries.last_mut()) {
            (Some((layer, rest)), _) => entries.push((layer, rest.to_string(), false)),
            // a room list wrapped onto the next line
            (None, Some((_, rooms, false))) if rest.starts_with("   ") => {
                rooms.push(' ');
                rooms.push_str(rest.trim());
            }
            _ => continue,
        }
        let (_, rooms, done) = entries.last_mut().unwrap();
        if let Some((r, _)) = rooms.split_once(": ") {
            *rooms = r.to_string();
            *done = true;
        }
    }
    let mut out = BTreeMap::new();
    for (layer, rooms, _) in entries {
        for room in rooms.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let name = room.trim_matches('`');
            let name = name.strip_suffix(".rs").or(name.strip_suffix('/'));
            let name =
                name.unwrap_or_else(|| panic!("layer {layer}: `{room}` is not `x.rs` or `x/`"));
            out.insert(name.to_string(), layer);
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to (`agent/read.rs` → `agent`).
fn room(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The production text of a file: up to its `#[cfg(test)] mod tests`, and
/// nothing from test-only files; doc and comment lines left out.
fn production(path: &Path, text: &str) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if ["tests.rs", "golden.rs", "samples.rs", "layers.rs"].contains(&name.as_ref()) {
        return String::new();
    }
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if !line.trim_start().starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The modules a text names through `crate::x` (or, in `main.rs`, `rme::x`),
/// also the top-level items of `use crate::{x::y, z}` groups over several lines.
fn named(text: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let Some(group) = rest.strip_prefix('{') else {
            out.push(ident(rest));
            continue;
        };
        // the items at depth 0 of the group
        let (mut depth, mut start) = (0, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && (c.is_alphanumeric() || c == '_') => {
                    start = false;
                    out.push(ident(&group[i..]));
                }
                _ => {}
            }
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_run_downhill() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(layers.len() > 10, "the layer list was not read: {layers:?}");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let from = room(rel);
        if from == "lib" || from == "layers" {
            continue;
        }
        let Some(&up) = layers.get(&from) else {
            wrong.push(format!(
                "{}: `{from}` is on no layer of lib.rs's # Layout",
                rel.display()
            ));
            continue;
        };
        let prefix = if from == "main" { "rme::" } else { "crate::" };
        let text = std::fs::read_to_string(&path).unwrap();
        for to in named(&production(rel, &text), prefix) {
            match layers.get(&to) {
                _ if to == from => {}
                Some(&down) if down > up => {}
                Some(&down) => wrong.push(format!(
                    "{}: `{from}` (layer {up}) uses `{to}` (layer {down})",
                    rel.display()
                )),
                None => wrong.push(format!("{}: `{to}` is on no layer", rel.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against lib.rs's # Layout:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_an_import_up_and_a_group() {
    let layers = layers(
        "//! 1. `main.rs`: the CLI.\n//! 2. `agent/`, `store/`: the engine.\n//!    3. not a layer\n//! 3. `invalid.rs`: errors.\n",
    );
    assert_eq!(layers["main"], 1);
    assert_eq!(layers["store"], 2);
    assert_eq!(layers["invalid"], 3);
    assert_eq!(layers.len(), 4);
    assert_eq!(
        named(
            "use crate::{\n    store::{Store, Series},\n    invalid::Invalid, self};",
            "crate::"
        ),
        ["store", "invalid"]
    );
    assert_eq!(
        named("let x = crate::agent::run(); $crate::no;", "crate::"),
        ["agent"]
    );
    let text = "use crate::a;\n// crate::b\n#[cfg(test)]\nmod tests {\n    use crate::c;\n}\n";
    assert_eq!(production(Path::new("x.rs"), text), "use crate::a;\n");
}
