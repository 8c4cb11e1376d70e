//! Raw-feature transforms: the preprocessing a CTR model was trained with, applied in the
//! server so clients send raw fields (`user_id = "u123"`, `age = 31`) instead of the ids and
//! normalised numbers the graph takes. Each transform computes exactly what the training
//! library computes (Keras `Hashing`, `StringLookup`, `Discretization`, standardisation and
//! `log1p`), so a model served here sees the inputs it was trained on.
//!
//! Pure code: field values in, one id or number out. It knows no transport, no tensor layout
//! and no ONNX Runtime; the config layer builds a [`Transform`] per field once per model
//! version (vocabularies are read then, and shared by every request).

mod fingerprint;
mod transform;

pub use fingerprint::fingerprint64;
pub use transform::{FeatureError, FieldConfig, FieldValue, Transform, TransformOutput};
