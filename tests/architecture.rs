//! The house rules of `src/`, checked on every test run: which module may import which
//! (docs/architecture.md draws the picture).
//!
//! - The arrows run one way: no cycle among the modules.
//! - Only the top (`lib`) holds the whole configuration: no step imports `config` or `cli`.
//! - Each module imports only modules of its own layer or below (steps may use each other, acyclically).
//! - The merge policy sees no HTTP (`env` never imports `api`); supervision starts after the fetch is
//!   gone (`supervise` imports neither `api` nor `fallback`); the secret types know nothing above them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, top first. A module may import its own layer or those below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("top", &["lib"]),
    ("configuration", &["config", "cli", "generate"]),
    (
        "steps",
        &[
            "api",
            "env",
            "dotenv",
            "fallback",
            "supervise",
            "watch",
            "pump",
        ],
    ),
    (
        "base",
        &[
            "vars",
            "secret",
            "error",
            "report",
            "signals",
            "platform",
            "exit",
            "hardening",
            "wipe_alloc",
            "mask",
        ],
    ),
];

/// Arrows that must never exist, with the rule each would break.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("env", "api", "the merge policy sees no HTTP"),
    ("env", "fallback", "the merge policy sees no HTTP"),
    (
        "supervise",
        "api",
        "supervision starts after the fetch is gone",
    ),
    (
        "supervise",
        "fallback",
        "supervision starts after the fetch is gone",
    ),
];

/// Macros exported at the crate root, and the module that defines them.
const MACROS: &[(&str, &str)] = &[("warn", "report"), ("verbose", "report")];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
        .unwrap_or_else(|| {
            panic!(
                "module `{module}` is in no layer: add it to LAYERS (and to docs/architecture.md)"
            )
        })
}

/// `crate::NAME` and `use crate::{NAME, …}` in `text`, as top-level module names.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{d, e}}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if item_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        found.insert(std::mem::take(&mut name));
                        item_start = false;
                    }
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
        .into_iter()
        .map(|n| {
            MACROS
                .iter()
                .find(|(m, _)| *m == n)
                .map_or(n.clone(), |(_, module)| (*module).to_owned())
        })
        .collect()
}

/// The `.rs` files under `dir`, at any depth.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Every module of src/ (a file `src/X.rs`, with everything under `src/X/` folded into X) and what
/// it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |module: &str, path: &Path| {
        let text = std::fs::read_to_string(path).unwrap();
        let refs = crate_references(&text);
        let entry = graph.entry(module.to_owned()).or_default();
        entry.extend(refs.into_iter().filter(|r| r != module));
    };
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name == "bin" {
                continue;
            }
            for sub in rust_files(&path) {
                add(&name, &sub);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "main" {
            add(&name, &path);
        }
    }
    graph
}

#[test]
fn every_arrow_points_down_or_within_a_layer() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            if !graph.contains_key(target) {
                continue; // not a module of ours (e.g. `crate::` in a doc comment about another crate)
            }
            if layer_of(target) < layer_of(module) {
                wrong.push(format!(
                    "{module} ({}) imports {target} ({})",
                    LAYERS[layer_of(module)].0,
                    LAYERS[layer_of(target)].0
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_step_holds_the_configuration() {
    let graph = imports();
    let wrong: Vec<String> = graph
        .iter()
        .filter(|(module, _)| !["lib", "config", "generate"].contains(&module.as_str()))
        .flat_map(|(module, targets)| {
            targets
                .iter()
                .filter(|t| *t == "config" || *t == "cli")
                .map(move |t| format!("{module} imports {t}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_house_rules_hold() {
    let graph = imports();
    let mut broken = Vec::new();
    for (from, to, rule) in FORBIDDEN {
        if graph.get(*from).is_some_and(|t| t.contains(*to)) {
            broken.push(format!("{from} imports {to}: {rule}"));
        }
    }
    if let Some(targets) = graph.get("secret") {
        let above: Vec<_> = targets
            .iter()
            .filter(|t| !["wipe_alloc"].contains(&t.as_str()))
            .collect();
        if !above.is_empty() {
            broken.push(format!(
                "secret imports {above:?}: the secret types know nothing above them"
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = imports();
    // Depth-first search for a cycle, reporting its path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reference_scanner_reads_groups_and_macros() {
    let refs = crate_references(
        "use crate::{api::Fetched, secret::{SecretString, ApiKey}, verbose};\nlet x = crate::signals::block();",
    );
    let want: BTreeSet<String> = ["api", "secret", "report", "signals"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(refs, want);
}
