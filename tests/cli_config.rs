//! `mlpserve config`: prints the configuration `serve` would run with, from the same
//! layers (flags over `MLPSERVE_*` variables over defaults); `--print-defaults` prints the
//! built-in defaults whatever the environment says; a bad value exits 1 naming the key.

mod common;

/// Runs `mlpserve config` with `args` and `env`; (exit code, stdout, stderr).
fn config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    common::run_subcommand("config", args, env)
}

#[test]
fn flags_and_variables_resolve_as_serve_resolves_them() {
    let env = [
        ("MLPSERVE_HTTP_PORT", "9000"),
        ("MLPSERVE_GRPC_PORT", "9001"),
    ];
    let (code, out, err) = config(&["--grpc-port", "7001", "--shutdown-timeout", "5"], &env);
    assert_eq!(code, 0, "{err}");
    for line in [
        "http_port = 9000",
        "grpc_port = 7001",
        "shutdown_timeout = 5 s",
        "metrics_port = none",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let (code, out, _) = config(&["--print-defaults"], &env);
    assert_eq!(code, 0);
    for line in [
        "http_port = 8000",
        "grpc_port = 8001",
        "shutdown_timeout = 30 s",
        "transport.idle_timeout = 60 s",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let (code, out, _) = config(&["--print-defaults", "--json"], &[]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["http_port"], 8000);
    assert_eq!(json["shutdown_timeout"]["secs"], 30);
}

#[test]
fn an_invalid_value_exits_one_naming_the_key() {
    let (code, _, err) = config(&["--shutdown-delay", "100000"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("shutdown_delay = 100000 is out of range"),
        "{err}"
    );
}

/// The flag table in docs/configuration.md states each default by hand; every one that is a
/// plain value (not prose such as "see below") must be what the code declares, as
/// `config --print-defaults` prints it. Flags the printed configuration does not carry as a
/// key of their own are listed, so a new one is a decision, not an accident.
#[test]
fn the_configuration_pages_defaults_are_the_codes() {
    let (code, out, err) = config(&["--print-defaults"], &[]);
    assert_eq!(code, 0, "{err}");
    let printed: std::collections::HashMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(key, value)| {
            let key = key.rsplit('.').next().unwrap_or(key).to_string();
            let value = value.trim_matches('"');
            (key, value.strip_suffix(" s").unwrap_or(value).to_string())
        })
        .collect();
    // Their defaults live inside `traces` / `payload_log`, which are `none` when off.
    let inside_observe = [
        "otlp_endpoint",
        "otlp_protocol",
        "otlp_service_name",
        "trace_sample_ratio",
        "payload_log_sample",
        "payload_log_mode",
        "payload_log_headers",
        "payload_log_max_file_bytes",
        "payload_log_max_files",
    ];
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    let help_defaults = help_defaults();
    let mut compared = 0;
    let mut compared_observe = 0;
    for row in page.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let key = cells[0]
            .trim_matches('`')
            .trim_start_matches('-')
            .replace('-', "_");
        let stated = cells[2].replace('`', "");
        let Some(value) = printed.get(&key) else {
            assert!(
                inside_observe.contains(&key.as_str()),
                "--{key} is not printed by `config`"
            );
            // `--help` prints these defaults from the code's constants.
            if let Some(helped) = help_defaults.get(&key) {
                let stated = stated.split(' ').next().unwrap_or_default();
                assert_eq!(
                    stated, helped,
                    "docs/configuration.md states --{key} defaults to {stated}, `serve --help` {helped}"
                );
                compared_observe += 1;
            }
            continue;
        };
        // "none (tracing off)" states none; other cells with words are prose.
        let stated = match stated.split_once(' ') {
            Some(("none", _)) => "none".to_string(),
            Some(_) => continue,
            None => stated,
        };
        assert_eq!(
            &stated, value,
            "docs/configuration.md states --{key} defaults to {stated}"
        );
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} defaults compared");
    assert!(
        compared_observe >= 6,
        "only {compared_observe} observing defaults compared"
    );
}

/// Flag name (snake_case) → the default its `serve --help` text states, for every flag
/// whose help names one.
fn help_defaults() -> std::collections::HashMap<String, String> {
    let (code, out, err) = common::run_subcommand("serve", &["--help"], &[]);
    assert_eq!(code, 0, "{err}");
    let mut defaults = std::collections::HashMap::new();
    let mut flag: Option<String> = None;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--") {
            flag = rest.split([' ', '=']).next().map(|f| f.replace('-', "_"));
        }
        let stated = line
            .split_once("[default: ")
            .and_then(|(_, rest)| rest.split_once(']'));
        if let (Some(flag), Some((value, _))) = (&flag, stated) {
            defaults.insert(flag.clone(), value.to_string());
        }
    }
    defaults
}
