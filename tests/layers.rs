//! The layering of DESIGN.md, checked: a module imports only modules of a
//! lower layer, so each part can change alone and nothing runs in circles.
//!
//! Bottom to top: `util`, `metrics` (helpers) ← `model` (the shared
//! vocabulary), `net` (QUIC, TLS, token format) ← `events` ← `membership` ←
//! `state` ← `placement` (owns the plan) ← `agent`, `proxy` ← `api`,
//! `config` ← `node` (wiring) ← `cli`, `fuzz` (the fuzz targets' entry points). netsim uses the library's parts, never
//! the API server, the CLI or a real node's edges.

use std::path::{Path, PathBuf};

/// Every top-level module of the library and its layer.
const LAYERS: &[(&str, u32)] = &[
    ("util", 0),
    ("metrics", 0),
    ("model", 1),
    ("net", 1),
    ("events", 2),
    ("membership", 3),
    ("state", 4),
    ("placement", 5),
    ("agent", 6),
    ("proxy", 6),
    ("api", 7),
    ("config", 7),
    ("node", 8),
    ("cli", 9),
    // The decoders of untrusted input, for the fuzzers: a leaf over them all.
    ("fuzz", 9),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line of Rust names through `prefix` (`crate::x`,
/// `crate::{x, y::z}` or `shoal::x`), with the column of each.
fn imports(line: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("//")
}

#[test]
fn a_lower_layer_never_imports_a_higher_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let Some(mine) = layer(&module) else {
            unknown.push(format!("src/{}: module {module:?} has no layer in tests/layers.rs", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            if is_comment(line) {
                continue;
            }
            for used in imports(line, "crate::") {
                if used == module {
                    continue;
                }
                match layer(&used) {
                    Some(theirs) if theirs < mine => {}
                    Some(theirs) => wrong.push(format!(
                        "src/{}:{}: `{module}` (layer {mine}) imports `{used}` (layer {theirs}): {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    )),
                    None => unknown.push(format!("src/{}:{}: unknown module `{used}`", rel.display(), n + 1)),
                }
            }
        }
    }
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
    assert!(
        wrong.is_empty(),
        "imports against the layering (move the shared piece down, or the adapter up into `node`):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn netsim_drives_the_library_parts_not_a_real_nodes_edges() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("netsim");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    let forbidden = ["api", "cli", "proxy"];
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            if is_comment(line) {
                continue;
            }
            for used in imports(line, "shoal::") {
                if forbidden.contains(&used.as_str()) || line.contains("node::start") {
                    wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "netsim reaches a real node's edges:\n{}", wrong.join("\n"));
}

#[test]
fn the_import_scanner_sees_every_form() {
    assert_eq!(imports("use crate::model::pods::DesiredPod;", "crate::"), ["model"]);
    assert_eq!(imports("use crate::{agent, node::x};", "crate::"), ["agent", "node"]);
    assert_eq!(imports("let x = crate::api::f(shoal::cli::g());", "crate::"), ["api"]);
    assert_eq!(imports("mycrate::api::f()", "crate::"), Vec::<String>::new());
    assert_eq!(imports("use shoal::api::x;", "shoal::"), ["api"]);
}
