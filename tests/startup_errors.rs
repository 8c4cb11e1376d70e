//! A server that cannot start says which part failed and why, as a typed error of that
//! part: `mlpserve::run` on real listeners with a configuration that breaks one part at a
//! time (the repository, TLS, the payload log, tracing). Each message is the one the
//! operator reads in the log, so it is pinned too.

mod common;

use common::ScratchRepo;
use mlpserve::api::tls::TlsError;
use mlpserve::config::observe::{
    OtlpProtocol, PayloadLogConfig, PayloadLogMode, PayloadSink, TraceConfig,
};
use mlpserve::config::TlsFiles;
use mlpserve::payload_log::PayloadLogError;
use mlpserve::repository::{ControlError, StartupError};
use mlpserve::telemetry::TelemetryError;
use mlpserve::{Listeners, ServeError, ServerConfig};

/// Runs a server on `config` with a shutdown that is already due: a start that succeeds
/// returns `Ok` at once instead of serving forever.
fn start(config: ServerConfig) -> Result<(), ServeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let listeners = Listeners::bind(&config).await.unwrap();
            mlpserve::run(config, listeners, async {}).await
        })
}

#[test]
fn an_empty_repository_in_mode_none_is_no_models_under_its_root() {
    let repo = ScratchRepo::new("startup-empty");
    let err = start(ServerConfig::for_tests(&repo.path)).unwrap_err();
    match &err {
        ServeError::Repository(StartupError::NoModels(root)) => assert_eq!(root, &repo.path),
        other => panic!("expected NoModels, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with("no models found under "),
        "{err}"
    );
}

#[test]
fn exit_on_error_keeps_each_failed_model_with_its_cause() {
    let repo = ScratchRepo::digits("startup-exit");
    let corrupt = repo.path.join("corrupt/1");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("model.onnx"), b"this is not an onnx graph").unwrap();
    let mut config = ServerConfig::for_tests(&repo.path);
    config.exit_on_error = true;
    let err = start(config).unwrap_err();
    let ServeError::Repository(StartupError::ModelsFailed(failed)) = &err else {
        panic!("expected ModelsFailed, got {err:?}");
    };
    let [(name, cause)] = failed.as_slice() else {
        panic!("expected one failed model, got {failed:?}");
    };
    assert_eq!(name, "corrupt");
    // A graph ONNX Runtime refuses is the model's fault (a 400 when loaded through the
    // API), not the server's.
    assert!(matches!(cause, ControlError::Unservable(_)), "{cause:?}");
    assert!(
        err.to_string()
            .starts_with("--exit-on-error: model 'corrupt': "),
        "{err}"
    );
}

#[test]
fn a_missing_tls_certificate_names_the_file() {
    let repo = ScratchRepo::digits("startup-tls");
    let mut config = ServerConfig::for_tests(&repo.path);
    let cert = repo.path.join("cert.pem");
    config.transport.tls = Some(TlsFiles {
        cert: cert.clone(),
        key: repo.path.join("key.pem"),
        client_ca: None,
    });
    let err = start(config).unwrap_err();
    match &err {
        ServeError::Tls(TlsError::Unreadable { path, .. }) => assert_eq!(path, &cert),
        other => panic!("expected an unreadable certificate, got {other:?}"),
    }
}

#[test]
fn a_payload_log_directory_that_cannot_be_made_is_named() {
    let repo = ScratchRepo::digits("startup-payload");
    // A regular file where the directory should go.
    let blocker = repo.path.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let dir = blocker.join("payloads");
    let mut config = ServerConfig::for_tests(&repo.path);
    config.payload_log = Some(PayloadLogConfig {
        sink: PayloadSink::Files(dir.clone()),
        sample: 1.0,
        mode: PayloadLogMode::All,
        headers: Vec::new(),
        max_file_bytes: 1 << 20,
        max_files: 2,
    });
    let err = start(config).unwrap_err();
    match &err {
        ServeError::PayloadLog(PayloadLogError::Directory { dir: named, .. }) => {
            assert_eq!(named, &dir)
        }
        other => panic!("expected the payload log directory, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("payload log directory {}: ", dir.display())),
        "{err}"
    );
}

#[test]
fn an_https_collector_is_refused_with_the_endpoint() {
    let repo = ScratchRepo::digits("startup-otlp");
    let mut config = ServerConfig::for_tests(&repo.path);
    config.traces = Some(TraceConfig {
        endpoint: "https://collector:4317".into(),
        protocol: OtlpProtocol::Grpc,
        service_name: "mlpserve".into(),
        sample_ratio: 1.0,
    });
    let err = start(config).unwrap_err();
    match &err {
        ServeError::Telemetry(TelemetryError::Endpoint { endpoint, .. }) => {
            assert_eq!(endpoint, "https://collector:4317")
        }
        other => panic!("expected the OTLP endpoint, got {other:?}"),
    }
}
