//! Why a buffer does not make the tensor it claims to be: the element or byte count does
//! not fit the shape, or the length-prefixed strings of a BYTES tensor are malformed. Each
//! message names the shape and the counts, for the client that sent them.

use super::DataType;

/// A tensor that cannot be built from the shape and the data given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A typed buffer whose element count is not the shape's.
    #[error("shape {shape:?} needs {expected} elements but {given} were given")]
    ElementCount {
        shape: Vec<usize>,
        expected: usize,
        given: usize,
    },
    /// A little-endian buffer whose byte count is not the shape's times the element size.
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes but {given} were given")]
    ByteCount {
        dtype: DataType,
        shape: Vec<usize>,
        expected: usize,
        given: usize,
    },
    /// The length-prefixed elements of a BYTES tensor do not fill its buffer exactly.
    #[error("BYTES tensor of shape {shape:?}: {source}")]
    Strings {
        shape: Vec<usize>,
        source: StringsError,
    },
}

/// Length-prefixed strings (4-byte little-endian length, then the bytes) that do not
/// split as expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StringsError {
    /// Bytes left over after the expected number of elements.
    #[error("{extra} bytes follow the last of the {count} elements")]
    TrailingBytes { extra: usize, count: usize },
    /// Fewer than 4 bytes where an element's length should start.
    #[error("element {index} needs a 4-byte length but only {remain} bytes remain")]
    MissingLength { index: usize, remain: usize },
    /// An element longer than what is left of the buffer.
    #[error("element {index} has length {len} but only {remain} bytes remain")]
    ShortElement {
        index: usize,
        len: usize,
        remain: usize,
    },
    /// The buffer ended after fewer elements than the shape needs.
    #[error("needs {expected} length-prefixed elements but {given} were given")]
    Count { expected: usize, given: usize },
}
