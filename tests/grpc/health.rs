//! The standard `grpc.health.v1.Health` service across the server's lifetime: SERVING
//! while it serves, NOT_SERVING as soon as shutdown starts.

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::common::{zoo, TestServer};

#[test]
fn health_turns_not_serving_when_shutdown_starts() {
    let server = TestServer::start(&zoo());
    let url = format!("http://{}", server.grpc);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let request = HealthCheckRequest {
            service: "inference.GRPCInferenceService".into(),
        };
        let mut watch = HealthClient::new(channel)
            .watch(request)
            .await
            .expect("watch")
            .into_inner();
        let first = watch
            .message()
            .await
            .expect("first status")
            .expect("a status");
        assert_eq!(first.status, ServingStatus::Serving as i32);
        let stopping = std::thread::spawn(move || server.stop());
        let next = watch
            .message()
            .await
            .expect("status after shutdown")
            .expect("a status");
        assert_eq!(next.status, ServingStatus::NotServing as i32);
        // Once the watcher goes away nothing holds the drain open.
        drop(watch);
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || stopping.join().expect("stop thread"))
            .await
            .expect("join")
            .expect("clean stop");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "shutdown took {:?}",
            started.elapsed()
        );
    });
}
