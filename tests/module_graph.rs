//! The crate's layers as `DESIGN.md` draws them. A `use crate::x` from module `a` is an
//! edge a → x, and the graph of top-level modules must have no cycle (it is printed with
//! `--nocapture` so a reader can see the layers). Two rules on top: the transports (`api`)
//! reach the repository only through the service, and only `runtime` names ONNX Runtime
//! (`ort`) types. Each check also runs on planted violations, to show it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src` but the crate root and the binary (they sit above every
/// layer): its path relative to `src`, and its code with comments cut off.
fn sources() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src").to_path_buf();
            let module = top_module(&relative);
            if module == "lib" || module == "main" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            files.push((relative, code_only(&text)));
        }
    }
    files
}

/// `text` with every `//` comment cut off (a string holding `//` loses its line's rest,
/// which can only hide an edge, never invent one).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a path under `src` belongs to (`api/http/mod.rs` → `api`).
fn top_module(relative: &Path) -> String {
    let first = relative.iter().next().expect("a component");
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// Top-level module → the top-level modules it names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let module = top_module(&path);
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

/// Whether `code` names the `ort` crate: a path starting `ort::` or `::ort::`, or a `use`
/// of the crate itself (`use ort;`, `use ort as o;`), but not a name that only ends in
/// `ort` (`transport::`) or a module of that name inside another path (`a::ort::`).
fn names_ort(code: &str) -> bool {
    let starts_a_path = |before: &str| {
        let before = before.strip_suffix("::").map_or(before, |rest| {
            // `::ort::` is the crate; `a::ort::` is some other module.
            if rest.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                "x"
            } else {
                ""
            }
        });
        before
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
    };
    let used = code.match_indices("use ort").any(|(i, m)| {
        let rest = &code[i + m.len()..];
        starts_a_path(&code[..i]) && (rest.starts_with(';') || rest.starts_with(" as "))
    });
    used || code
        .match_indices("ort::")
        .any(|(i, _)| starts_a_path(&code[..i]))
}

/// The breaks of the two layer rules in `files`, one line each.
fn layer_violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, code) in files {
        let module = top_module(path);
        let grouped_repository = code.match_indices("crate::{").any(|(i, _)| {
            code[i..]
                .split('}')
                .next()
                .is_some_and(|g| g.contains("repository"))
        });
        if module == "api" && (code.contains("crate::repository") || grouped_repository) {
            found.push(format!(
                "{}: a transport names the repository; go through the service",
                path.display()
            ));
        }
        if module != "runtime" && names_ort(code) {
            found.push(format!(
                "{}: names ONNX Runtime (`ort`); only runtime may",
                path.display()
            ));
        }
    }
    found
}

/// A cycle through `node`, if the depth-first search finds one.
fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|n| n == node) {
        let mut cycle = path[start..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node.to_string());
    None
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph();
    for (module, deps) in &graph {
        println!(
            "{module} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for expected in [
        "api",
        "service",
        "repository",
        "batcher",
        "runtime",
        "spec",
        "error",
    ] {
        assert!(
            graph.contains_key(expected),
            "module {expected} was not read"
        );
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = find_cycle(&graph, module, &mut Vec::new(), &mut done) {
            panic!("dependency cycle: {}", cycle.join(" -> "));
        }
    }
    // The core error type knows no web framework.
    let error = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/error.rs"))
        .expect("error.rs");
    assert!(!error.contains("axum") && !error.contains("tonic"));
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut graph = module_graph();
    graph
        .entry("spec".into())
        .or_default()
        .insert("service".into());
    let mut done = BTreeSet::new();
    let found = graph
        .keys()
        .find_map(|m| find_cycle(&graph, m, &mut Vec::new(), &mut done));
    assert!(found.is_some(), "spec -> service closes a cycle");
}

#[test]
fn transports_reach_the_repository_only_through_the_service_and_only_runtime_names_ort() {
    let files = sources();
    assert!(
        files.iter().any(|(p, _)| p.starts_with("api")),
        "api was not read"
    );
    let found = layer_violations(&files);
    assert!(
        found.is_empty(),
        "layer rules broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layer_check_finds_planted_violations() {
    let file = |path: &str, code: &str| (PathBuf::from(path), code_only(code));
    let planted = [
        file("api/http/x.rs", "use crate::repository::Model;"),
        file("api/grpc/x.rs", "use crate::{error::Error, repository};"),
        file("tensor/x.rs", "use ort::value::DynValue;"),
        file("batcher/x.rs", "fn f() -> ort::Result<()> { todo!() }"),
        file("service/y.rs", "fn f(s: &::ort::session::Session) {}"),
        file("spec/x.rs", "use ort as onnx;"),
        // Allowed: runtime names ORT, the service names the repository, comments and names
        // that only end in `ort` do not count.
        file("runtime/x.rs", "use ort::session::Session;"),
        file("service/x.rs", "use crate::repository::Repository;"),
        file(
            "api/http/y.rs",
            "use crate::service::Service; // not crate::repository",
        ),
        file("config/x.rs", "use super::transport::TransportArgs;"),
        file("tensor/y.rs", "use crate::sort::merge; use report;"),
    ];
    let found = layer_violations(&planted);
    let paths: Vec<&str> = found
        .iter()
        .map(|f| f.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        paths,
        [
            "api/http/x.rs",
            "api/grpc/x.rs",
            "tensor/x.rs",
            "batcher/x.rs",
            "service/y.rs",
            "spec/x.rs"
        ],
        "{found:#?}"
    );
}
