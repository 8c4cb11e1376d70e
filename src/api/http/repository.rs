//! Triton's model repository extension over HTTP: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{name}/load` (optional `parameters.config` JSON string,
//! `file:<version>/<path>` base64 contents, `force`), `POST .../unload`. Thin adapters:
//! check the admin token, decode, call the [`Service`]; load and unload answer when done.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use serde_json::{Map, Value};

use super::body_or_error;
use super::contract::{
    AdminToken, BadRequest, ControlErrors, IndexRequest, LoadBody, ModelPath, TooLarge,
    Unauthorized, UnloadBody,
};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::service::Service;
use crate::service::{checked_path, IndexEntry, LoadRequest};

fn authorize(service: &Service, headers: &HeaderMap) -> Result<()> {
    service.authorize_admin(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
}

/// Checks the admin token, then reads the body as a JSON object.
fn authorized_object(
    service: &Service,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>> {
    authorize(service, headers)?;
    object(&body_or_error(body, service.config.max_body_bytes)?)
}

/// The body as a JSON object; an empty body is an empty object.
fn object(body: &Bytes) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    crate::tensor::check_depth(body)
        .map_err(|e| Error::InvalidInput(format!("invalid JSON body: {e}")))?;
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::InvalidInput("expected a JSON object".to_string())),
        Err(e) => Err(Error::InvalidInput(format!("invalid JSON body: {e}"))),
    }
}

/// Every model and version the repository knows, with its state and the reason when unavailable (Triton's repository extension)
#[utoipa::path(post, path = "/v2/repository/index", operation_id = "repositoryIndex", tag = "repository",
    params(AdminToken),
    request_body(content = IndexRequest, description = "May be empty."),
    responses(
        (status = 200, description = "The index.", body = Vec<IndexEntry>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
    ))]
pub async fn index(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<IndexEntry>>> {
    let body = authorized_object(&service, &headers, body)?;
    let ready_only = match body.get("ready") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "'ready' must be a boolean, got {other}"
            )))
        }
    };
    Ok(Json(service.repository_index(ready_only)))
}

/// Load or reload a model; answers when done (explicit mode)
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", operation_id = "repositoryModelLoad", tag = "repository",
    params(ModelPath, AdminToken),
    request_body(content = LoadBody, description = "May be empty."),
    responses(
        (status = 200, description = "Done."),
        ControlErrors,
    ))]
pub async fn load(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let body = authorized_object(&service, &headers, body)?;
    let request = load_request(body.get("parameters"))?;
    service.load_model(&name, request).await?;
    Ok(StatusCode::OK)
}

/// Unload a model; answers when done (explicit mode)
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", operation_id = "repositoryModelUnload", tag = "repository",
    params(ModelPath, AdminToken),
    request_body(content = UnloadBody, description = "May be empty."),
    responses(
        (status = 200, description = "Done."),
        ControlErrors,
    ))]
pub async fn unload(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    // `unload_dependents` is accepted; models here have no dependents.
    authorized_object(&service, &headers, body)?;
    service.unload_model(&name).await?;
    Ok(StatusCode::OK)
}

/// `parameters` of a load: `config` (JSON text), `file:<path>` (base64), `force` (bool).
fn load_request(parameters: Option<&Value>) -> Result<LoadRequest> {
    let mut request = LoadRequest::default();
    let Some(parameters) = parameters.filter(|p| !p.is_null()) else {
        return Ok(request);
    };
    let parameters = parameters
        .as_object()
        .ok_or_else(|| Error::InvalidInput("'parameters' must be an object".to_string()))?;
    for (key, value) in parameters {
        match (key.as_str(), value) {
            ("config", Value::String(text)) => {
                let (config, ignored) = ModelConfig::parse_json(text)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                request.config = Some(config);
                request.ignored_keys = ignored;
            }
            ("force", Value::Bool(b)) => request.force = *b,
            ("force", Value::String(s)) => request.force = s == "true",
            (key, Value::String(b64)) if key.starts_with("file:") => {
                let path = &key["file:".len()..];
                checked_path(path)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| Error::InvalidInput(format!("parameter '{key}': invalid base64: {e}")))?;
                request.files.push((path.to_string(), bytes));
            }
            (key, _) => {
                return Err(Error::InvalidInput(format!(
                    "unsupported load parameter '{key}' (expected config, file:<version>/<file>, force)"
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
