//! Printing a bench run: one line per load level, the ceiling table, and the derived
//! figures (server rows/s ÷ best ceiling rows/s, server p50 at the lowest load minus the
//! bare batch-1 run). This is the command's output, so it goes to stdout.

use super::ceiling::CeilingPoint;
use super::payload::Payload;
use super::{Api, BenchArgs, LevelReport};
use crate::shared::ServerConfig;

/// Everything one report shows.
pub struct Report<'a> {
    pub args: &'a BenchArgs,
    pub base: &'a str,
    pub server: Option<&'a ServerConfig>,
    pub payload: &'a Payload,
    pub levels: &'a [LevelReport],
    pub ceiling: Option<&'a Result<Vec<CeilingPoint>, String>>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Prints the report.
pub fn print(r: &Report<'_>) {
    let a = r.args;
    let encoding = match (a.api, r.payload.json_len.is_some()) {
        (Api::Predict, _) => "/predict JSON",
        (Api::V2, true) => "v2 binary",
        (Api::V2, false) => "v2 JSON",
        (Api::Grpc, _) => "gRPC raw tensors",
    };
    let server = match r.server {
        Some(c) => format!(
            "in-process at {} (intra_op_threads {}, async threads {})",
            r.base, c.intra_op_threads, c.async_threads
        ),
        None => format!("external at {}", r.base),
    };
    println!(
        "model {}  api {encoding}  rows/request {}  body {} B  server {server}",
        a.model,
        r.payload.rows,
        r.payload.body.len()
    );
    println!(
        "closed loop, keep-alive; warm-up {:?}, window {:?} per level; load generator: {} thread(s)",
        a.warmup, a.duration, a.client_threads
    );
    println!(
        "{:>7} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8} {:>5}  CPU µs per request by thread role",
        "clients", "req/s", "rows/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "batch", "queue µs", "cores"
    );
    for l in r.levels {
        let rps = l.requests_per_s();
        let h = &l.result.latency;
        let per_request: Vec<String> = l
            .cores
            .iter()
            .filter(|(_, c)| *c > NEGLIGIBLE_CORES)
            .map(|(role, c)| format!("{role} {:.1}", c / rps.max(1e-9) * 1e6))
            .collect();
        println!(
            "{:>7} {:>9.0} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6} {:>6} {:>8} {:>5.2}  {}",
            l.concurrency,
            rps,
            rps * l.rows_per_request as f64,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            l.result.errors,
            opt(l.mean_batch, 2),
            opt(l.mean_queue_us, 1),
            l.cores.iter().map(|(_, c)| c).sum::<f64>(),
            per_request.join(", ")
        );
        let split = &l.result.split;
        if !split.rest.is_empty() {
            let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
            println!(
                "{:>7} latency split, p50 (p99) µs: queue {:.0} ({:.0}), ORT worker {:.0} ({:.0}), rest {:.0} ({:.0})",
                "",
                us(&split.queue, 0.5),
                us(&split.queue, 0.99),
                us(&split.compute, 0.5),
                us(&split.compute, 0.99),
                us(&split.rest, 0.5),
                us(&split.rest, 0.99)
            );
        }
        if let Some(e) = &l.result.first_error {
            println!("        first error: {e}");
        }
    }
    println!(
        "(batch: mean rows per ORT execution in the window; queue: mean queue time; cores: CPU this process used, of {}; \
         latency split: the server's x-queue-time-us and x-compute-time-us headers, rest = latency - both)",
        cores_available()
    );
    if r.levels.iter().all(|l| l.mean_batch.is_none()) {
        println!("(batch: the server reports neither /v2/models/{{m}}/stats nor mlpserve_* counters in /metrics)");
    }
    match r.ceiling {
        None => {}
        Some(Err(e)) => println!("ceiling failed: {e}"),
        Some(Ok(points)) => print_ceiling(r, points),
    }
}

fn cores_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_ceiling(r: &Report<'_>, points: &[CeilingPoint]) {
    println!();
    println!(
        "in-process ceiling: bare session.run on the same model file, same session options \
         (mean of a measurement before and one after the load)"
    );
    println!(
        "{:>7} {:>8} {:>10} {:>9} {:>9} {:>6} {:>7}",
        "batch", "runs", "rows/s", "p50 µs", "p99 µs", "cores", "drift"
    );
    for p in points {
        // A context model's run is its context graph on these rows, then model.onnx.
        let context = if p.context_rows > 0 {
            format!("  (+ context graph on {} rows)", p.context_rows)
        } else {
            String::new()
        };
        println!(
            "{:>7} {:>8} {:>10.0} {:>9.1} {:>9.1} {:>6.2} {:>+6.0}%{context}",
            p.batch,
            p.runs,
            p.rows_per_s,
            p.p50_us,
            p.p99_us,
            p.cores,
            p.drift * 100.0
        );
    }
    let drift = points.iter().map(|p| p.drift.abs()).fold(0.0, f64::max);
    if drift > 0.1 {
        println!(
            "note: the ceiling changed by up to {:.0}% between before and after the load; \
             the machine's speed drifted, so ratios carry that much noise",
            drift * 100.0
        );
    }
    let Some(best) = points
        .iter()
        .max_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s))
    else {
        return;
    };
    let per_core = |p: &CeilingPoint| p.rows_per_s / p.cores.max(1e-9);
    let best_per_core = points.iter().map(per_core).fold(0.0, f64::max);
    println!(
        "best ceiling: {:.0} rows/s at batch {} ({:.0} rows per core-second at best)",
        best.rows_per_s, best.batch, best_per_core
    );
    for l in r.levels {
        let rows = l.requests_per_s() * l.rows_per_request as f64;
        let ort_part = if let Some(ort) = ort_cores(l) {
            format!(
                "; per ORT-thread core-second {:.0} rows = {:.2} x the ceiling's",
                rows / ort,
                rows / ort / best_per_core
            )
        } else {
            String::new()
        };
        let same_batch = l
            .mean_batch
            .and_then(|b| {
                interpolate(points, b)
                    .map(|c| format!("; {:.2} x the ceiling at batch {b:.0}", rows / c))
            })
            .unwrap_or_default();
        println!(
            "  {:>3} clients: server {:.0} rows/s = {:.2} x best ceiling{same_batch}{ort_part}",
            l.concurrency,
            rows,
            rows / best.rows_per_s
        );
    }
    let single = points.iter().find(|p| p.batch == r.payload.rows);
    let lowest = r.levels.iter().find(|l| l.concurrency == 1);
    if let (Some(bare), Some(low)) = (single, lowest) {
        let p50_us = low.result.latency.value_at_quantile(0.5) as f64 / 1e3;
        println!(
            "low load (1 client): server p50 {:.1} µs vs bare run at batch {} p50 {:.1} µs: overhead {:.1} µs",
            p50_us,
            bare.batch,
            bare.p50_us,
            p50_us - bare.p50_us
        );
        println!(
            "  bare run after a {} µs idle gap (as a server thread at low load runs it): p50 {:.1} µs = {:.2} x back-to-back; server overhead over it {:.1} µs",
            super::ceiling::IDLE_GAP.as_micros(),
            bare.idle_p50_us,
            bare.idle_p50_us / bare.p50_us.max(1e-9),
            p50_us - bare.idle_p50_us
        );
        println!(
            "  the same gap spent spinning (the vCPU never halts): p50 {:.1} µs = {:.2} x back-to-back (above 1 x: the time since the last run costs too, not only the halt)",
            bare.spin_p50_us,
            bare.spin_p50_us / bare.p50_us.max(1e-9),
        );
        if let Some(decode) = body_decode_us(r) {
            println!(
                "  decoding this request body in-process takes {decode:.1} µs: target p50 <= bare run + decode + 100 = {:.1} µs (server p50 {p50_us:.1} µs)",
                bare.p50_us + decode + 100.0
            );
        }
        let rps = low.requests_per_s();
        if let Some(ort) = ort_cores(low).map(|c| c / rps.max(1e-9) * 1e6) {
            println!(
                "  ORT-thread CPU per request {ort:.1} µs = {:.2} x the back-to-back run, {:.2} x the idle-gap run",
                ort / bare.p50_us.max(1e-9),
                ort / bare.idle_p50_us.max(1e-9)
            );
        }
        let busiest = r.levels.iter().max_by_key(|l| l.concurrency);
        if let (Some(low_cpu), Some((high, high_cpu))) = (
            server_cpu_per_request_us(low),
            busiest.and_then(|l| Some((l.concurrency, server_cpu_per_request_us(l)?))),
        ) {
            if high > 1 {
                println!(
                    "  server CPU per request (every server thread): {low_cpu:.1} µs at 1 client vs {high_cpu:.1} µs at {high} clients: {:.2} x (target <= 2)",
                    low_cpu / high_cpu.max(1e-9)
                );
            }
        }
    }
}

/// CPU of every server thread (ORT and async, not the load generator) per answered request.
pub(crate) fn server_cpu_per_request_us(l: &LevelReport) -> Option<f64> {
    let rps = l.requests_per_s();
    let cores: f64 = l
        .cores
        .iter()
        .filter(|(role, _)| *role != "client")
        .map(|(_, c)| c)
        .sum();
    (rps > 0.0 && cores > 0.0).then(|| cores / rps * 1e6)
}

/// CPU share (cores) below which a thread role did no real work in a window.
const NEGLIGIBLE_CORES: f64 = 0.005;

/// Cores the ORT worker threads used in a level, `None` when they did no real work (the
/// requests ran inline, `inline_run_us`).
fn ort_cores(l: &LevelReport) -> Option<f64> {
    l.cores
        .iter()
        .find(|(role, c)| *role == "ort" && *c > NEGLIGIBLE_CORES)
        .map(|(_, c)| *c)
}

/// Median time of the server's own V2 decoder (`v2_codec::decode`) on this run's request
/// body, in µs; `None` for `/predict` bodies.
fn body_decode_us(r: &Report<'_>) -> Option<f64> {
    use crate::shared::v2_codec;
    if r.args.api != Api::V2 {
        return None;
    }
    let mut headers = axum::http::HeaderMap::new();
    if let Some(len) = r.payload.json_len {
        headers.insert(v2_codec::HEADER_LENGTH, len.into());
    }
    let body = &r.payload.body;
    let mut times: Vec<f64> = (0..51)
        .map(|_| {
            let t = std::time::Instant::now();
            let decoded = v2_codec::decode(&headers, body);
            let took = t.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(decoded.is_ok());
            took
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
}

/// Ceiling rows/s at `batch`, interpolated linearly in log(batch) between measured points;
/// `None` outside the measured range.
pub(crate) fn interpolate(points: &[CeilingPoint], batch: f64) -> Option<f64> {
    let mut sorted: Vec<&CeilingPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.batch);
    sorted.windows(2).find_map(|w| {
        let (a, b) = (w[0].batch as f64, w[1].batch as f64);
        (a..=b).contains(&batch).then(|| {
            let t = if b > a {
                (batch.ln() - a.ln()) / (b.ln() - a.ln())
            } else {
                0.0
            };
            w[0].rows_per_s + t * (w[1].rows_per_s - w[0].rows_per_s)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(batch: usize, rows_per_s: f64) -> CeilingPoint {
        CeilingPoint {
            batch,
            runs: 1,
            rows_per_s,
            p50_us: 0.0,
            p99_us: 0.0,
            idle_p50_us: 0.0,
            spin_p50_us: 0.0,
            cores: 1.0,
            drift: 0.0,
            context_rows: 0,
        }
    }

    #[test]
    fn interpolation_is_log_linear_inside_the_range() {
        let points = [point(64, 200.0), point(1, 10.0), point(8, 100.0)];
        assert_eq!(interpolate(&points, 8.0), Some(100.0));
        // sqrt(8) is halfway between 1 and 8 in log space.
        let mid = interpolate(&points, 8f64.sqrt()).unwrap();
        assert!((mid - 55.0).abs() < 1e-9, "{mid}");
        assert_eq!(interpolate(&points, 512.0), None);
    }
}
