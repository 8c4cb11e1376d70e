//! A load request's config override as Triton's clients write it: a `ModelConfig` in
//! protobuf's JSON form (64-bit integers as strings, enum names such as `KIND_GPU`, field
//! names in snake_case or lowerCamelCase) translated into the keys of `config.toml`. Our
//! own keys pass through, with numbers given as strings accepted too. Keys that have no
//! meaning here are collected, so the load can say which ones it ignored.

use serde_json::{Map, Number, Value};

use super::ConfigError;

/// Triton's model-config keys that describe a model rather than configure serving: they
/// are read from the graph here, so an override may carry them and they are ignored.
const DESCRIPTIVE: &[&str] = &[
    "name",
    "platform",
    "backend",
    "runtime",
    "default_model_filename",
    "input",
    "output",
];

/// Triton keys we understand or knowingly ignore, in lowerCamelCase → snake_case, so both
/// spellings of protobuf's JSON form work.
const CAMEL: &[(&str, &str)] = &[
    ("maxBatchSize", "max_batch_size"),
    ("dynamicBatching", "dynamic_batching"),
    ("preferredBatchSize", "preferred_batch_size"),
    ("maxQueueDelayMicroseconds", "max_queue_delay_microseconds"),
    ("defaultQueuePolicy", "default_queue_policy"),
    ("maxQueueSize", "max_queue_size"),
    ("defaultTimeoutMicroseconds", "default_timeout_microseconds"),
    ("allowTimeoutOverride", "allow_timeout_override"),
    ("timeoutAction", "timeout_action"),
    ("instanceGroup", "instance_group"),
    ("versionPolicy", "version_policy"),
    ("numVersions", "num_versions"),
    ("defaultModelFilename", "default_model_filename"),
    ("preserveOrdering", "preserve_ordering"),
    ("priorityLevels", "priority_levels"),
    ("defaultPriorityLevel", "default_priority_level"),
    ("priorityQueuePolicy", "priority_queue_policy"),
];

/// Translates `value` (the override's JSON object) into `config.toml`'s keys. Returns the
/// translated object and the keys that were ignored (dotted paths, e.g.
/// `dynamic_batching.preserve_ordering`); errors name the key and what it must be.
pub fn translate(value: Value) -> Result<(Value, Vec<String>), ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::Syntax(format!(
            "expected a JSON object, got {value}"
        )));
    };
    let mut out = Map::new();
    let mut ignored = Vec::new();
    for (key, v) in snake_keys(map) {
        match key.as_str() {
            k if DESCRIPTIVE.contains(&k) => ignored.push(key),
            "dynamic_batching" => dynamic_batching(v, &mut out, &mut ignored)?,
            "instance_group" => instance_group(v, &mut out)?,
            "parameters" => parameters(v, &mut out, &mut ignored)?,
            "version_policy" => {
                out.insert(key, version_policy(v)?);
            }
            // Our own key of the same name, or a Triton key with the same meaning
            // (`max_batch_size`).
            _ => {
                out.insert(key, numbers_from_strings(v));
            }
        }
    }
    Ok((Value::Object(out), ignored))
}

/// Triton's string `parameters` (`{"rank_by": {"string_value": "score"}}`): the ranking
/// facts the served configuration lists become their keys again (`rank_by`, and
/// `broadcast_inputs` as `[inputs.NAME] broadcast = true`); any other is ignored.
fn parameters(
    v: Value,
    out: &mut Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Value::Object(map) = v else {
        return Err(ConfigError::Syntax(format!(
            "parameters: expected an object, got {v}"
        )));
    };
    for (key, value) in map {
        let text = value
            .get("string_value")
            .or_else(|| value.get("stringValue"))
            .and_then(Value::as_str);
        match (key.as_str(), text) {
            ("rank_by", Some(name)) => {
                out.insert("rank_by".into(), Value::String(name.into()));
            }
            ("broadcast_inputs", Some(names)) => {
                let inputs = out
                    .entry("inputs")
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(inputs) = inputs else {
                    return Err(ConfigError::Syntax("inputs: expected an object".into()));
                };
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    let entry = inputs
                        .entry(name)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(entry) = entry {
                        entry.insert("broadcast".into(), Value::Bool(true));
                    }
                }
            }
            _ => ignored.push(format!("parameters.{key}")),
        }
    }
    Ok(())
}

/// The object with Triton's lowerCamelCase key names in snake_case.
fn snake_keys(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(k, v)| {
            let k = CAMEL
                .iter()
                .find(|(camel, _)| *camel == k)
                .map_or(k, |(_, snake)| snake.to_string());
            (k, v)
        })
        .collect()
}

/// Protobuf's JSON form writes 64-bit integers as strings (and accepts any number as
/// one): every string that reads as a finite number becomes that number. No key of
/// `config.toml` takes a numeric-looking string (`"auto"`, `"cpu"`, `"all"` are words).
fn numbers_from_strings(v: Value) -> Value {
    match v {
        Value::String(s) => number(&s).unwrap_or(Value::String(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_from_strings).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, numbers_from_strings(v)))
                .collect(),
        ),
        other => other,
    }
}

fn number(s: &str) -> Option<Value> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    if let Ok(u) = t.parse::<u64>() {
        return Some(Value::Number(u.into()));
    }
    let looks_numeric = t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !looks_numeric {
        return None;
    }
    t.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

/// An unsigned integer (a number or a numeric string), or an error naming `key`.
fn uint(v: &Value, key: &str) -> Result<u64, ConfigError> {
    match numbers_from_strings(v.clone()) {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
        other => Err(ConfigError::Syntax(format!(
            "{key} must be a non-negative integer (a number or a string of digits), got {other}"
        ))),
    }
}

fn object(v: Value, key: &str) -> Result<Map<String, Value>, ConfigError> {
    match v {
        Value::Object(m) => Ok(snake_keys(m)),
        other => Err(ConfigError::Syntax(format!(
            "{key} must be an object, got {other}"
        ))),
    }
}

/// `dynamic_batching { preferred_batch_size, max_queue_delay_microseconds,
/// default_queue_policy { max_queue_size, default_timeout_microseconds, timeout_action,
/// allow_timeout_override } }` → `preferred_batch_sizes`, `max_queue_delay_us`,
/// `max_queue_size`, `default_timeout_ms`.
fn dynamic_batching(
    v: Value,
    out: &mut Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (key, v) in object(v, "dynamic_batching")? {
        let path = format!("dynamic_batching.{key}");
        match key.as_str() {
            "preferred_batch_size" => {
                let sizes = match &v {
                    Value::Array(a) => a
                        .iter()
                        .map(|s| uint(s, &path).map(Value::from))
                        .collect::<Result<Vec<_>, _>>()?,
                    other => {
                        return Err(ConfigError::Syntax(format!(
                            "{path} must be a list, got {other}"
                        )))
                    }
                };
                out.insert("preferred_batch_sizes".into(), Value::Array(sizes));
            }
            "max_queue_delay_microseconds" => {
                out.insert("max_queue_delay_us".into(), uint(&v, &path)?.into());
            }
            "default_queue_policy" => queue_policy(v, out, ignored)?,
            _ => ignored.push(path),
        }
    }
    Ok(())
}

fn queue_policy(
    v: Value,
    out: &mut Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (key, v) in object(v, "dynamic_batching.default_queue_policy")? {
        let path = format!("dynamic_batching.default_queue_policy.{key}");
        match key.as_str() {
            "max_queue_size" => {
                out.insert("max_queue_size".into(), uint(&v, &path)?.into());
            }
            "default_timeout_microseconds" => {
                // Our deadline is in milliseconds: a partial millisecond rounds up, so a
                // deadline is never shorter than asked.
                let us = uint(&v, &path)?;
                out.insert("default_timeout_ms".into(), us.div_ceil(1000).into());
            }
            "timeout_action" => match v.as_str() {
                Some("REJECT") => {}
                _ => {
                    return Err(ConfigError::Syntax(format!(
                        "{path}: only REJECT is supported (a request past its deadline is refused), got {v}"
                    )))
                }
            },
            // Our clients may always lower the deadline, as this flag allows in Triton.
            "allow_timeout_override" => {}
            _ => ignored.push(path),
        }
    }
    Ok(())
}

/// `instance_group [{ count, kind: KIND_CPU | KIND_GPU | KIND_AUTO, gpus }]` →
/// `instances` (the counts added up), and for GPU groups `execution_provider = "cuda"`
/// with `device_ids`. CPU and GPU groups in one model are refused: instances here share
/// one execution provider.
fn instance_group(v: Value, out: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let Value::Array(groups) = v else {
        return Err(ConfigError::Syntax(format!(
            "instance_group must be a list, got {v}"
        )));
    };
    let mut count = 0u64;
    let mut kinds = Vec::new();
    let mut gpus = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let key = format!("instance_group[{i}]");
        let g = object(g, &key)?;
        count += match g.get("count") {
            Some(c) => uint(c, &format!("{key}.count"))?,
            None => 1,
        };
        let kind = match g.get("kind").map(Value::as_str) {
            None | Some(Some("KIND_AUTO")) | Some(Some("KIND_CPU")) => "cpu",
            Some(Some("KIND_GPU")) => "cuda",
            Some(other) => {
                return Err(ConfigError::Syntax(format!(
                    "{key}.kind must be KIND_CPU, KIND_GPU or KIND_AUTO, got {}",
                    other.map_or_else(|| g["kind"].to_string(), str::to_string)
                )))
            }
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        if let Some(list) = g.get("gpus") {
            let Value::Array(list) = list else {
                return Err(ConfigError::Syntax(format!(
                    "{key}.gpus must be a list, got {list}"
                )));
            };
            for id in list {
                gpus.push(Value::from(uint(id, &format!("{key}.gpus"))?));
            }
        }
    }
    if kinds.len() > 1 {
        return Err(ConfigError::Syntax(
            "instance_group mixes CPU and GPU groups; the instances of one model share one execution provider"
                .to_string(),
        ));
    }
    if count > 0 {
        out.insert("instances".into(), count.into());
    }
    if kinds == ["cuda"] {
        out.insert("execution_provider".into(), "cuda".into());
        if !gpus.is_empty() {
            out.insert("device_ids".into(), Value::Array(gpus));
        }
    }
    Ok(())
}

/// `{latest: {num_versions}}`, `{all: {}}`, `{specific: {versions}}` (Triton) or our own
/// forms (`{latest = n}`, `"all"`, `{specific = [..]}`).
fn version_policy(v: Value) -> Result<Value, ConfigError> {
    let v = numbers_from_strings(v);
    let Value::Object(m) = &v else {
        return Ok(v);
    };
    let m = snake_keys(m.clone());
    let shape = |what: &str| format!("version_policy.{what}");
    Ok(match (m.get("latest"), m.get("all"), m.get("specific")) {
        (Some(Value::Object(l)), None, None) => {
            let n = l
                .get("num_versions")
                .map_or(Ok(1), |n| uint(n, &shape("latest.num_versions")))?;
            serde_json::json!({ "latest": n })
        }
        (None, Some(Value::Object(_)), None) => Value::String("all".into()),
        (None, None, Some(Value::Object(s))) => {
            let versions = s
                .get("versions")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            serde_json::json!({ "specific": versions })
        }
        _ => Value::Object(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: Value) -> (Value, Vec<String>) {
        translate(v).expect("translates")
    }

    #[test]
    fn protobuf_json_forms_become_config_keys() {
        let (v, ignored) = t(json!({
            "name": "m", "platform": "onnxruntime_onnx", "maxBatchSize": "16",
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["4"]}],
            "dynamic_batching": {
                "preferred_batch_size": ["4", 8],
                "maxQueueDelayMicroseconds": "100",
                "preserve_ordering": true,
                "default_queue_policy": {
                    "max_queue_size": "7", "default_timeout_microseconds": "1500",
                    "timeout_action": "REJECT", "allow_timeout_override": true
                }
            },
            "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
            "version_policy": {"latest": {"num_versions": 2}},
            "max_batch_latency_ms": "2.5"
        }));
        assert_eq!(
            v,
            json!({
                "max_batch_size": 16, "preferred_batch_sizes": [4, 8], "max_queue_delay_us": 100,
                "max_queue_size": 7, "default_timeout_ms": 2, "instances": 2,
                "version_policy": {"latest": 2}, "max_batch_latency_ms": 2.5
            })
        );
        assert_eq!(
            ignored,
            [
                "dynamic_batching.preserve_ordering",
                "input",
                "name",
                "platform"
            ]
        );
    }

    #[test]
    fn gpu_groups_and_version_policies() {
        let (v, _) = t(json!({
            "instance_group": [{"count": "1", "kind": "KIND_GPU", "gpus": [0, "1"]}],
            "version_policy": {"specific": {"versions": ["1", "3"]}}
        }));
        assert_eq!(
            v,
            json!({"instances": 1, "execution_provider": "cuda", "device_ids": [0, 1],
                   "version_policy": {"specific": [1, 3]}})
        );
        let (v, _) = t(json!({"version_policy": {"all": {}}}));
        assert_eq!(v, json!({"version_policy": "all"}));
        let (v, _) = t(json!({"max_batch_size": "auto", "execution_provider": "cpu"}));
        assert_eq!(
            v,
            json!({"max_batch_size": "auto", "execution_provider": "cpu"})
        );
    }

    #[test]
    fn wrong_shapes_and_enums_name_the_key() {
        for (bad, needle) in [
            (
                json!({"instance_group": [{"kind": "KIND_TPU"}]}),
                "instance_group[0].kind",
            ),
            (
                json!({"instance_group": [{"kind": "KIND_CPU"}, {"kind": "KIND_GPU"}]}),
                "mixes CPU and GPU",
            ),
            (
                json!({"dynamic_batching": {"max_queue_delay_microseconds": "-1"}}),
                "dynamic_batching.max_queue_delay_microseconds",
            ),
            (
                json!({"dynamic_batching": {"default_queue_policy": {"timeout_action": "DELAY"}}}),
                "REJECT",
            ),
            (json!([1]), "object"),
        ] {
            let err = translate(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
