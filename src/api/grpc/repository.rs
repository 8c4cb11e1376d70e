//! Decoding the gRPC repository RPCs' parameters into a [`LoadRequest`]: `config` (string
//! with the JSON config), `file:<version>/<file>` (bytes), `force` (bool).

use std::collections::HashMap;

use super::proto::model_repository_parameter::ParameterChoice;
use super::proto::ModelRepositoryParameter;
use crate::config::ModelConfig;
use crate::error::Error;
use crate::service::{checked_path, LoadRequest};

/// The load request the parameters describe, or why they are refused.
pub fn load_request(
    parameters: HashMap<String, ModelRepositoryParameter>,
) -> Result<LoadRequest, Error> {
    let mut request = LoadRequest::default();
    for (key, value) in parameters {
        match (key.as_str(), value.parameter_choice) {
            ("config", Some(ParameterChoice::StringParam(text))) => {
                let (config, ignored) = ModelConfig::parse_json(&text)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                request.config = Some(config);
                request.ignored_keys = ignored;
            }
            ("force", Some(ParameterChoice::BoolParam(b))) => request.force = b,
            (k, Some(ParameterChoice::BytesParam(bytes))) if k.starts_with("file:") => {
                let path = &k["file:".len()..];
                checked_path(path)?;
                request.files.push((path.to_string(), bytes.to_vec()));
            }
            (k, _) => {
                return Err(Error::InvalidInput(format!(
                    "unsupported load parameter '{k}' (expected config: string, file:<version>/<file>: bytes, force: bool)"
                )))
            }
        }
    }
    if !request.files.is_empty() && request.config.is_none() {
        return Err(Error::InvalidInput(
            "file overrides need a 'config' parameter too (as in Triton)".to_string(),
        ));
    }
    Ok(request)
}
