//! Routes served at more than one path: an alias of a route, and a model route's
//! per-version form, each with its operation repeated under its own id.

use utoipa::openapi::path::{Operation, Parameter, PathItem, Paths};
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;

use super::VersionPath;

/// `route` served at `path` as well (an alias): the same handler, its operation repeated
/// with `suffix` on its id.
pub fn also_at<S: Clone + Send + Sync + 'static>(
    (schemas, mut paths, handler): UtoipaMethodRouter<S>,
    path: &str,
    suffix: &str,
) -> UtoipaMethodRouter<S> {
    let item = paths.paths.values().next().cloned();
    let mut alias = Paths::new();
    if let Some(item) = item {
        alias.paths.insert(path.to_string(), renamed(item, suffix));
    }
    paths = alias;
    (schemas, paths, handler)
}

/// A model route, `/v2/models/{name}/...`, served for one version as well at
/// `/v2/models/{name}/versions/{version}/...` (the handler's `ModelRef` reads either).
pub fn with_version<S: Clone + Send + Sync + 'static>(
    (schemas, mut paths, handler): UtoipaMethodRouter<S>,
) -> UtoipaMethodRouter<S> {
    let versioned: Vec<(String, PathItem)> = paths
        .paths
        .iter()
        .map(|(path, item)| {
            let rest = path.strip_prefix("/v2/models/{name}").unwrap_or(path);
            let path = format!("/v2/models/{{name}}/versions/{{version}}{rest}");
            let mut item = renamed(item.clone(), "Version");
            for operation in operations(&mut item) {
                if let Some(summary) = &mut operation.summary {
                    let kept = summary.split(" (").next().unwrap_or_default().to_string();
                    *summary = format!("{kept} (the given version)");
                }
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                let at = parameters
                    .iter()
                    .position(|p| p.name == "name")
                    .map_or(0, |i| i + 1);
                parameters.insert(at, version_parameter());
            }
            (path, item)
        })
        .collect();
    paths.paths.extend(versioned);
    (schemas, paths, handler)
}

fn version_parameter() -> Parameter {
    let mut params = VersionPath::into_params(|| None);
    params.retain(|p| p.name == "version");
    params.pop().unwrap_or_default()
}

/// `item` with `suffix` added to each operation's id.
fn renamed(mut item: PathItem, suffix: &str) -> PathItem {
    for operation in operations(&mut item) {
        if let Some(id) = &mut operation.operation_id {
            id.push_str(suffix);
        }
    }
    item
}

/// The operations of `item` (the methods this API uses).
pub(super) fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}
