//! The `file:DIR` sink: one JSON object per line in `DIR/payload.jsonl`, rotated by size to
//! `DIR/payload-<microseconds since the epoch>.jsonl`, keeping the newest `max_files`
//! rotated files. Runs on its own thread (file I/O blocks), which takes the queued records
//! every [`GATHER`] (or as soon as [`WAKE_RECORDS`] wait), writes them through a large
//! buffer and flushes once per look: a write per record would cost a system call each. A
//! failed write drops its records (counted) and the next record tries again. Lines are
//! written by hand into one reused buffer, and a JSON body the server already parsed or
//! wrote whole ([`Payload::whole_json`]) is copied in as it is, not parsed again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{dropped, write_rfc3339, Payload, PayloadLogError, Record, WRITTEN};
use crate::handoff::{Flush, Handoff};
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;

/// The file being written.
const CURRENT: &str = "payload.jsonl";
/// Records wait at most this long to be written (after the first of them arrived).
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);
/// This many waiting wake the writer at once.
const WAKE_RECORDS: usize = 512;

/// Opens (creates) the directory and starts the writer thread, which holds at most
/// `capacity` records; an unusable directory is an error at start, naming it.
pub fn start(
    dir: &Path,
    max_file_bytes: u64,
    max_files: usize,
    capacity: usize,
) -> Result<Handoff<Box<Record>>, PayloadLogError> {
    std::fs::create_dir_all(dir).map_err(|source| PayloadLogError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    let files = Files::open(dir.to_path_buf(), max_file_bytes, max_files).map_err(|source| {
        PayloadLogError::File {
            dir: dir.to_path_buf(),
            source,
        }
    })?;
    let handoff = Handoff::new(capacity, WAKE_RECORDS);
    let taken = handoff.clone();
    std::thread::Builder::new()
        .name("payload-log".to_string())
        .spawn(move || files.serve(&taken))
        .map_err(PayloadLogError::Thread)?;
    Ok(handoff)
}

struct Files {
    dir: PathBuf,
    out: BufWriter<File>,
    /// The line being written, reused.
    line: Vec<u8>,
    /// Bytes in the current file.
    size: u64,
    max_file_bytes: u64,
    max_files: usize,
}

impl Files {
    fn open(dir: PathBuf, max_file_bytes: u64, max_files: usize) -> std::io::Result<Files> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(CURRENT))?;
        let size = file.metadata()?.len();
        Ok(Files {
            dir,
            out: BufWriter::with_capacity(1 << 20, file),
            line: Vec::with_capacity(4096),
            size,
            max_file_bytes,
            max_files,
        })
    }

    /// Writes what each look takes and flushes it, until the log is closed.
    fn serve(mut self, handoff: &Handoff<Box<Record>>) {
        loop {
            let taken = handoff.take(GATHER);
            let mut pending = 0u64;
            for record in &taken.items {
                pending += 1;
                if let Err(e) = self.write(record) {
                    dropped(pending, &format!("cannot write the payload log: {e}"));
                    pending = 0;
                }
            }
            self.flush(&mut pending);
            taken.flushes.into_iter().for_each(Flush::done);
            if taken.closed {
                return;
            }
        }
    }

    fn flush(&mut self, pending: &mut u64) {
        match self.out.flush() {
            Ok(()) => WRITTEN.inc_by(*pending),
            Err(e) => dropped(*pending, &format!("cannot write the payload log: {e}")),
        }
        *pending = 0;
    }

    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        write_line(record, &mut line);
        line.push(b'\n');
        let len = line.len() as u64;
        let written = self.write_line(&line, len);
        self.line = line;
        written
    }

    fn write_line(&mut self, line: &[u8], len: u64) -> std::io::Result<()> {
        if self.size > 0 && self.size + len > self.max_file_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// Closes the current file under a rotated name, opens a fresh one and deletes the
    /// oldest rotated files beyond `max_files`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        std::fs::rename(
            self.dir.join(CURRENT),
            self.dir.join(format!("payload-{micros:020}.jsonl")),
        )?;
        let line = std::mem::take(&mut self.line);
        *self = Files::open(self.dir.clone(), self.max_file_bytes, self.max_files)?;
        self.line = line;
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("payload-") && n.ends_with(".jsonl"))
            })
            .collect();
        // Zero-padded times: name order is age order.
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.max_files);
        for old in &rotated[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// A body in a record: JSON bodies byte for byte as they were sent (so a reader sees the
/// inputs as sent), others base64 with their content type.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Json(&'a RawValue),
    /// A JSON body that spans lines, compacted to keep one record per line.
    Compacted(serde_json::Value),
    Encoded {
        content_type: &'a str,
        base64: String,
    },
}

impl<'a> Body<'a> {
    fn of(p: &'a Payload) -> Body<'a> {
        if p.content_type.starts_with("application/json") {
            if let Ok(raw) = serde_json::from_slice::<&RawValue>(&p.body) {
                // Raw line breaks in JSON are whitespace (strings escape theirs).
                if !raw.get().contains(['\n', '\r']) {
                    return Body::Json(raw);
                }
                if let Ok(value) = serde_json::from_str(raw.get()) {
                    return Body::Compacted(value);
                }
            }
        }
        Body::Encoded {
            content_type: &p.content_type,
            base64: base64::engine::general_purpose::STANDARD.encode(&p.body),
        }
    }
}

/// One record as a JSON object, appended to `out`: `time`, `id`, `model`, `version`,
/// `status`, `latency_ms`, `headers` (by name), then `request` and `response` when kept.
pub fn write_line(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, r.time);
    out.extend_from_slice(b"\",\"id\":");
    json(out, &r.id);
    out.extend_from_slice(b",\"model\":");
    json(out, &r.model);
    out.extend_from_slice(b",\"version\":");
    json(out, &r.version);
    out.extend_from_slice(b",\"status\":");
    json(out, &r.status);
    out.extend_from_slice(b",\"latency_ms\":");
    json(out, &(r.latency.as_secs_f64() * 1e3));
    out.extend_from_slice(b",\"headers\":");
    if r.headers.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        // By name, one value each (the last), as a JSON object wants them.
        let headers: BTreeMap<&str, &str> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        json(out, &headers);
    }
    for (name, payload) in [(&b"request"[..], &r.request), (b"response", &r.response)] {
        let Some(p) = payload else { continue };
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
        write_body(p, out);
    }
    out.push(b'}');
}

/// A body: one the server parsed or wrote whole as JSON, on one line, copied as it is;
/// any other as [`Body::of`] makes it.
fn write_body(p: &Payload, out: &mut Vec<u8>) {
    let one_line = || memchr::memchr2(b'\n', b'\r', &p.body).is_none();
    if p.whole_json && p.content_type.starts_with("application/json") && one_line() {
        out.extend_from_slice(&p.body);
    } else {
        let _ = serde_json::to_writer(&mut *out, &Body::of(p));
    }
}

/// A string, number or map as serde_json writes it.
fn json(out: &mut Vec<u8>, v: &impl Serialize) {
    // Serializing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

/// One record as a JSON object.
#[cfg(test)]
fn json_line(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    write_line(r, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn record(body: &'static [u8]) -> Record {
        Record {
            time: SystemTime::UNIX_EPOCH,
            id: "r1".into(),
            model: "m".into(),
            version: "1".into(),
            status: 200,
            latency: Duration::from_millis(2),
            headers: vec![("x-tenant".into(), "a".into())],
            request: Some(Payload {
                content_type: "application/json".into(),
                body: bytes::Bytes::from_static(body),
                whole_json: false,
            }),
            response: Some(Payload {
                content_type: "application/octet-stream".into(),
                body: bytes::Bytes::from_static(b"\x00\x01"),
                whole_json: false,
            }),
        }
    }

    #[test]
    fn json_bodies_are_kept_as_json_and_others_as_base64() {
        let line: serde_json::Value =
            serde_json::from_slice(&json_line(&record(br#"{"inputs":[1]}"#))).unwrap();
        assert_eq!(line["request"]["inputs"][0], 1);
        assert_eq!(line["response"]["base64"], "AAE=");
        assert_eq!(line["headers"]["x-tenant"], "a");
        assert_eq!(line["status"], 200);
    }

    #[test]
    fn json_bodies_are_kept_byte_for_byte_on_one_line() {
        let sent = record(br#"{"inputs": [1.50, 2]}"#);
        let line = String::from_utf8(json_line(&sent)).unwrap();
        assert!(
            line.contains(r#""request":{"inputs": [1.50, 2]}"#),
            "{line}"
        );
        let pretty = record(b"{\n  \"inputs\": [1]\n}\n");
        let line = String::from_utf8(json_line(&pretty)).unwrap();
        assert!(
            !line.contains('\n') && line.contains(r#""request":{"inputs":[1]}"#),
            "{line}"
        );
    }

    #[test]
    fn bodies_parsed_whole_are_copied_as_they_are_and_read_the_same() {
        let mut sent = record(br#"{"inputs": [1.50, 2]}"#);
        let checked = String::from_utf8(json_line(&sent)).unwrap();
        sent.request.as_mut().unwrap().whole_json = true;
        let copied = String::from_utf8(json_line(&sent)).unwrap();
        assert_eq!(copied, checked);
        assert!(
            copied.starts_with(r#"{"time":"1970-01-01T00:00:00.000000Z","id":"r1","model":"m","version":"1","status":200,"latency_ms":2.0,"headers":{"x-tenant":"a"},"request":{"inputs": [1.50, 2]},"response":{"#),
            "{copied}"
        );
        // Still one line when the document spans several.
        sent.request.as_mut().unwrap().body = bytes::Bytes::from_static(b"{\"inputs\":\n[1]}");
        let line = String::from_utf8(json_line(&sent)).unwrap();
        assert!(line.contains(r#""request":{"inputs":[1]}"#), "{line}");
        // Strings are escaped; no headers is an empty object.
        sent.id = "a\"b\n".into();
        sent.headers.clear();
        sent.response = None;
        let line: serde_json::Value = serde_json::from_slice(&json_line(&sent)).unwrap();
        assert_eq!(line["id"], "a\"b\n");
        assert_eq!(line["headers"], serde_json::json!({}));
        assert!(line.get("response").is_none());
    }

    #[test]
    fn rotation_keeps_file_size_and_count_limits() {
        let dir = std::env::temp_dir().join(format!("mlpserve-plog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let max = 2048;
        let mut files = Files::open(dir.clone(), max, 3).unwrap();
        let r = record(br#"{"inputs":[1,2,3,4,5,6,7,8,9,10]}"#);
        for _ in 0..200 {
            files.write(&r).unwrap();
        }
        files.out.flush().unwrap();
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(entries.len(), 4, "the current file and 3 rotated ones");
        for e in &entries {
            let len = e.metadata().unwrap().len();
            assert!(len <= max && len > 0, "{:?} holds {len} bytes", e.path());
            let text = std::fs::read_to_string(e.path()).unwrap();
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
