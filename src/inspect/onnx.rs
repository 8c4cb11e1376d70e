//! What ONNX Runtime does not say about a `model.onnx`: the IR version, the opsets it
//! imports, the producer, and which initializers live outside the file (ONNX external
//! data, needed for tables over 2 GB). Decodes only those fields of the ONNX protobuf
//! (`onnx.proto`'s field numbers); every other field is skipped unread. Pure file reading.

use std::path::{Path, PathBuf};

use prost::Message;
use serde::Serialize;

/// `onnx.ModelProto`, the fields read here.
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

/// `onnx.GraphProto`, the fields read here.
#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

/// `onnx.NodeProto`: only counted.
#[derive(Clone, PartialEq, Message)]
struct NodeProto {}

/// `onnx.TensorProto`, the fields that say where its data lives.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "8")]
    name: String,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    /// 0 = DEFAULT (in the file), 1 = EXTERNAL.
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// One opset the graph imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opset {
    /// `ai.onnx` for the default domain.
    pub domain: String,
    pub version: i64,
}

/// One file holding external data, relative to the model file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalFile {
    pub location: String,
    /// Initializers stored in it.
    pub tensors: usize,
    /// Its size on disk; `None` when it is missing.
    pub bytes: Option<u64>,
}

/// What the file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnnxFacts {
    pub ir_version: i64,
    pub opsets: Vec<Opset>,
    pub producer_name: String,
    pub producer_version: String,
    pub graph_name: String,
    pub nodes: usize,
    pub initializers: usize,
    pub external_data: Vec<ExternalFile>,
}

/// Why a file is not an ONNX model this reader can describe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// Not a protobuf `ModelProto`, or one without a graph or an IR version.
    #[error("{} is not an ONNX model ({why})", path.display())]
    NotOnnx { path: PathBuf, why: String },
}

/// Reads `path` (a `model.onnx`). The error says why it is not an ONNX model.
pub fn read(path: &Path) -> Result<OnnxFacts, OnnxError> {
    let not_onnx = |why: String| OnnxError::NotOnnx {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let model =
        ModelProto::decode(bytes.as_slice()).map_err(|e| not_onnx(format!("protobuf: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| not_onnx("it has no graph".to_string()))?;
    if model.ir_version <= 0 {
        return Err(not_onnx("no IR version".to_string()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut external_data: Vec<ExternalFile> = Vec::new();
    for t in graph.initializer.iter().filter(|t| t.data_location == 1) {
        let location = t
            .external_data
            .iter()
            .find(|e| e.key == "location")
            .map_or_else(
                || format!("(no location for '{}')", t.name),
                |e| e.value.clone(),
            );
        match external_data.iter_mut().find(|f| f.location == location) {
            Some(f) => f.tensors += 1,
            None => external_data.push(ExternalFile {
                bytes: std::fs::metadata(dir.join(&location))
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len()),
                location,
                tensors: 1,
            }),
        }
    }
    Ok(OnnxFacts {
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .into_iter()
            .map(|o| Opset {
                domain: if o.domain.is_empty() {
                    "ai.onnx".to_string()
                } else {
                    o.domain
                },
                version: o.version,
            })
            .collect(),
        producer_name: model.producer_name,
        producer_version: model.producer_version,
        graph_name: graph.name,
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        external_data,
    })
}
