//! Requests queued behind a busy instance: each gets its own rows when the instance frees,
//! or expires there (504) without running.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_a_busy_instance_each_get_their_own_rows() {
    // One row per batch: every request but the first waits in the queue while the
    // instance runs another, and the instance takes it from there when it finishes.
    let rows = digit_rows();
    let repo = ScratchRepo::new("behind");
    repo.add("mlp_digits", "digits", 1, "max_batch_size = 1\n");
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..48).map(|i| &rows[i % rows.len()]).collect();
    predict_each_at_once(&client, &server, &requests, 1).await;
    assert_eq!(metric(&server, "mlpserve_executions_total").await, 48.0);
    assert_eq!(metric(&server, "mlpserve_queue_depth").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_expire_behind_a_busy_instance_answer_504_and_never_run() {
    // One row per batch and a 1 ms deadline: queued work expires while the instance runs
    // other work, and is answered when it (or the batcher task) next looks at the queue.
    let rows = digit_rows();
    let repo = ScratchRepo::new("expire-behind");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "max_batch_size = 1\ndefault_timeout_ms = 1\n",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    // 512 rows split into 512 one-row jobs, queued at once: they cannot all run in 1 ms.
    let big: Vec<_> = (0..512).map(|i| rows[i % rows.len()].0.clone()).collect();
    let (status, _, body) =
        predict(&client, &server, json!({"model": "digits", "inputs": big})).await;
    assert_eq!(status, 504, "{body}");
    // Its chunks' jobs hold its admission until each is answered, run or dropped.
    let settle = Instant::now() + Duration::from_secs(10);
    while metric(&server, "mlpserve_inflight_requests").await > 0.0 {
        assert!(
            Instant::now() < settle,
            "the big request's chunks never settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ran_before = metric(&server, "mlpserve_executions_total").await;
    assert!(ran_before < 512.0, "{ran_before} of 512 chunks ran");
    // Concurrent one-row requests: each is answered once, 200 only if it ran.
    let calls = (0..64).map(|i| {
        let px = &rows[i % rows.len()].0;
        predict(&client, &server, json!({"model": "digits", "inputs": [px]}))
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut ran = 0.0;
    for (status, _, body) in &answers {
        match status {
            200 => ran += 1.0,
            504 => assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("timed out"),
                "{body}"
            ),
            _ => panic!("status {status}: {body}"),
        }
    }
    // Chunks of the big request still queued when it failed are abandoned, never run.
    assert_eq!(
        metric(&server, "mlpserve_executions_total").await,
        ran_before + ran
    );
}
