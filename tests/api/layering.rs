//! Imports point inward (DESIGN.md §8, CONVENTIONS.md habit 13): nothing
//! below the edge imports axum, tower-http or `crate::http`, and the store
//! knows no request flow (`crate::requests`).
//!
//! The edge: `src/http/`, the HTML pages (`src/pages/`, `src/web/`),
//! `src/cli/`, `src/bin/`, `src/lib.rs` and `src/main.rs`.
//!
//! The check reads the source, not the compiler's view: comments and
//! string, character and raw-string literals are skipped; paths are read
//! from the remaining tokens (so a `use` tree such as
//! `use crate::{audit, http::error};` and a qualified path such as
//! `axum::Json` in an expression both count), and `self::`/`super::` are
//! resolved against the file's module and its inline `mod … { }` blocks.

use std::path::Path;

/// Crates only the edge may name: the web framework and its middleware.
const EDGE_CRATES: &[&str] = &["axum", "tower_http", "utoipa_axum"];

/// Files of the edge, by their path from the crate root (`/` separated).
fn is_edge(file: &str) -> bool {
    [
        "src/http/",
        "src/pages/",
        "src/web/",
        "src/cli/",
        "src/bin/",
    ]
    .iter()
    .any(|dir| file.starts_with(dir))
        || file == "src/lib.rs"
        || file == "src/main.rs"
}

/// One reference a file may not make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    /// The path as written, e.g. `crate::http::error::ApiError`.
    path: String,
    rule: &'static str,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` ({})",
            self.file, self.line, self.path, self.rule
        )
    }
}

const EDGE_RULE: &str = "only the edge may import axum, tower_http or crate::http";
const STORE_RULE: &str = "the store may not name crate::requests";

/// The forbidden references in `source`, the text of the file at `file`
/// (its path from the crate root, e.g. `src/store/sql.rs`).
fn violations(file: &str, source: &str) -> Vec<Violation> {
    if is_edge(file) {
        return Vec::new();
    }
    let store = file.starts_with("src/store/");
    let mut out = Vec::new();
    for found in paths(&tokens(source), &module_of(file)) {
        let rule = match &found.target {
            Target::Crate(first) if EDGE_CRATES.contains(&first.as_str()) => EDGE_RULE,
            Target::Local(abs) if abs.first().is_some_and(|s| s == "http") => EDGE_RULE,
            Target::Local(abs) if store && abs.first().is_some_and(|s| s == "requests") => {
                STORE_RULE
            }
            _ => continue,
        };
        let v = Violation {
            file: file.to_owned(),
            line: found.line,
            path: found.written,
            rule,
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The module a file is, as a path from the crate root:
/// `src/store/sql.rs` → `store::sql`, `src/store/mod.rs` → `store`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    if parts.first().is_some_and(|p| p == "bin") {
        // Every file under src/bin/ is a crate of its own.
        parts.clear();
    }
    parts
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    /// `->` or `=>` (so that their `>` does not end a generic argument list)
    Arrow,
    Punct(char),
}

/// The tokens of `src` with their line numbers; comments and literals are
/// dropped (a lifetime's name stays, harmlessly, as an identifier).
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Moves past c[from..to], counting the newlines in it.
    let skip = |from: usize, to: usize, line: &mut usize| {
        *line += c[from..to.min(c.len())]
            .iter()
            .filter(|&&ch| ch == '\n')
            .count();
        to
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let end = block_comment_end(&c, i);
            i = skip(i, end, &mut line);
        } else if ch == '"' {
            let end = string_end(&c, i + 1);
            i = skip(i, end, &mut line);
        } else if ch == '\'' {
            i = match char_literal_end(&c, i) {
                Some(end) => skip(i, end, &mut line),
                None => i + 1, // a lifetime or label: its name follows
            };
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let prefix = matches!(word.as_str(), "b" | "c" | "r" | "br" | "cr");
            if prefix && c.get(i) == Some(&'"') && !word.contains('r') {
                let end = string_end(&c, i + 1);
                i = skip(i, end, &mut line);
            } else if prefix && word.contains('r') && matches!(c.get(i), Some('"' | '#')) {
                match raw_string_end(&c, i) {
                    Some(end) => i = skip(i, end, &mut line),
                    // `r#ident`: a raw identifier.
                    None if c.get(i) == Some(&'#') => i += 1,
                    None => out.push((Tok::Ident(word), line)),
                }
            } else if word == "b" && c.get(i) == Some(&'\'') {
                if let Some(end) = char_literal_end(&c, i) {
                    i = skip(i, end, &mut line);
                }
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch == ':' && next == Some(':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else if matches!(ch, '-' | '=') && next == Some('>') {
            out.push((Tok::Arrow, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The index after the block comment opening at `start` (comments nest).
fn block_comment_end(c: &[char], start: usize) -> usize {
    let (mut i, mut depth) = (start + 2, 1);
    while i < c.len() && depth > 0 {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    i
}

/// The index after the closing quote of a string whose text starts at `i`.
fn string_end(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// `r"…"`, `r#"…"#`, …: `i` is just after the `r`. `None` when no quote
/// follows the hashes (a raw identifier such as `r#type`).
fn raw_string_end(c: &[char], mut i: usize) -> Option<usize> {
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    if c.get(i) != Some(&'"') {
        return None;
    }
    i += 1;
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(i)
}

/// The index after a character literal opening at `i` (`'x'`, `'\n'`,
/// `'\u{1F600}'`), or `None` for a lifetime or a label.
fn char_literal_end(c: &[char], i: usize) -> Option<usize> {
    match c.get(i + 1) {
        Some('\\') => {
            let mut j = i + 3;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            Some(j + 1)
        }
        Some(_) if c.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// What a path refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Rooted at an external crate (`::axum::…`) or at a name that is not
    /// `crate`, `self` or `super` (`axum::…`, or a name imported locally).
    Crate(String),
    /// An item of this crate, as a path from its root.
    Local(Vec<String>),
}

struct Found {
    written: String,
    line: usize,
    target: Target,
}

/// Every path in the tokens: the leaves of `use` trees (and `extern crate`),
/// and every qualified path elsewhere, resolved from `module`.
fn paths(toks: &[(Tok, usize)], module: &[String]) -> Vec<Found> {
    let mut out = Vec::new();
    // Inline `mod name {` blocks: (name, brace depth inside the block).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect();
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "use" => {
                i += 1;
                let mut leaves = Vec::new();
                use_tree(toks, &mut i, Vec::new(), &mut leaves);
                for (segs, line) in leaves {
                    out.push(found(&segs, line, &here));
                }
            }
            Tok::Ident(w) if w == "extern" => {
                if let (Some((Tok::Ident(k), _)), Some((Tok::Ident(name), line))) =
                    (toks.get(i + 1), toks.get(i + 2))
                    && k == "crate"
                {
                    out.push(found(&["::".to_owned(), name.clone()], *line, &here));
                }
                i += 1;
            }
            Tok::Ident(_) | Tok::Sep => {
                // Inside a path already (`Vec::<T>::new`, `<T as X>::f`):
                // not the start of one.
                let inside = i > 0
                    && match (&toks[i].0, &toks[i - 1].0) {
                        (_, Tok::Sep) => true,
                        (Tok::Sep, prev) => {
                            matches!(prev, Tok::Ident(_) | Tok::Punct('>' | ')' | ']'))
                        }
                        _ => false,
                    };
                let start = i;
                let segs = qualified_path(toks, &mut i);
                if segs.len() >= 2 && !inside {
                    out.push(found(&segs, toks[start].1, &here));
                }
                if i == start {
                    i += 1;
                }
            }
            Tok::Arrow | Tok::Punct(_) => i += 1,
        }
    }
    out
}

/// `a::b::c` from `i` (a leading `::` becomes the segment `::`); stops
/// before anything that is not an identifier after a `::` (e.g. `::<T>`).
fn qualified_path(toks: &[(Tok, usize)], i: &mut usize) -> Vec<String> {
    let mut segs = Vec::new();
    if toks[*i].0 == Tok::Sep {
        segs.push("::".to_owned());
        *i += 1;
    }
    while let Some((Tok::Ident(name), _)) = toks.get(*i) {
        segs.push(name.clone());
        *i += 1;
        match (toks.get(*i), toks.get(*i + 1)) {
            (Some((Tok::Sep, _)), Some((Tok::Ident(_), _))) => *i += 1,
            _ => break,
        }
    }
    segs
}

/// The leaves of the `use` tree at `i` (after `use`), each with the line of
/// its last segment; leaves `i` after the tree.
fn use_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    mut segs: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let mut line = toks.get(*i).map_or(0, |t| t.1);
    while let Some((tok, l)) = toks.get(*i) {
        match tok {
            Tok::Sep if segs.is_empty() => segs.push("::".to_owned()),
            Tok::Sep => {}
            Tok::Ident(name) if name == "as" => {
                *i += 2; // `as name`
                break;
            }
            Tok::Ident(name) => {
                segs.push(name.clone());
                line = *l;
            }
            Tok::Punct('*') => {
                *i += 1;
                break;
            }
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        None => return,
                        Some((Tok::Punct('}'), _)) => {
                            *i += 1;
                            return;
                        }
                        Some((Tok::Punct(','), _)) => *i += 1,
                        Some(_) => use_tree(toks, i, segs.clone(), out),
                    }
                }
            }
            Tok::Arrow | Tok::Punct(_) => break,
        }
        *i += 1;
    }
    if !segs.is_empty() {
        out.push((segs, line));
    }
}

/// Resolves `segs` from the module `here`.
fn found(segs: &[String], line: usize, here: &[String]) -> Found {
    let written = segs.join("::").replacen("::::", "::", 1);
    let target = match segs.first().map(String::as_str) {
        Some("::") => Target::Crate(segs.get(1).cloned().unwrap_or_default()),
        Some("crate") => Target::Local(drop_self(&segs[1..])),
        Some("self") => Target::Local([here, &drop_self(&segs[1..])].concat()),
        Some("super") => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let base = &here[..here.len().saturating_sub(ups)];
            Target::Local([base, &drop_self(&segs[ups..])].concat())
        }
        _ => Target::Crate(segs.first().cloned().unwrap_or_default()),
    };
    Found {
        written,
        line,
        target,
    }
}

/// `http::{self}` names `http`: a `self` after the first segment adds nothing.
fn drop_self(segs: &[String]) -> Vec<String> {
    segs.iter().filter(|s| *s != "self").cloned().collect()
}

/// Every forbidden reference under `src/`, sorted by file and line.
fn scan_tree(root: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).unwrap();
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let source = std::fs::read_to_string(&path).unwrap();
        out.extend(violations(&rel.join("/"), &source));
    }
    out
}

#[test]
fn imports_point_inward() {
    let found = scan_tree(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        found.is_empty(),
        "{} reference(s) point outward:\n{}",
        found.len(),
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_tree_has_the_files_the_check_reads() {
    // A scan that reads nothing would pass; make sure it reads the tree.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let lib = paths(&tokens(&source), &[]);
    assert!(
        lib.iter()
            .any(|f| f.written == "axum::serve" && f.target == Target::Crate("axum".into())),
        "src/lib.rs calls axum::serve"
    );
    // Fed to the scanner as a core file, the edge's own imports are found.
    let http = std::fs::read_to_string(root.join("src/http/mod.rs")).unwrap();
    assert!(!violations("src/audit/example.rs", &http).is_empty());
}

fn lines(file: &str, src: &str) -> Vec<(usize, String)> {
    violations(file, src)
        .into_iter()
        .map(|v| (v.line, v.path))
        .collect()
}

#[test]
fn axum_in_a_core_file_is_found_with_its_line() {
    let v = violations("src/requests/flow.rs", "use axum::Json;");
    assert_eq!(
        v,
        vec![Violation {
            file: "src/requests/flow.rs".into(),
            line: 1,
            path: "axum::Json".into(),
            rule: EDGE_RULE,
        }]
    );
    assert_eq!(
        v[0].to_string(),
        "src/requests/flow.rs:1: `axum::Json` (only the edge may import axum, tower_http or crate::http)"
    );
    let src = "fn f() {}\n\nfn g() -> ::axum::response::Response {\n    match 1 {\n        _ => ::axum::serve,\n    }\n}\n";
    assert_eq!(
        lines("src/state.rs", src),
        vec![
            (3, "::axum::response::Response".into()),
            (5, "::axum::serve".into())
        ]
    );
    // Inside a path a `::` starts nothing: `Foo<T>::axum` is no crate.
    assert!(
        lines(
            "src/state.rs",
            "type A = Foo<T>::axum::B; let x = Vec::<u8>::new();"
        )
        .is_empty()
    );
    assert_eq!(
        lines(
            "src/auth/mod.rs",
            "use tower_http::trace::TraceLayer;\nuse utoipa_axum::router::OpenApiRouter;"
        ),
        vec![
            (1, "tower_http::trace::TraceLayer".into()),
            (2, "utoipa_axum::router::OpenApiRouter".into())
        ]
    );
    assert_eq!(
        lines("src/state.rs", "use axum;\nextern crate axum;"),
        vec![(1, "axum".into()), (2, "::axum".into())]
    );
}

#[test]
fn crate_http_is_found_in_use_trees_and_paths() {
    let src = "use crate::{\n    audit,\n    http::error::ApiError,\n};\n\
               fn f() { let _ = crate::http::app; }\n";
    assert_eq!(
        lines("src/requests/flow.rs", src),
        vec![
            (3, "crate::http::error::ApiError".into()),
            (5, "crate::http::app".into())
        ]
    );
    assert_eq!(
        lines("src/state.rs", "use crate::http::{self, error as e};"),
        vec![
            (1, "crate::http::self".into()),
            (1, "crate::http::error".into())
        ]
    );
    // From a top-level module `super::http` is `crate::http`; from
    // `requests::flow` it is `requests::http`, another module.
    assert_eq!(
        lines("src/state.rs", "use super::http::ApiError;"),
        vec![(1, "super::http::ApiError".into())]
    );
    assert!(lines("src/requests/flow.rs", "use super::http::ApiError;").is_empty());
    assert_eq!(
        lines(
            "src/requests/flow/mod.rs",
            "use super::super::http::ApiError;"
        ),
        vec![(1, "super::super::http::ApiError".into())]
    );
    // An inline module moves `super` one level down.
    let src = "mod tests {\n    use super::super::http;\n    use super::*;\n}\n";
    assert_eq!(
        lines("src/state.rs", src),
        vec![(2, "super::super::http".into())]
    );
}

#[test]
fn comments_strings_and_other_crates_are_not_imports() {
    let src = r####"
//! Mapped to HTTP by `crate::http::error` (see axum::Json).
/* use axum::Json; /* nested */ crate::http */
/// [`crate::http::app`]
const A: &str = "use axum::Json; crate::http";
const B: &str = r#"axum::Json "quoted" crate::http"#;
const C: &[u8] = br##"tower_http::x"##;
const D: char = '"';
const E: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { x }
use http::StatusCode;
use crate::httpd::Thing;
use crate::audit::http;
use my_axum::Json;
use utoipa::ToSchema;
"####;
    assert_eq!(lines("src/requests/flow.rs", src), vec![]);
}

#[test]
fn the_edge_may_import_axum_and_crate_http() {
    for file in [
        "src/http/customers.rs",
        "src/cli/mod.rs",
        "src/pages/console.rs",
        "src/web/privacy.rs",
        "src/bin/bench.rs",
        "src/lib.rs",
        "src/main.rs",
    ] {
        assert_eq!(
            lines(file, "use axum::Json;\nuse crate::http::app;"),
            vec![],
            "{file}"
        );
    }
    assert_eq!(
        lines("src/httpd.rs", "use axum::Json;"),
        vec![(1, "axum::Json".into())]
    );
}

#[test]
fn the_store_may_not_name_the_request_flow() {
    let src = "use crate::{audit, requests::store::RequestStore};\n\
               crate::requests::store::impl_request_store!(SqliteStore, Sqlite);\n\
               pub trait Store: crate::requests::store::RequestStore + Send {}\n\
               use super::super::requests::flow;\n";
    assert_eq!(
        violations("src/store/sqlite.rs", src)
            .into_iter()
            .map(|v| (v.line, v.path, v.rule))
            .collect::<Vec<_>>(),
        vec![
            (1, "crate::requests::store::RequestStore".into(), STORE_RULE),
            (
                2,
                "crate::requests::store::impl_request_store".into(),
                STORE_RULE
            ),
            (3, "crate::requests::store::RequestStore".into(), STORE_RULE),
            (4, "super::super::requests::flow".into(), STORE_RULE),
        ]
    );
    // In the store `super::requests` is `store::requests`, not the flow.
    assert!(lines("src/store/sql.rs", "use super::requests::Rows;").is_empty());
    // The store is not the edge either.
    assert_eq!(
        lines("src/store/mod.rs", "use axum::Json;"),
        vec![(1, "axum::Json".into())]
    );
    // Outside the store, naming the request flow is fine.
    assert!(lines("src/retention.rs", "use crate::requests::erasure::Ctx;").is_empty());
}

/// reqwest is built with TLS on ring and no default provider: a client
/// built before `pii_vault::install_tls_provider` panics, and whether a
/// test got there first would depend on the order tests run in. Tests build
/// clients through `helpers::http()` / `helpers::http_builder()`.
#[test]
fn tests_build_http_clients_through_the_helpers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "helpers.rs" || name == "layering.rs" || !name.ends_with(".rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            if line.contains("Client::new()") || line.contains("Client::builder()") {
                found.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "use helpers::http():\n{}",
        found.join("\n")
    );
}
