//! `mlpserve check`: validates a whole model repository before it is deployed, with the
//! server's own code — discovery (`discover`), `config.toml` parsing (`ModelConfig`), the
//! blocking part of a load (`load::prepare`: sessions, spec, warm-up) and routing — so it
//! finds exactly what a start-up would refuse or warn about. It serves nothing, listens on
//! nothing and starts no worker thread. Every problem names the model, the file, the config
//! key where there is one, and a fix.

use std::path::Path;

use serde::Serialize;

use super::discover;
use super::load::{prepare, LoadOptions, VersionToLoad};
use super::routing::Routing;
use crate::config::ModelConfig;
use crate::runtime::Runtime;

/// One thing that would stop a model (or a version, or a setting) from serving as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The model directory's name; empty for the repository itself.
    pub model: String,
    /// The file or directory at fault, relative to the repository root.
    pub file: String,
    /// The `config.toml` key at fault, when the problem is one setting.
    pub key: Option<String>,
    /// The line of `file` (1-based), when known.
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

/// A version that loaded, with its contract in one line.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedVersion {
    pub model: String,
    pub version: u64,
    /// `pixels FP32 [-1, 64] -> logits FP32 [-1, 10]; batches`
    pub summary: String,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub repository: String,
    /// Model directories found.
    pub models: usize,
    pub loaded: Vec<CheckedVersion>,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when the repository would serve every selected version as written.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report for a terminal: one line per loaded version, each problem with its fix.
    pub fn render(&self) -> String {
        let mut out = format!(
            "checking {} ({} model{})\n",
            self.repository,
            self.models,
            plural(self.models)
        );
        for v in &self.loaded {
            out += &format!(
                "ok       {} version {}: {}\n",
                v.model, v.version, v.summary
            );
        }
        for p in &self.problems {
            let place = match (&p.key, p.line) {
                (Some(k), Some(l)) => format!("{}:{l}: key {k}", p.file),
                (Some(k), None) => format!("{}: key {k}", p.file),
                (None, Some(l)) => format!("{}:{l}", p.file),
                (None, None) => p.file.clone(),
            };
            let model = if p.model.is_empty() { "-" } else { &p.model };
            out += &format!(
                "PROBLEM  {model}: {place}: {}\n         fix: {}\n",
                p.problem, p.fix
            );
        }
        out += &match self.problems.len() {
            0 => format!(
                "passed: {} version{} of {} model{} load\n",
                self.loaded.len(),
                plural(self.loaded.len()),
                self.models,
                plural(self.models)
            ),
            n => format!("failed: {n} problem{}\n", plural(n)),
        };
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Checks every model under `root` as the server would load it with `options`: the
/// versions its version policy selects are built, read and warmed up (batch sizes are not
/// timed). Blocking; runs ONNX Runtime on the calling thread.
pub fn check(root: &Path, runtime: &Runtime, options: &LoadOptions) -> CheckReport {
    let mut report = CheckReport {
        repository: root.display().to_string(),
        ..CheckReport::default()
    };
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let (dirs, skipped) = match discover::model_dirs(root) {
        Ok(found) => found,
        Err(e) => {
            report.problems.push(Problem {
                model: String::new(),
                file: ".".to_string(),
                key: None,
                line: None,
                problem: e.to_string(),
                fix: "point the check at the model repository directory (<repo>/<model>/<version>/model.onnx)".to_string(),
            });
            return report;
        }
    };
    for (path, why) in skipped {
        report.problems.push(skipped_problem("", &rel(&path), why));
    }
    if dirs.is_empty() {
        report.problems.push(Problem {
            model: String::new(),
            file: ".".to_string(),
            key: None,
            line: None,
            problem: "no model directory found".to_string(),
            fix: "add <model>/<version>/model.onnx under the repository".to_string(),
        });
    }
    report.models = dirs.len();
    for d in &dirs {
        check_model(root, &d.name, runtime, options, &mut report);
    }
    report
}

/// Checks one model directory: its config, its version directories and each selected version.
fn check_model(
    root: &Path,
    name: &str,
    runtime: &Runtime,
    options: &LoadOptions,
    report: &mut CheckReport,
) {
    let dir = root.join(name);
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let config_file = format!("{name}/config.toml");
    let scan = discover::scan_model(&dir, None);
    for (path, why) in &scan.skipped {
        report
            .problems
            .push(skipped_problem(name, &rel(path), why.clone()));
    }
    if let Some(e) = &scan.error {
        let fix = if matches!(e, discover::ScanError::NoVersion) {
            format!("export the model to {name}/1/model.onnx")
        } else {
            "keep one directory per version number".to_string()
        };
        report.problems.push(Problem {
            model: name.to_string(),
            file: name.to_string(),
            key: None,
            line: None,
            problem: e.to_string(),
            fix,
        });
    }
    let config = match scan.config {
        Ok(c) => c,
        Err(e) => {
            let text = std::fs::read_to_string(dir.join("config.toml")).ok();
            report.problems.push(config_problem(
                name,
                &config_file,
                text.as_deref(),
                &e.to_string(),
            ));
            return;
        }
    };
    let on_disk: Vec<u64> = scan.versions.keys().copied().collect();
    let mut loaded = Vec::new();
    for v in config.version_policy.select(&on_disk) {
        let found = &scan.versions[&v];
        let to_load = VersionToLoad {
            name: name.to_string(),
            version: v,
            model_file: found.model_file.clone(),
            config: config.clone(),
        };
        match prepare(runtime, &options.session, &to_load, false) {
            Ok((_sessions, spec)) => {
                for (key, why) in spec.ignored_settings() {
                    report.problems.push(Problem {
                        model: name.to_string(),
                        file: config_file.clone(),
                        key: Some(key.to_string()),
                        line: None,
                        problem: format!("version {v}: {why}"),
                        fix: format!("export the graph with a dynamic first axis on every input and output (torch.onnx.export(..., dynamic_axes={{name: {{0: \"batch\"}}}})), or remove {key}"),
                    });
                }
                let io = |list: &[crate::spec::TensorSpec]| {
                    list.iter()
                        .map(|s| format!("{} {}", s.name, s.describe()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let batching = match spec.batch_blocker() {
                    None => "batches".to_string(),
                    Some(why) => format!("one request per run: {why}"),
                };
                report.loaded.push(CheckedVersion {
                    model: name.to_string(),
                    version: v,
                    summary: format!("{} -> {}; {batching}", io(&spec.inputs), io(&spec.outputs)),
                });
                loaded.push(v);
            }
            Err(e) => report.problems.push(load_problem(
                name,
                &rel(&found.model_file),
                &config_file,
                v,
                &e.to_string(),
            )),
        }
    }
    let (_, warnings) = Routing::new(&config, &loaded);
    for w in warnings {
        let key = if w.starts_with("label") {
            "labels"
        } else {
            "traffic"
        };
        report.problems.push(Problem {
            model: name.to_string(),
            file: config_file.clone(),
            key: Some(key.to_string()),
            line: None,
            problem: w,
            fix: "point it at a version that is on disk, selected by version_policy and loads"
                .to_string(),
        });
    }
}

/// A path discovery skipped (logged at WARN by the server), with the fix for its reason.
fn skipped_problem(model: &str, file: &str, why: String) -> Problem {
    let fix = if why.contains("no model.onnx") {
        format!("put the exported graph at {file}/model.onnx, or remove the directory")
    } else if why.contains("not a version number") {
        "name version directories by digits (1, 2, ...) or move the directory out of the model"
            .to_string()
    } else if why.contains("belongs in a version directory") {
        format!("move it to {model}/1/model.onnx")
    } else if why.contains("too large") {
        "use a smaller version number".to_string()
    } else {
        "make the path readable by the server, or remove it".to_string()
    };
    Problem {
        model: model.to_string(),
        file: file.to_string(),
        key: None,
        line: None,
        problem: why,
        fix,
    }
}

/// A `config.toml` that does not parse or whose values are refused. `text` is the file's
/// content: parsed again to find the key and the line the loader's message is about.
fn config_problem(model: &str, file: &str, text: Option<&str>, message: &str) -> Problem {
    let mut problem = Problem {
        model: model.to_string(),
        file: file.to_string(),
        key: None,
        line: None,
        problem: message
            .split_once("config.toml: ")
            .map_or(message, |(_, m)| m)
            .to_string(),
        fix: "fix the value (docs/configuration.md lists every key and its range)".to_string(),
    };
    let Some(text) = text else {
        problem.fix = "make config.toml readable by the server".to_string();
        return problem;
    };
    if let Err(e) = toml::from_str::<toml::Table>(text) {
        problem.problem = e.message().trim().to_string();
        problem.line = e.span().map(|s| line_of(text, s.start));
        problem.fix = "fix the TOML syntax at that line".to_string();
        return problem;
    }
    match toml::from_str::<ModelConfig>(text) {
        Err(e) => {
            let message = e.message().trim().to_string();
            if let Some(span) = e.span() {
                problem.line = Some(line_of(text, span.start));
                problem.key = key_at(text, span.start);
            }
            problem.fix = if message.starts_with("unknown field") {
                "remove the key or correct its spelling (the message lists the keys allowed there)"
                    .to_string()
            } else {
                "give the key a value of the type the message names".to_string()
            };
            problem.problem = message;
        }
        Ok(_) => {
            // Parsed, then refused by the range and consistency checks: their messages
            // start with the key they are about.
            let key: String = problem
                .problem
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                .collect();
            if !key.is_empty() {
                problem.line = line_of_key(text, &key);
                problem.key = Some(key);
            }
            if problem.problem.contains("out of range") {
                problem.fix = "set a value within the range the message gives".to_string();
            }
        }
    }
    problem
}

/// A version that fails to load: a config key checked against the graph, or the file itself.
fn load_problem(model: &str, file: &str, config_file: &str, version: u64, e: &str) -> Problem {
    if let Some((_, rest)) = e.split_once("config.toml: ") {
        let key: String = if let Some(field) = rest.strip_prefix("feature '") {
            format!("features.{}", field.split('\'').next().unwrap_or(""))
        } else if let Some((table, after)) = rest.strip_prefix('[').and_then(|r| r.split_once("] "))
        {
            // `[inputs.x] pad_value = ...`
            let leaf: String = after
                .chars()
                .take_while(|c| !matches!(c, ' ' | '='))
                .collect();
            format!("{table}.{leaf}")
        } else {
            rest.chars()
                .take_while(|c| !matches!(c, ':' | ' '))
                .collect()
        };
        let fix = if rest.contains("cannot read the vocabulary") {
            "put the vocabulary file (one token per line) where the path says; a relative path starts at the model's directory"
        } else if key.starts_with("features.") {
            "correct the feature's transform (docs/serve-your-model.md lists them)"
        } else if key.ends_with(".pad_axes") {
            "list only dynamic non-batch axes (`mlpserve inspect` prints the candidates)"
        } else if key.ends_with(".pad_value") {
            "choose a pad value of the input's datatype"
        } else {
            "name inputs as the graph does (`mlpserve inspect` prints them)"
        };
        return Problem {
            model: model.to_string(),
            file: config_file.to_string(),
            key: Some(key),
            line: None,
            problem: format!("version {version}: {rest}"),
            fix: fix.to_string(),
        };
    }
    let fix = if e.contains("External data") || e.contains("external data") {
        "put the external data file the message names beside model.onnx, as the export wrote it"
    } else if e.contains("CUDA") {
        "run where the GPU build of ONNX Runtime and a GPU are present, or set fallback = \"cpu\""
    } else if e.contains("warm-up") {
        "the graph fails on inputs of its own declared shapes: run it in onnxruntime from Python and fix the export"
    } else if e.contains("element type") || e.contains("only tensors are served") {
        "export inputs and outputs as tensors of a served datatype (docs/api.md lists them)"
    } else {
        "the file is not a loadable ONNX model: export it again (torch.onnx.export) and check it with onnx.checker.check_model"
    };
    Problem {
        model: model.to_string(),
        file: file.to_string(),
        key: None,
        line: None,
        problem: format!("version {version}: {e}"),
        fix: fix.to_string(),
    }
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |t| t.matches('\n').count() + 1)
}

/// The dotted key whose line holds byte offset `at`: the nearest `[table]` header above
/// it, then the line's own key (`inputs.hist.pad_axis`).
fn key_at(text: &str, at: usize) -> Option<String> {
    let line_no = line_of(text, at);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no - 1)?.trim();
    let table = lines[..line_no - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = match line.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"').to_string(),
        None if line.starts_with('[') => return table,
        None => return None,
    };
    Some(match table {
        Some(t) if !line.starts_with('[') => format!("{t}.{key}"),
        _ => key,
    })
}

/// The line that sets `key` (dotted: the leaf under its table header).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (Some(t), l),
        None => (None, key),
    };
    let mut in_table = table.is_none();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = Some(header) == table;
            continue;
        }
        let sets = line
            .split_once('=')
            .is_some_and(|(k, _)| k.trim().trim_matches('"') == leaf);
        if in_table && sets {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> Problem {
        let e = ModelConfig::parse(text).unwrap_err().to_string();
        config_problem("m", "m/config.toml", Some(text), &e)
    }

    #[test]
    fn config_problems_name_the_key_and_the_line() {
        let p = problem("instances = 1\nmax_batch = 4\n");
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("max_batch"), Some(2)),
            "{p:?}"
        );
        assert!(p.fix.contains("spelling"), "{p:?}");
        let p = problem("[inputs.hist]\npad_axes = [1]\npad_axis = [1]\n");
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("inputs.hist.pad_axis"), Some(3))
        );
        let p = problem("\ninstances = 0\n");
        assert_eq!((p.key.as_deref(), p.line), (Some("instances"), Some(2)));
        assert!(p.problem.contains("out of range"), "{p:?}");
        let p = problem("[inputs.h]\nmax_pad_length = 0\n");
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("inputs.h.max_pad_length"), Some(2))
        );
        let p = problem("max_batch_size = -3\n");
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("max_batch_size"), Some(1))
        );
        let p = problem("max_batch_size = 4\npreferred_batch_sizes = [8]\n");
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("preferred_batch_sizes"), Some(2))
        );
        let p = problem("instances = [\n");
        assert_eq!((p.key.as_deref(), p.line.is_some()), (None, true));
        assert!(p.fix.contains("syntax"), "{p:?}");
    }
}
