//! Raw-feature transforms: the preprocessing a CTR model was trained with, applied in the
//! server so clients send raw fields (`user_id = "u123"`, `age = 31`) instead of the ids and
//! normalised numbers the graph takes. Each transform computes exactly what the training
//! library computes (Keras `Hashing`, `StringLookup`, `Discretization`, standardisation and
//! `log1p`), so a model served here sees the inputs it was trained on.
//!
//! Pure code: field tensors in, graph-input tensors out. It knows no transport and no ONNX
//! Runtime; the loader builds a [`FeatureSet`] once per model version (vocabularies are
//! read then, and shared by every request and instance of the version).

mod fingerprint;
mod set;
mod transform;

pub use fingerprint::fingerprint64;
pub use set::{BuiltInput, FeatureSet, Field, GraphInput};
pub use transform::{
    ColumnLoop, FeatureError, FieldConfig, FieldValue, Kernel, Modulus, OwnedValue, Transform,
    TransformOutput,
};
