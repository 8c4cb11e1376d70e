use std::path::Path;

use std::collections::BTreeMap;

use super::*;
use crate::features::Modulus;

/// The `[features]` and `from` parts of a `config.toml` (the config layer reads the rest).
#[derive(serde::Deserialize)]
struct Declared {
    #[serde(default)]
    features: BTreeMap<String, FieldConfig>,
    #[serde(default)]
    inputs: BTreeMap<String, From>,
}

#[derive(serde::Deserialize)]
struct From {
    from: Vec<String>,
}

/// Builds the set `config` declares against `graph` (name, datatype, shape).
fn build(config: &str, graph: &[(&str, DataType, &[i64])]) -> Result<Option<FeatureSet>, String> {
    let config: Declared = toml::from_str(config).map_err(|e| e.to_string())?;
    let graph: Vec<GraphInput> = graph
        .iter()
        .map(|&(name, dtype, shape)| GraphInput { name, dtype, shape })
        .collect();
    FeatureSet::build(
        &config.features,
        config
            .inputs
            .iter()
            .map(|(name, c)| (name.as_str(), c.from.as_slice())),
        &graph,
        Path::new("/nonexistent"),
    )
    .map_err(|e| e.to_string())
}

/// Named tensors as a request sends them.
type Fields = Vec<(String, Tensor)>;
/// Graph inputs: (name, datatype, shape).
type Graph = Vec<(&'static str, DataType, &'static [i64])>;

const CONFIG: &str = r#"
[features]
user = { hash_buckets = 100 }
age = { boundaries = [18, 30], default = 25 }
income = { mean = 10.0, std = 2.0 }
[inputs.ids]
from = ["user", "age"]
[inputs.dense]
from = ["income"]
"#;

fn graph() -> Vec<(&'static str, DataType, &'static [i64])> {
    vec![
        ("ids", DataType::I64, &[-1, 2]),
        ("dense", DataType::F32, &[-1, 1]),
        ("extra", DataType::F32, &[-1, 3]),
    ]
}

fn set() -> FeatureSet {
    build(CONFIG, &graph()).unwrap().unwrap()
}

fn t(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn hashed(buckets: u64, value: FieldValue<'_>) -> i64 {
    let t = Transform::Hash {
        buckets: Modulus::new(buckets),
    };
    match t.apply("f", value).unwrap() {
        TransformOutput::Id(id) => id,
        other => panic!("{other:?}"),
    }
}

fn get<'a>(out: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &out.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn no_features_means_no_set() {
    assert_eq!(build("", &graph()).unwrap(), None);
}

#[test]
fn fields_build_the_inputs_they_feed_column_by_column() {
    let out = set()
        .apply(vec![
            ("user".into(), t(&[2], TensorData::I64(vec![12345, 7]))),
            ("age".into(), t(&[2, 1], TensorData::F64(vec![17.0, 30.0]))),
            ("income".into(), t(&[2], TensorData::F32(vec![12.0, 6.0]))),
            ("extra".into(), t(&[2, 3], TensorData::F32(vec![0.0; 6]))),
        ])
        .unwrap();
    // fingerprint64("12345") = 16550883754376084728 (pyfarmhash), so bucket 28 of 100.
    let seven = hashed(100, FieldValue::Text("7"));
    assert_eq!(
        get(&out, "ids"),
        &t(&[2, 2], TensorData::I64(vec![28, 0, seven, 2]))
    );
    assert_eq!(
        get(&out, "dense"),
        &t(&[2, 1], TensorData::F32(vec![1.0, -2.0]))
    );
    assert_eq!(get(&out, "extra").shape, vec![2, 3]);
}

#[test]
fn absent_fields_take_their_default_and_missing_ones_are_named() {
    let out = set()
        .apply(vec![
            ("user".into(), t(&[1], TensorData::I64(vec![1]))),
            ("income".into(), t(&[1], TensorData::F64(vec![10.0]))),
        ])
        .unwrap();
    // age defaults to 25: one boundary (18) at or below.
    assert_eq!(
        get(&out, "ids").data,
        TensorData::I64(vec![hashed(100, FieldValue::Int(1)), 1])
    );
    let err = set()
        .apply(vec![("user".into(), t(&[1], TensorData::I64(vec![1])))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field 'income'"), "{err}");
    assert!(err.contains("mean = 10"), "{err}");
    let err = set().apply(vec![]).unwrap_err().to_string();
    assert!(err.contains("missing field"), "{err}");
}

#[test]
fn request_mistakes_name_the_field_and_what_came() {
    let cases: Vec<(Fields, &[&str])> = vec![
        (
            vec![
                ("user".into(), t(&[2], TensorData::I64(vec![1, 2]))),
                ("income".into(), t(&[3], TensorData::F64(vec![1.0; 3]))),
            ],
            &["field 'user'", "has 2 values", "'income' has 3"],
        ),
        (
            vec![
                ("user".into(), t(&[1], TensorData::I64(vec![1]))),
                ("income".into(), t(&[1], TensorData::F64(vec![f64::NAN]))),
            ],
            &["field 'income'", "NaN", "not finite"],
        ),
        (
            vec![
                ("user".into(), t(&[1], TensorData::F32(vec![1.5]))),
                ("income".into(), t(&[1], TensorData::F64(vec![1.0]))),
            ],
            &["field 'user'", "a string or an integer", "1.5"],
        ),
        (
            vec![
                ("user".into(), t(&[1, 2], TensorData::I64(vec![1, 2]))),
                ("income".into(), t(&[1], TensorData::F64(vec![1.0]))),
            ],
            &["field 'user'", "shape [N]", "[1, 2]"],
        ),
        (
            vec![
                ("user".into(), t(&[1], TensorData::I64(vec![1]))),
                ("user".into(), t(&[1], TensorData::I64(vec![1]))),
            ],
            &["field 'user'", "more than once"],
        ),
        (
            vec![
                ("user".into(), t(&[1], TensorData::I64(vec![1]))),
                ("ids".into(), t(&[1, 2], TensorData::I64(vec![1, 2]))),
                ("income".into(), t(&[1], TensorData::F64(vec![1.0]))),
            ],
            &["field 'user'", "'ids'", "either"],
        ),
        (
            vec![
                ("user".into(), t(&[1], TensorData::Bool(vec![true]))),
                ("income".into(), t(&[1], TensorData::F64(vec![1.0]))),
            ],
            &["field 'user'", "BOOL"],
        ),
    ];
    for (given, needles) in cases {
        let err = set().apply(given).unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }
}

#[test]
fn an_input_sent_as_a_tensor_passes_through() {
    let ids = t(&[1, 2], TensorData::I64(vec![5, 6]));
    let out = set()
        .apply(vec![
            ("ids".into(), ids.clone()),
            ("income".into(), t(&[1], TensorData::F64(vec![12.0]))),
        ])
        .unwrap();
    assert_eq!(get(&out, "ids"), &ids);
    assert_eq!(get(&out, "dense").data, TensorData::F32(vec![1.0]));
}

#[test]
fn values_are_cast_to_the_input_datatype_with_a_range_check() {
    let config = "[features]\nx = { mean = 0.0, std = 1e-300 }\n[inputs.dense]\nfrom = [\"x\"]";
    let s = build(config, &[("dense", DataType::F32, &[-1, 1])])
        .unwrap()
        .unwrap();
    let err = s
        .apply(vec![("x".into(), t(&[1], TensorData::F64(vec![1.0])))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("field 'x'") && err.contains("FP32"), "{err}");
    let s = build(
        "[features]\nx = { hash_buckets = 10 }\n[inputs.ids]\nfrom = [\"x\"]",
        &[("ids", DataType::I32, &[-1, 1])],
    )
    .unwrap()
    .unwrap();
    let out = s
        .apply(vec![("x".into(), t(&[1], TensorData::I64(vec![12345])))])
        .unwrap();
    assert_eq!(get(&out, "ids").data, TensorData::I32(vec![8]));
}

#[test]
fn graph_mistakes_name_the_input_and_the_problem() {
    let cases: Vec<(Graph, &[&str])> = vec![
        (
            vec![
                ("ids", DataType::I64, &[-1, 3]),
                ("dense", DataType::F32, &[-1, 1]),
            ],
            &["inputs.ids.from lists 2 fields", "[-1, 3]"],
        ),
        (
            vec![
                ("ids", DataType::I64, &[-1, 2, 1]),
                ("dense", DataType::F32, &[-1, 1]),
            ],
            &["inputs.ids.from", "[-1, 2, 1]"],
        ),
        (
            vec![
                ("ids", DataType::Bool, &[-1, 2]),
                ("dense", DataType::F32, &[-1, 1]),
            ],
            &["graph input 'ids'", "BOOL"],
        ),
        (
            vec![
                ("ids", DataType::I64, &[-1, 2]),
                ("dense", DataType::I64, &[-1, 1]),
            ],
            &["feature 'income' gives numbers", "'dense'", "INT64"],
        ),
        (
            vec![("ids", DataType::I64, &[-1, 2])],
            &["graph has no input 'dense'"],
        ),
    ];
    for (graph, needles) in cases {
        let err = build(CONFIG, &graph).unwrap_err();
        for needle in needles {
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }
    let err = build(
        "[features]\nc = { vocabulary = \"missing.txt\" }\n[inputs.ids]\nfrom = [\"c\"]",
        &[("ids", DataType::I64, &[-1, 1])],
    )
    .unwrap_err();
    assert!(
        err.contains("feature 'c'") && err.contains("cannot read the vocabulary"),
        "{err}"
    );
    let err = build(
        "[features]\nc = { hash_buckets = 1, log1p = true }\n[inputs.ids]\nfrom = [\"c\"]",
        &[("ids", DataType::I64, &[-1, 1])],
    )
    .unwrap_err();
    assert!(
        err.contains("feature 'c'") && err.contains("one transform"),
        "{err}"
    );
}

/// One field's column as a request may send it: text, integers or floats.
#[derive(Debug, Clone)]
enum Column {
    Text(Vec<String>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

impl Column {
    fn tensor(&self) -> Tensor {
        match self {
            Column::Text(v) => t(&[v.len()], TensorData::Bytes(v.iter().collect())),
            Column::Int(v) => t(&[v.len()], TensorData::I64(v.clone())),
            Column::Float(v) => t(&[v.len()], TensorData::F64(v.clone())),
        }
    }

    fn value(&self, row: usize) -> FieldValue<'_> {
        match self {
            Column::Text(v) => FieldValue::Text(&v[row]),
            Column::Int(v) => FieldValue::Int(v[row]),
            Column::Float(v) => FieldValue::Float(v[row]),
        }
    }
}

fn column(rows: usize) -> impl proptest::strategy::Strategy<Value = Column> {
    use proptest::prelude::*;
    let text = prop_oneof![Just("de".to_string()), Just("fr".to_string()), "\\PC{0,12}"];
    let float = prop_oneof![
        -100.0f64..100.0,
        Just(-1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(1e300),
    ];
    prop_oneof![
        proptest::collection::vec(text, rows).prop_map(Column::Text),
        proptest::collection::vec(-50i64..50, rows).prop_map(Column::Int),
        proptest::collection::vec(float, rows).prop_map(Column::Float),
    ]
}

/// The set with every kind of transform, its vocabulary written to a directory of its own.
fn every_transform() -> FeatureSet {
    let dir = std::env::temp_dir().join(format!("mlpserve-set-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("v.txt"), "de\nfr\n").unwrap();
    let config: Declared = toml::from_str(
        r#"
        [features]
        user = { hash_buckets = 97 }
        country = { vocabulary = "v.txt", oov_buckets = 3 }
        device = { vocabulary = "v.txt", oov_buckets = 0 }
        age = { boundaries = [18, 30, 45] }
        income = { mean = 10.0, std = 2.0 }
        clicks = { log1p = true }
        raw = {}
        [inputs.ids]
        from = ["user", "country", "device", "age"]
        [inputs.dense]
        from = ["income", "clicks", "raw"]
        "#,
    )
    .unwrap();
    let graph = [
        GraphInput {
            name: "ids",
            dtype: DataType::I64,
            shape: &[-1, 4],
        },
        GraphInput {
            name: "dense",
            dtype: DataType::F32,
            shape: &[-1, 3],
        },
    ];
    let from = config
        .inputs
        .iter()
        .map(|(name, c)| (name.as_str(), c.from.as_slice()));
    let set = FeatureSet::build(&config.features, from, &graph, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    set.unwrap().unwrap()
}

use proptest::strategy::Strategy as _;

proptest::proptest! {
    /// A request's columns, transformed a column at a time, give what the one-value
    /// transform gives for each value (cast to the input's datatype), or the error the
    /// first refused value gets, in the order inputs, columns and rows are filled.
    #[test]
    fn columns_transform_like_their_values_one_by_one(
        columns in (1usize..12).prop_flat_map(|rows| proptest::collection::vec(column(rows), 7))
    ) {
        let set = every_transform();
        let given: Fields = set
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| (f.name.clone(), c.tensor()))
            .collect();
        let rows = given[0].1.rows();
        let mut want: Result<Vec<(String, TensorData)>, String> = Ok(Vec::new());
        'inputs: for input in set.built() {
            let width = input.columns.len();
            let mut ids = vec![0i64; rows * width];
            let mut numbers = vec![0f32; rows * width];
            for (c, &f) in input.columns.iter().enumerate() {
                let field = &set.fields()[f];
                for row in 0..rows {
                    let value = columns[f].value(row);
                    match field.transform.apply(&field.name, value) {
                        Err(e) => {
                            want = Err(e.to_string());
                            break 'inputs;
                        }
                        Ok(TransformOutput::Id(id)) if input.dtype == DataType::I64 => {
                            ids[row * width + c] = id
                        }
                        Ok(TransformOutput::Number(x)) if (x as f32).is_finite() => {
                            numbers[row * width + c] = x as f32
                        }
                        Ok(v) => {
                            want = Err(format!("field '{}' row {row} gives {} cannot hold", field.name, show(v)));
                            break 'inputs;
                        }
                    }
                }
            }
            let data = match input.dtype {
                DataType::I64 => TensorData::I64(ids),
                _ => TensorData::F32(numbers),
            };
            if let Ok(built) = &mut want {
                built.push((input.name.clone(), data));
            }
        }
        match (set.apply(given), want) {
            (Ok(out), Ok(want)) => {
                for (name, data) in want {
                    let got = get(&out, &name);
                    proptest::prop_assert_eq!(got.shape.clone(), vec![rows, 4 - usize::from(name == "dense")]);
                    // NaN never comes out: it is refused, so plain equality holds.
                    proptest::prop_assert_eq!(&got.data, &data, "input {}", name);
                }
            }
            (Err(got), Err(want)) if want.contains("cannot hold") => {
                let got = got.to_string();
                let (field_row, value) = want.split_once(" gives ").unwrap();
                let value = value.trim_end_matches(" cannot hold");
                proptest::prop_assert!(got.starts_with(field_row) || got.contains(field_row), "{} vs {}", got, want);
                proptest::prop_assert!(got.contains(&format!("gives {value}")) && got.contains("cannot hold"), "{} vs {}", got, want);
            }
            (got, want) => {
                proptest::prop_assert_eq!(got.map(|_| ()).map_err(|e| e.to_string()), want.map(|_| ()));
            }
        }
    }
}
