//! Request payloads for the load generator: read from a JSON file, or generated at random
//! from a model's inputs (V2 JSON, V2 binary tensors, or `/predict`). Also the random
//! tensors the in-process ceiling feeds to ONNX Runtime, so both see the same kind of data.
//! A generated request may hold a ranking context: inputs drawn once (one row) and either
//! repeated on every row or sent once with first dimension 1 (broadcast inputs).
//! Everything is built once, before the load starts; the hot loop only copies bytes.

use serde_json::{json, Value};

use crate::grpc;
use crate::shared::{
    dispatch_dtype, encode_binary, with_tensor_data, ByteStrings, DataType, Element, Flat,
    FromJson, InferInputTensor, JsonNumber, ModelInferRequest, Nested, Tensor, TensorData,
};

/// Which HTTP API the load uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST /v2/models/{m}[/versions/{v}]/infer` (KServe V2).
    V2,
    /// `POST /predict` (nested arrays keyed by input name).
    Predict,
    /// gRPC `ModelInfer` with raw tensor contents, on the server's gRPC port.
    Grpc,
}

/// One input as the bench needs it: name, datatype and shape (`-1` = dynamic).
#[derive(Debug, Clone)]
pub struct InputDesc {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<i64>,
}

/// How random inputs are drawn.
#[derive(Debug, Clone, Copy)]
pub struct RandomSpec {
    /// Integers are drawn from `[0, int_range)` (clamped to what the type holds).
    pub int_range: u64,
    pub seed: u64,
}

/// A ready-to-send request body.
#[derive(Debug, Clone)]
pub struct Payload {
    pub api: Api,
    /// Path (and query) to POST to, e.g. `/v2/models/m/infer`.
    pub path: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Length of the JSON part when binary tensors follow it (Triton's binary extension).
    pub json_len: Option<usize>,
    /// Rows (batch items) per request, for rows/s.
    pub rows: usize,
}

/// SplitMix64: tiny, seedable and good enough for benchmark inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The V2 infer path for `model` (and `version`, if given).
pub fn v2_path(model: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}/infer"),
        None => format!("/v2/models/{model}/infer"),
    }
}

/// The concrete shape of `input` for `rows` rows: the batch axis (if dynamic) is `rows`,
/// other dynamic axes are 1.
pub fn concrete_shape(input: &InputDesc, rows: usize) -> Vec<usize> {
    input
        .shape
        .iter()
        .enumerate()
        .map(|(axis, &d)| match (axis, d) {
            (0, d) if d < 0 => rows,
            (_, d) if d < 0 => 1,
            (_, d) => d as usize,
        })
        .collect()
}

/// A random tensor of `shape` for `dtype`: floats in `[-1, 1)`, integers in
/// `[0, int_range)`, booleans half true, strings the decimal text of such an integer.
pub fn random_tensor(
    dtype: DataType,
    shape: Vec<usize>,
    rng: &mut Rng,
    random: RandomSpec,
) -> Tensor {
    let count = crate::shared::element_count(&shape);
    let is_float = matches!(
        dtype,
        DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64
    );
    fn draw<T: FromJson>(count: usize, rng: &mut Rng, is_float: bool, int_range: u64) -> Vec<T> {
        (0..count)
            .map(|_| {
                let r = rng.next_u64();
                let n = match (T::DTYPE, is_float) {
                    (DataType::Bool, _) => JsonNumber::Bool(r & 1 == 1),
                    (_, true) => JsonNumber::Float((r >> 11) as f64 / (1u64 << 52) as f64 - 1.0),
                    (_, false) => JsonNumber::UInt(r % int_range.max(1)),
                };
                // Out of the type's range (e.g. 300 as UINT8): fall back to a value every
                // integer type holds.
                T::from_json(n)
                    .or_else(|| T::from_json(JsonNumber::UInt(r % 100)))
                    .unwrap_or_default()
            })
            .collect()
    }
    let data = dispatch_dtype!(dtype, T => <T as Element>::wrap(draw::<T>(count, rng, is_float, random.int_range)),
        bytes => TensorData::Bytes((0..count).map(|_| (rng.next_u64() % random.int_range.max(1)).to_string()).collect()));
    Tensor { shape, data }
}

/// `t` (one row) repeated to `rows` rows.
pub fn tile(t: &Tensor, rows: usize) -> Tensor {
    let mut shape = t.shape.clone();
    if let Some(first) = shape.first_mut() {
        *first *= rows;
    }
    let data = with_tensor_data!(&t.data, v => <_ as Element>::wrap(v.repeat(rows)), bytes s => {
        let mut out = ByteStrings::with_capacity(s.len() * rows, s.total_bytes() * rows);
        for _ in 0..rows {
            out.extend_from(s);
        }
        TensorData::Bytes(out)
    });
    Tensor { shape, data }
}

/// How a generated request carries a ranking context (the inputs every row shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextForm {
    /// The context's one row repeated on every row: an ordinary request.
    Repeated,
    /// The context sent once, first dimension 1, the other inputs with `rows` rows (the
    /// model must declare those inputs `broadcast`).
    Once,
}

/// What random request to build.
#[derive(Debug, Clone, Copy)]
pub struct RandomRequest<'a> {
    pub api: Api,
    /// V2 only: send tensors with the binary extension and ask for binary outputs.
    pub binary: bool,
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub rows: usize,
    pub random: RandomSpec,
    /// Inputs drawn once for the whole request (one row), and how they are sent.
    pub context: &'a [String],
    pub context_form: ContextForm,
}

/// Builds a random request of `rows` rows for `inputs`.
pub fn random(req: RandomRequest<'_>, inputs: &[InputDesc]) -> Result<Payload, String> {
    let RandomRequest {
        api,
        binary,
        model,
        version,
        rows,
        random,
        context,
        context_form,
    } = req;
    if let Some(unknown) = context
        .iter()
        .find(|c| !inputs.iter().any(|i| &i.name == *c))
    {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "--context names '{unknown}', which is not an input of the model (inputs: {})",
            names.join(", ")
        ));
    }
    let mut rng = Rng::new(random.seed);
    let tensors: Vec<(&InputDesc, Tensor)> = inputs
        .iter()
        .map(|i| {
            if !context.contains(&i.name) {
                let t = random_tensor(i.dtype, concrete_shape(i, rows), &mut rng, random);
                return (i, t);
            }
            let one = random_tensor(i.dtype, concrete_shape(i, 1), &mut rng, random);
            match context_form {
                ContextForm::Repeated => (i, tile(&one, rows)),
                ContextForm::Once => (i, one),
            }
        })
        .collect();
    let encode =
        |v: &Value| serde_json::to_vec(v).map_err(|e| format!("cannot encode the payload: {e}"));
    match (api, binary) {
        (Api::Predict | Api::Grpc, true) => Err(
            "--binary needs --api v2 (/predict speaks JSON only; gRPC always sends raw tensors)"
                .to_string(),
        ),
        (Api::Grpc, false) => Ok(Payload {
            api,
            path: grpc::MODEL_INFER.to_string(),
            body: grpc::frame(&model_infer_request(model, version, &tensors)),
            content_type: "application/grpc",
            json_len: None,
            rows,
        }),
        (Api::Predict, false) => {
            let mut named = serde_json::Map::new();
            for (desc, t) in &tensors {
                let nested = serde_json::to_value(Nested {
                    shape: &t.shape,
                    data: &t.data,
                })
                .map_err(|e| format!("cannot encode input '{}': {e}", desc.name))?;
                named.insert(desc.name.clone(), nested);
            }
            let mut body = json!({ "model": model, "inputs": named });
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            Ok(Payload {
                api,
                path: "/predict".into(),
                body: encode(&body)?,
                content_type: "application/json",
                json_len: None,
                rows,
            })
        }
        (Api::V2, false) => {
            let inputs: Vec<Value> = tensors
                .iter()
                .map(|(d, t)| json!({ "name": d.name, "shape": t.shape, "datatype": d.dtype.name(), "data": Flat(&t.data) }))
                .collect();
            let body = encode(&json!({ "inputs": inputs }))?;
            Ok(Payload {
                api,
                path: v2_path(model, version),
                body,
                content_type: "application/json",
                json_len: None,
                rows,
            })
        }
        (Api::V2, true) => {
            let mut bytes = Vec::new();
            let mut inputs = Vec::with_capacity(tensors.len());
            for (d, t) in &tensors {
                let before = bytes.len();
                encode_binary(t, &mut bytes);
                inputs.push(json!({
                    "name": d.name, "shape": t.shape, "datatype": d.dtype.name(),
                    "parameters": { "binary_data_size": bytes.len() - before },
                }));
            }
            let mut body =
                encode(&json!({ "inputs": inputs, "parameters": { "binary_data_output": true } }))?;
            let json_len = body.len();
            body.extend_from_slice(&bytes);
            Ok(Payload {
                api,
                path: v2_path(model, version),
                body,
                content_type: "application/octet-stream",
                json_len: Some(json_len),
                rows,
            })
        }
    }
}

/// The serialised `ModelInferRequest` for `tensors`, each input's bytes in
/// `raw_input_contents` (what tritonclient and perf_analyzer send).
fn model_infer_request(
    model: &str,
    version: Option<&str>,
    tensors: &[(&InputDesc, Tensor)],
) -> Vec<u8> {
    use prost::Message;
    let mut request = ModelInferRequest {
        model_name: model.to_string(),
        model_version: version.unwrap_or_default().to_string(),
        ..ModelInferRequest::default()
    };
    for (desc, t) in tensors {
        request.inputs.push(InferInputTensor {
            name: desc.name.clone(),
            datatype: desc.dtype.name().to_string(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            ..InferInputTensor::default()
        });
        let mut bytes = Vec::new();
        encode_binary(t, &mut bytes);
        request.raw_input_contents.push(bytes.into());
    }
    request.encode_to_vec()
}

/// Reads a request body from `file`: a V2 infer body (`{"inputs": [...]}`) for `--api v2`,
/// or a `/predict` body for `--api predict`. Rows are read from the first input.
pub fn from_file(
    file: &std::path::Path,
    api: Api,
    model: &str,
    version: Option<&str>,
) -> Result<Payload, String> {
    let (path, kind) = match api {
        Api::V2 => (v2_path(model, version), "V2 infer"),
        Api::Predict => ("/predict".to_string(), "/predict"),
        Api::Grpc => {
            return Err("--payload is a JSON body: use it with --api v2 or --api predict".into())
        }
    };
    let body =
        std::fs::read(file).map_err(|e| format!("cannot read payload {}: {e}", file.display()))?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("payload {} is not JSON: {e}", file.display()))?;
    let rows = match api {
        Api::V2 | Api::Grpc => value["inputs"][0]["shape"][0].as_u64(),
        Api::Predict => match &value["inputs"] {
            Value::Array(rows) => Some(rows.len() as u64),
            Value::Object(named) => named
                .values()
                .next()
                .and_then(Value::as_array)
                .map(|a| a.len() as u64),
            _ => None,
        },
    };
    let rows = rows.ok_or_else(|| {
        format!(
            "payload {} does not look like a {} body (cannot read the row count of its first input)",
            file.display(),
            kind
        )
    })?;
    Ok(Payload {
        api,
        path,
        body,
        content_type: "application/json",
        json_len: None,
        rows: rows as usize,
    })
}

/// Reads the inputs from a V2 model metadata object (`GET /v2/models/{m}`).
pub fn inputs_from_metadata(meta: &Value) -> Result<Vec<InputDesc>, String> {
    let inputs = meta["inputs"]
        .as_array()
        .ok_or("model metadata has no 'inputs' array")?;
    inputs
        .iter()
        .map(|i| {
            let name = i["name"]
                .as_str()
                .ok_or("a metadata input has no name")?
                .to_string();
            let dt = i["datatype"].as_str().unwrap_or_default();
            let dtype = DataType::from_name(dt)
                .ok_or_else(|| format!("input '{name}': unsupported datatype '{dt}'"))?;
            let shape = i["shape"]
                .as_array()
                .ok_or_else(|| format!("input '{name}' has no shape"))?
                .iter()
                .map(|d| {
                    d.as_i64()
                        .ok_or_else(|| format!("input '{name}': shape entries must be integers"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(InputDesc { name, dtype, shape })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<InputDesc> {
        vec![
            InputDesc {
                name: "ids".into(),
                dtype: DataType::I64,
                shape: vec![-1, 8],
            },
            InputDesc {
                name: "x".into(),
                dtype: DataType::F32,
                shape: vec![-1, 4],
            },
        ]
    }
    const R: RandomSpec = RandomSpec {
        int_range: 1000,
        seed: 7,
    };

    fn req(api: Api, binary: bool, version: Option<&str>, rows: usize) -> RandomRequest<'_> {
        RandomRequest {
            api,
            binary,
            model: "m",
            version,
            rows,
            random: R,
            context: &[],
            context_form: ContextForm::Repeated,
        }
    }

    fn ranking_inputs() -> Vec<InputDesc> {
        let mut all = inputs();
        all.push(InputDesc {
            name: "user".into(),
            dtype: DataType::Bytes,
            shape: vec![-1],
        });
        all
    }

    fn with_context(api: Api, binary: bool, form: ContextForm, context: &[String]) -> Payload {
        let r = RandomRequest {
            context,
            context_form: form,
            ..req(api, binary, None, 5)
        };
        random(r, &ranking_inputs()).unwrap()
    }

    #[test]
    fn a_repeated_context_has_one_row_of_values_on_every_row() {
        let context = ["ids".to_string(), "user".to_string()];
        let p = with_context(Api::V2, false, ContextForm::Repeated, &context);
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["inputs"][0]["shape"], json!([5, 8]));
        let ids = v["inputs"][0]["data"].as_array().unwrap();
        assert!(ids.chunks(8).all(|row| row == &ids[..8]), "{ids:?}");
        let users = v["inputs"][2]["data"].as_array().unwrap();
        assert_eq!(users.len(), 5);
        assert!(users.iter().all(|u| u == &users[0]), "{users:?}");
        let x = v["inputs"][1]["data"].as_array().unwrap();
        assert_ne!(x[..4], x[4..8], "inputs outside the context differ per row");
        assert_eq!(p.rows, 5);
    }

    #[test]
    fn a_context_sent_once_has_first_dimension_one_and_the_same_values() {
        let context = ["ids".to_string(), "user".to_string()];
        let once = with_context(Api::V2, false, ContextForm::Once, &context);
        let repeated = with_context(Api::V2, false, ContextForm::Repeated, &context);
        let (o, r): (Value, Value) = (
            serde_json::from_slice(&once.body).unwrap(),
            serde_json::from_slice(&repeated.body).unwrap(),
        );
        assert_eq!(o["inputs"][0]["shape"], json!([1, 8]));
        assert_eq!(o["inputs"][2]["shape"], json!([1]));
        assert_eq!(o["inputs"][1]["shape"], json!([5, 4]));
        assert_eq!(
            o["inputs"][0]["data"].as_array().unwrap()[..],
            r["inputs"][0]["data"].as_array().unwrap()[..8]
        );
        assert_eq!(
            o["inputs"][1], r["inputs"][1],
            "the candidates are the same"
        );
        assert_eq!(once.rows, 5, "rows count the candidates");
        assert!(once.body.len() < repeated.body.len());
        // binary and gRPC bodies shrink the same way
        let b_once = with_context(Api::V2, true, ContextForm::Once, &context);
        let b_rep = with_context(Api::V2, true, ContextForm::Repeated, &context);
        let user_len = r["inputs"][2]["data"][0].as_str().unwrap().len();
        assert_eq!(
            (b_rep.body.len() - b_rep.json_len.unwrap())
                - (b_once.body.len() - b_once.json_len.unwrap()),
            4 * 8 * 8 + 4 * (4 + user_len),
            "four fewer rows of ids (8 INT64) and of user (a length-prefixed string)"
        );
        let g_once = with_context(Api::Grpc, false, ContextForm::Once, &context);
        let g_rep = with_context(Api::Grpc, false, ContextForm::Repeated, &context);
        assert!(g_once.body.len() < g_rep.body.len());
    }

    #[test]
    fn an_unknown_context_input_is_refused_naming_it() {
        let r = RandomRequest {
            context: &["nope".to_string()],
            ..req(Api::V2, false, None, 2)
        };
        let e = random(r, &inputs()).unwrap_err();
        assert!(e.contains("'nope'") && e.contains("ids, x"), "{e}");
    }

    #[test]
    fn v2_json_has_the_shapes_and_rows() {
        let p = random(req(Api::V2, false, None, 3), &inputs()).unwrap();
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["inputs"][0]["shape"], json!([3, 8]));
        assert_eq!(v["inputs"][1]["data"].as_array().unwrap().len(), 12);
        assert_eq!((p.rows, p.path.as_str()), (3, "/v2/models/m/infer"));
    }

    #[test]
    fn binary_body_is_json_then_tensor_bytes() {
        let p = random(req(Api::V2, true, Some("2"), 2), &inputs()).unwrap();
        let len = p.json_len.unwrap();
        assert_eq!(p.body.len() - len, 2 * 8 * 8 + 2 * 4 * 4);
        assert_eq!(p.path, "/v2/models/m/versions/2/infer");
    }

    #[test]
    fn predict_body_nests_rows() {
        let p = random(req(Api::Predict, false, None, 2), &inputs()).unwrap();
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["inputs"]["x"].as_array().unwrap().len(), 2);
        assert!(random(req(Api::Predict, true, None, 2), &inputs()).is_err());
    }

    #[test]
    fn small_integer_types_stay_in_range() {
        let mut rng = Rng::new(1);
        let t = random_tensor(DataType::I8, vec![1000], &mut rng, R);
        let crate::shared::TensorData::I8(v) = t.data else {
            panic!()
        };
        assert!(v.iter().all(|&x| x >= 0));
    }
}
