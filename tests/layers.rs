//! The layers point one way: a module may import only from layers below its own (and from itself). This test
//! reads every file under `src/` and fails on an import that points up or sideways, naming file and line.
//!
//! ```text
//! 0 domain                          classes, permissions, purposes, durations
//! 1 respond budget metrics stall tls  the error shape, budgets, metrics, support
//! 2 token crypto store server       token formats, keys, storage, the accept loop
//! 3 vault detect                    the vault (engine, API, audit) and free-text detection
//! 4 rewrite                         body formats
//! 5 config                          raw TOML -> validated, typed config
//! 6 proxy smtp admin register       the flows, the mail listener, the admin listener, the Art. 30 record
//! 7 app                             wiring
//! 8 cli                             commands
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("respond", 1),
    ("budget", 1),
    ("metrics", 1),
    ("stall", 1),
    ("tls", 1),
    ("token", 2),
    ("crypto", 2),
    ("store", 2),
    ("server", 2),
    ("vault", 3),
    ("detect", 3),
    ("rewrite", 4),
    ("config", 5),
    ("proxy", 6),
    ("smtp", 6),
    ("admin", 6),
    ("register", 6),
    ("app", 7),
    ("cli", 8),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level modules named by `crate::…` paths on this line (grouped `use crate::{a, b::c}` included).
fn imported(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let Some(own) = layer(&top) else {
            wrong.push(format!("{}: module `{top}` has no layer in tests/layers.rs", rel.display()));
            continue;
        };
        for (n, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for module in imported(line) {
                checked += 1;
                if module == top {
                    continue;
                }
                match layer(&module) {
                    Some(l) if l < own => {}
                    Some(l) => wrong.push(format!(
                        "{}:{}: `{top}` (layer {own}) imports `{module}` (layer {l})",
                        rel.display(),
                        n + 1
                    )),
                    None => wrong.push(format!("{}:{}: `{module}` has no layer", rel.display(), n + 1)),
                }
            }
        }
    }
    assert!(checked > 100, "the scan found only {checked} imports: is it reading src/?");
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_reads_grouped_and_plain_paths() {
    assert_eq!(imported("use crate::{domain::Class, token};"), ["domain", "token"]);
    assert_eq!(imported("    let x = crate::vault::engine::system_clock();"), ["vault"]);
    assert!(imported("use super::x;").is_empty());
}
