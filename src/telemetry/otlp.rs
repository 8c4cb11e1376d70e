//! OTLP's `ExportTraceServiceRequest` in protobuf wire form, written straight from the
//! recorded requests and batches ([`super::record`]): one resource (the service), one
//! instrumentation scope, the spans. No intermediate message objects: at full sampling
//! the server records several spans per request, and an object per span, id, name and
//! attribute cost more than the writing itself. Field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`.

use super::record::{Attrs, Batch, Clock, Outcome, Request, SpanRef, Value};

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `Span.SpanKind`.
const KIND_INTERNAL: u64 = 1;
const KIND_SERVER: u64 = 2;
/// `Status.StatusCode`.
const STATUS_OK: u64 = 1;
const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the W3C sampled flag, and whether the parent is known local or remote.
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// What every export names as its source.
pub struct Resource {
    pub service_name: String,
    pub service_version: &'static str,
}

/// One span as written: ids, parent, times (Unix nanoseconds) and the rest.
struct Span<'a> {
    trace_id: &'a [u8; 16],
    span_id: &'a [u8; 8],
    trace_state: &'a str,
    parent: Option<(&'a [u8; 8], bool)>,
    name: &'a str,
    kind: u64,
    start: u64,
    end: u64,
    attrs: Option<&'a Attrs>,
    links: &'a [SpanRef],
    status: Option<&'a Outcome>,
}

/// Writes the export request holding the spans of `requests` and `batches` into `out`
/// (cleared first), their times read on `clock`; `ids` makes the ids of the spans nothing
/// else refers to. Returns the number of spans written.
pub fn encode(
    resource: &Resource,
    requests: &[Box<Request>],
    batches: &[Box<Batch>],
    clock: &Clock,
    ids: &mut impl FnMut() -> [u8; 8],
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    let mut count = 0;
    // ExportTraceServiceRequest.resource_spans = 1
    nested(out, 1, |rs| {
        // ResourceSpans.resource = 1
        nested(rs, 1, |r| {
            attr(
                r,
                1,
                "service.name",
                &Value::Str(resource.service_name.clone().into()),
            );
            attr(
                r,
                1,
                "service.version",
                &Value::Str(resource.service_version.into()),
            );
        });
        // ResourceSpans.scope_spans = 2
        nested(rs, 2, |ss| {
            // ScopeSpans.scope = 1: InstrumentationScope { name = 1, version = 2 }
            nested(ss, 1, |scope| {
                string(scope, 1, "mlpserve");
                string(scope, 2, resource.service_version);
            });
            for r in requests {
                count += request_spans(ss, r, clock, ids);
            }
            for b in batches {
                count += batch_spans(ss, b, clock, ids);
            }
        });
    });
    count
}

/// A request's server span and its decode and encode children.
fn request_spans(
    out: &mut Vec<u8>,
    r: &Request,
    clock: &Clock,
    ids: &mut impl FnMut() -> [u8; 8],
) -> usize {
    let state = r.trace_state.as_deref().unwrap_or("");
    span(
        out,
        &Span {
            trace_id: &r.own.trace_id,
            span_id: &r.own.span_id,
            trace_state: state,
            parent: r.parent.as_ref().map(|p| (p, true)),
            name: "infer",
            kind: KIND_SERVER,
            start: clock.nanos(r.start),
            end: clock.nanos(r.end),
            attrs: Some(&r.attrs),
            links: &[],
            status: Some(&r.outcome),
        },
    );
    for child in r.children.iter() {
        let id = ids();
        span(
            out,
            &Span {
                trace_id: &r.own.trace_id,
                span_id: &id,
                trace_state: state,
                parent: Some((&r.own.span_id, false)),
                name: child.name,
                kind: KIND_INTERNAL,
                start: clock.nanos(child.start),
                end: clock.nanos(child.end),
                attrs: None,
                links: &[],
                status: None,
            },
        );
    }
    1 + r.children.len()
}

/// A batch's ORT run (child of its first traced request, linked from all of them) and the
/// queue wait of each traced request in it.
fn batch_spans(
    out: &mut Vec<u8>,
    b: &Batch,
    clock: &Clock,
    ids: &mut impl FnMut() -> [u8; 8],
) -> usize {
    let Some(first) = b.jobs.first() else {
        return 0;
    };
    let id = ids();
    let links: Vec<SpanRef> = b.jobs.iter().map(|j| j.span).collect();
    span(
        out,
        &Span {
            trace_id: &first.span.trace_id,
            span_id: &id,
            trace_state: "",
            parent: Some((&first.span.span_id, false)),
            name: "ort.run",
            kind: KIND_INTERNAL,
            start: clock.nanos(b.started),
            end: clock.nanos(b.ended),
            attrs: Some(&b.attrs),
            links: &links,
            status: None,
        },
    );
    for job in &b.jobs {
        let id = ids();
        span(
            out,
            &Span {
                trace_id: &job.span.trace_id,
                span_id: &id,
                trace_state: "",
                parent: Some((&job.span.span_id, false)),
                name: "queue",
                kind: KIND_INTERNAL,
                start: clock.nanos(job.enqueued),
                end: clock.nanos(b.formed.max(job.enqueued)),
                attrs: None,
                links: &[],
                status: None,
            },
        );
    }
    1 + b.jobs.len()
}

/// ScopeSpans.spans = 2
fn span(out: &mut Vec<u8>, s: &Span<'_>) {
    nested(out, 2, |o| {
        bytes(o, 1, s.trace_id);
        bytes(o, 2, s.span_id);
        string(o, 3, s.trace_state);
        let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
        if let Some((parent, remote)) = s.parent {
            bytes(o, 4, parent);
            if remote {
                flags |= FLAG_IS_REMOTE;
            }
        }
        string(o, 5, s.name);
        varint_field(o, 6, s.kind);
        fixed64(o, 7, s.start);
        fixed64(o, 8, s.end.max(s.start));
        for a in s.attrs.into_iter().flat_map(Attrs::iter) {
            attr(o, 9, a.key, &a.value);
        }
        for l in s.links {
            // Span.links = 13: Link { trace_id = 1, span_id = 2, flags = 6 }
            nested(o, 13, |link| {
                bytes(link, 1, &l.trace_id);
                bytes(link, 2, &l.span_id);
                fixed32(link, 6, FLAG_SAMPLED | FLAG_HAS_IS_REMOTE);
            });
        }
        if let Some(outcome) = s.status {
            // Span.status = 15: Status { message = 2, code = 3 }
            nested(o, 15, |st| match outcome {
                Outcome::Ok => varint_field(st, 3, STATUS_OK),
                Outcome::Error(message) => {
                    string(st, 2, message);
                    varint_field(st, 3, STATUS_ERROR);
                }
                Outcome::Unset => {}
            });
        }
        fixed32(o, 16, flags);
    });
}

/// A `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 | int_value = 3 } }`.
fn attr(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    nested(out, field, |kv| {
        string(kv, 1, key);
        nested(kv, 2, |v| match value {
            Value::Str(s) => string_always(v, 1, s),
            Value::Short(s) => string_always(v, 1, s.as_str()),
            Value::Int(i) => varint_field(v, 3, *i as u64),
        });
    });
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; zero takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    key(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A string field; empty ones are left out (proto3's default).
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        string_always(out, field, s);
    }
}

/// A string field written even when empty (a oneof member, whose presence is the value).
fn string_always(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

/// A message field whose body `write` appends: its length is written first as one byte
/// and widened afterwards when the body came out longer than 127 bytes.
fn nested(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    let width = varint_len(len as u64);
    if width > 1 {
        out.splice(at + 1..at + 1, std::iter::repeat_n(0, width - 1));
    }
    let mut v = len as u64;
    for b in &mut out[at..at + width] {
        *b = v as u8 & 0x7f | if v >= 0x80 { 0x80 } else { 0 };
        v >>= 7;
    }
}

impl Clock {
    /// Unix nanoseconds of `t`, from this clock's pair of readings.
    pub fn nanos(&self, t: std::time::Instant) -> u64 {
        match t.checked_duration_since(self.instant) {
            Some(after) => self.unix_nanos.saturating_add(after.as_nanos() as u64),
            None => self
                .unix_nanos
                .saturating_sub(self.instant.duration_since(t).as_nanos() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn varints_are_minimal() {
        for (v, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
            assert_eq!(varint_len(v), len, "{v}");
        }
    }

    #[test]
    fn nested_lengths_widen_past_127_bytes() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let mut out = Vec::new();
            nested(&mut out, 2, |o| o.extend(std::iter::repeat_n(7u8, n)));
            let mut want = vec![0x12];
            varint(&mut want, n as u64);
            want.extend(std::iter::repeat_n(7u8, n));
            assert_eq!(out, want, "{n}");
        }
    }

    /// What [`encode`] writes, read back with the OTLP project's own message types.
    #[test]
    fn export_requests_read_back_as_otlp() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
        use prost::Message;

        let t0 = Instant::now();
        let clock = Clock {
            instant: t0,
            unix_nanos: 1_700_000_000_000_000_000,
        };
        let at = |us| t0 + Duration::from_micros(us);
        let own = SpanRef {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let long_id = "r".repeat(300);
        let request = Box::new(Request {
            own,
            parent: Some([3; 8]),
            trace_state: Some("vendor=1".into()),
            start: at(0),
            end: at(100),
            attrs: [
                crate::telemetry::kv_text("mlpserve.request_id", &long_id),
                crate::telemetry::kv_count("mlpserve.rows", 1),
                crate::telemetry::kv_text("mlpserve.model", "ctr"),
            ]
            .into_iter()
            .collect(),
            children: [super::super::record::Child {
                name: "decode",
                start: at(1),
                end: at(5),
            }]
            .into_iter()
            .collect(),
            outcome: Outcome::Error("bad input".into()),
        });
        let other = SpanRef {
            trace_id: [4; 16],
            span_id: [5; 8],
        };
        let batch = Box::new(Batch {
            formed: at(10),
            started: at(11),
            ended: at(60),
            attrs: [crate::telemetry::kv_count("mlpserve.batch_rows", 2)]
                .into_iter()
                .collect(),
            jobs: vec![
                super::super::record::BatchJob {
                    span: own,
                    enqueued: at(6),
                },
                super::super::record::BatchJob {
                    span: other,
                    enqueued: at(8),
                },
            ],
        });
        let resource = Resource {
            service_name: "ranker".into(),
            service_version: "9.9.9",
        };
        let mut next = 0u8;
        let mut ids = || {
            next += 1;
            [0x10 + next; 8]
        };
        let mut out = Vec::new();
        let n = encode(&resource, &[request], &[batch], &clock, &mut ids, &mut out);
        assert_eq!(n, 5);

        let got = ExportTraceServiceRequest::decode(out.as_slice()).expect("valid OTLP");
        let rs = &got.resource_spans[0];
        let res = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(res[0].key, "service.name");
        assert_eq!(
            res[0].value.as_ref().unwrap().value,
            Some(Any::StringValue("ranker".into()))
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "mlpserve");
        let spans = &ss.spans;
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["infer", "decode", "ort.run", "queue", "queue"]);

        let infer = &spans[0];
        assert_eq!(infer.trace_id, [1; 16]);
        assert_eq!(infer.span_id, [2; 8]);
        assert_eq!(infer.parent_span_id, [3; 8]);
        assert_eq!(infer.trace_state, "vendor=1");
        assert_eq!(infer.kind, KIND_SERVER as i32);
        assert_eq!(infer.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(infer.end_time_unix_nano, 1_700_000_000_000_100_000);
        assert_eq!(infer.flags, 0x301);
        assert_eq!(infer.attributes[0].key, "mlpserve.request_id");
        assert_eq!(
            infer.attributes[0].value.as_ref().unwrap().value,
            Some(Any::StringValue(long_id))
        );
        assert_eq!(
            infer.attributes[1].value.as_ref().unwrap().value,
            Some(Any::IntValue(1))
        );
        assert_eq!(
            infer.attributes[2].value.as_ref().unwrap().value,
            Some(Any::StringValue("ctr".into())),
            "a short string, kept inline"
        );
        let status = infer.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "bad input"));

        let decode = &spans[1];
        assert_eq!(decode.parent_span_id, [2; 8]);
        assert_eq!(decode.trace_id, [1; 16]);
        assert_eq!(decode.span_id, [0x11; 8]);
        assert_eq!(decode.start_time_unix_nano, 1_700_000_000_000_001_000);
        assert_eq!(decode.flags, 0x101);

        let run = &spans[2];
        assert_eq!(
            run.parent_span_id, [2; 8],
            "child of the first traced request"
        );
        let links: Vec<(&[u8], &[u8])> = run
            .links
            .iter()
            .map(|l| (l.trace_id.as_slice(), l.span_id.as_slice()))
            .collect();
        assert_eq!(
            links,
            [
                (&[1u8; 16][..], &[2u8; 8][..]),
                (&[4u8; 16][..], &[5u8; 8][..])
            ]
        );
        assert_eq!(run.attributes[0].key, "mlpserve.batch_rows");
        let queue = &spans[4];
        assert_eq!(queue.trace_id, [4; 16]);
        assert_eq!(queue.parent_span_id, [5; 8]);
        assert_eq!(queue.start_time_unix_nano, 1_700_000_000_000_008_000);
        assert_eq!(queue.end_time_unix_nano, 1_700_000_000_000_010_000);
    }

    #[test]
    fn clock_maps_instants_on_both_sides() {
        let now = Instant::now();
        let clock = Clock {
            instant: now,
            unix_nanos: 1_000_000_000,
        };
        assert_eq!(clock.nanos(now + Duration::from_nanos(5)), 1_000_000_005);
        if let Some(before) = now.checked_sub(Duration::from_nanos(7)) {
            assert_eq!(clock.nanos(before), 999_999_993);
        }
    }
}
