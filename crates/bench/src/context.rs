//! `--compare-context`: one generated ranking request in two forms, its context inputs
//! repeated on every row (what a client sends without broadcast inputs) and sent once with
//! first dimension 1, measured in alternating rounds at every load level. Prints request
//! bytes, rows/s, p50/p99 and server CPU per request of both, and the two ratios the
//! ranking targets name: context-once ÷ repeated rows/s (target >= 1.5 at 16 clients over
//! V2 JSON) and context-once ÷ the bare ORT ceiling at the batch size the server ran (the
//! ceiling is fed the already-expanded batch; target >= 0.85).

use super::ceiling::CeilingPoint;
use super::report::{interpolate, server_cpu_per_request_us};
use super::{Api, BenchArgs, LevelReport};

/// Target of context-once ÷ repeated rows/s, at [`RATIO_CLIENTS`] clients over V2 JSON.
const RATIO_TARGET: f64 = 1.5;
const RATIO_CLIENTS: usize = 16;
/// Target of context-once ÷ the ceiling at the same batch size.
const CEILING_TARGET: f64 = 0.85;

/// Both forms, round by round.
pub struct Comparison {
    pub repeated_body: usize,
    pub once_body: usize,
    pub rounds: Vec<Round>,
}

/// One round: each form measured at every `--concurrency` level, repeated first.
pub struct Round {
    pub repeated: Vec<LevelReport>,
    pub once: Vec<LevelReport>,
}

impl Round {
    fn form(&self, once: bool) -> &[LevelReport] {
        if once {
            &self.once
        } else {
            &self.repeated
        }
    }
}

fn rows_per_s(l: &LevelReport) -> f64 {
    l.requests_per_s() * l.rows_per_request as f64
}

fn ms(l: &LevelReport, q: f64) -> f64 {
    l.result.latency.value_at_quantile(q) as f64 / 1e6
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value >= target {
        "met"
    } else {
        "NOT met"
    }
}

/// Prints the comparison after the main report.
pub fn print(
    args: &BenchArgs,
    c: &Comparison,
    ceiling: Option<&Result<Vec<CeilingPoint>, String>>,
) {
    let encoding = match (args.api, args.binary) {
        (Api::V2, false) => "V2 JSON",
        (Api::V2, true) => "V2 binary",
        (Api::Grpc, _) => "gRPC",
        (Api::Predict, _) => "/predict",
    };
    println!();
    println!(
        "context-once vs repeated context: model {}, {} rows per request, {encoding}, context inputs {}",
        args.model,
        args.rows,
        args.context.join(", ")
    );
    println!(
        "request body: repeated {} B, once {} B ({:.1} x smaller)",
        c.repeated_body,
        c.once_body,
        c.repeated_body as f64 / c.once_body.max(1) as f64
    );
    println!(
        "{:>5} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6} {:>14}",
        "round", "clients", "form", "rows/s", "p50 ms", "p99 ms", "batch", "server CPU µs"
    );
    for (round, measured) in c.rounds.iter().enumerate() {
        for (r, o) in measured.repeated.iter().zip(&measured.once) {
            for (form, l) in [("repeated", r), ("once", o)] {
                println!(
                    "{:>5} {:>7} {:>9} {:>9.0} {:>7.3} {:>7.3} {:>6} {:>14}",
                    round + 1,
                    l.concurrency,
                    form,
                    rows_per_s(l),
                    ms(l, 0.5),
                    ms(l, 0.99),
                    l.mean_batch.map_or("-".into(), |b| format!("{b:.1}")),
                    server_cpu_per_request_us(l).map_or("-".into(), |u| format!("{u:.0}")),
                );
            }
        }
    }
    println!("(server CPU: µs of every server thread per request; batch: mean rows per ORT run)");
    let points = match ceiling {
        Some(Ok(points)) => Some(points.as_slice()),
        _ => None,
    };
    for (i, &clients) in args.concurrency.iter().enumerate() {
        let level = |once: bool| {
            c.rounds
                .iter()
                .filter_map(|round| round.form(once).get(i))
                .collect::<Vec<_>>()
        };
        let repeated = level(false);
        let once = level(true);
        let ratios: Vec<f64> = repeated
            .iter()
            .zip(&once)
            .filter(|(r, _)| rows_per_s(r) > 0.0)
            .map(|(r, o)| rows_per_s(o) / rows_per_s(r))
            .collect();
        let Some(ratio) = mean(&ratios) else {
            continue;
        };
        let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let target = if clients == RATIO_CLIENTS && args.api == Api::V2 && !args.binary {
            format!(
                " (target >= {RATIO_TARGET}: {})",
                verdict(ratio, RATIO_TARGET)
            )
        } else {
            String::new()
        };
        println!(
            "  {clients:>3} clients: once ÷ repeated rows/s = {ratio:.2} (rounds {}){target}",
            per_round.join(", ")
        );
        if let Some(points) = points {
            let vs: Vec<(f64, f64)> = once
                .iter()
                .filter_map(|o| {
                    let batch = o.mean_batch?;
                    Some((batch, rows_per_s(o) / interpolate(points, batch)?))
                })
                .collect();
            match (
                mean(&vs.iter().map(|v| v.0).collect::<Vec<_>>()),
                mean(&vs.iter().map(|v| v.1).collect::<Vec<_>>()),
            ) {
                (Some(batch), Some(x)) => println!(
                    "  {clients:>3} clients: once ÷ ceiling at batch {batch:.0} = {x:.2} (target >= {CEILING_TARGET}: {})",
                    verdict(x, CEILING_TARGET)
                ),
                _ => println!(
                    "  {clients:>3} clients: once ÷ ceiling: the server's mean batch is outside --ceiling-batches"
                ),
            }
        }
    }
}
