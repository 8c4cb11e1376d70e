//! Our own tensor type: a shape plus a typed, row-major buffer. Transports decode into it,
//! the batcher stacks and splits it, the runtime converts it to and from ORT values.
//! Nothing here knows about HTTP, gRPC, models or ONNX Runtime.
//!
//! Numeric buffers are `Vec`s of a `Copy` [`Element`]; BYTES buffers are [`ByteStrings`].
//! `with_tensor_data!` and `dispatch_dtype!` take one arm for every numeric type and a
//! separate arm for strings, so each call site says what strings do there.

mod binary;
mod dtype;
mod error;
mod json;
mod json_scan;
mod json_strings;
mod strings;

pub use binary::{decode_binary, decode_strings, encode_binary};
pub use dtype::DataType;
pub use error::{StringsError, TensorError};
pub use json::{
    check_depth, decode_array, decode_array_expecting, decode_column, decode_strings_prefix,
    deepest_nesting, Flat, FromJson, JsonArray, JsonArrayError, JsonNumber, Nested, TooDeep,
    MAX_JSON_DEPTH,
};
pub(crate) use json_scan::bytes_equal;
pub use strings::ByteStrings;

/// Re-exported so `dispatch_dtype!` names them through this crate, wherever it expands.
pub use half::{bf16, f16};

/// A typed element buffer; one variant per [`DataType`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(ByteStrings),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of whatever numeric variant `$data` is,
/// or `$strings` with `$s` bound to the [`ByteStrings`] of a BYTES buffer.
#[macro_export]
#[doc(hidden)]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr, bytes $s:ident => $strings:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::U8($v) => $body,
            $crate::tensor::TensorData::U16($v) => $body,
            $crate::tensor::TensorData::U32($v) => $body,
            $crate::tensor::TensorData::U64($v) => $body,
            $crate::tensor::TensorData::I8($v) => $body,
            $crate::tensor::TensorData::I16($v) => $body,
            $crate::tensor::TensorData::I32($v) => $body,
            $crate::tensor::TensorData::I64($v) => $body,
            $crate::tensor::TensorData::F16($v) => $body,
            $crate::tensor::TensorData::BF16($v) => $body,
            $crate::tensor::TensorData::F32($v) => $body,
            $crate::tensor::TensorData::F64($v) => $body,
            $crate::tensor::TensorData::Bytes($s) => $strings,
        }
    };
}
pub use with_tensor_data;

/// A fixed-size (numeric or boolean) element type that can live in a [`TensorData`].
pub trait Element: Copy + Default + PartialEq + std::fmt::Debug + Send + 'static {
    const DTYPE: DataType;
    fn wrap(v: Vec<Self>) -> TensorData;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `size_bytes` little-endian bytes.
    fn get_le(bytes: &[u8]) -> Self;
    /// The buffer of `data` if it holds this element type.
    fn slice(data: &TensorData) -> Option<&[Self]>;
}

macro_rules! impl_element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DataType = DataType::$variant;
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$variant(v)
            }
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn get_le(bytes: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                buf.copy_from_slice(bytes);
                <$t>::from_le_bytes(buf)
            }
        }
    };
}
impl_element!(u8, U8);
impl_element!(u16, U16);
impl_element!(u32, U32);
impl_element!(u64, U64);
impl_element!(i8, I8);
impl_element!(i16, I16);
impl_element!(i32, I32);
impl_element!(i64, I64);
impl_element!(f16, F16);
impl_element!(bf16, BF16);
impl_element!(f32, F32);
impl_element!(f64, F64);

impl Element for bool {
    const DTYPE: DataType = DataType::Bool;
    fn wrap(v: Vec<Self>) -> TensorData {
        TensorData::Bool(v)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn get_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn slice(data: &TensorData) -> Option<&[Self]> {
        match data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl TensorData {
    pub fn dtype(&self) -> DataType {
        fn of<T: Element>(_: &[T]) -> DataType {
            T::DTYPE
        }
        with_tensor_data!(self, v => of(v), bytes _s => DataType::Bytes)
    }

    /// Bytes the buffer holds: elements × size for numbers; for strings their bytes plus
    /// one offset per element.
    pub fn memory_bytes(&self) -> usize {
        fn of<T: Element>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        with_tensor_data!(self, v => of(v), bytes s => s.memory_bytes())
    }

    /// The strings of a BYTES buffer.
    pub fn as_strings(&self) -> Option<&ByteStrings> {
        match self {
            TensorData::Bytes(s) => Some(s),
            _ => None,
        }
    }

    /// The first NaN or ±infinity of a floating-point tensor, as (index, value).
    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        fn find<T: Copy + Into<f64>>(v: &[T]) -> Option<(usize, f64)> {
            v.iter()
                .map(|&x| x.into())
                .enumerate()
                .find(|(_, x): &(usize, f64)| !x.is_finite())
        }
        match self {
            TensorData::F16(v) => find(v),
            TensorData::BF16(v) => find(v),
            TensorData::F32(v) => find(v),
            TensorData::F64(v) => find(v),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len(), bytes s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of `dtype` with room for `capacity` elements.
    pub fn with_capacity(dtype: DataType, capacity: usize) -> TensorData {
        fn make<T: Element>(capacity: usize) -> TensorData {
            T::wrap(Vec::with_capacity(capacity))
        }
        dispatch_dtype!(dtype, T => make::<T>(capacity),
            bytes => TensorData::Bytes(ByteStrings::with_capacity(capacity, 0)))
    }

    /// `count` elements of `dtype` that are all zero / false / the empty string: the
    /// filler of warm-up and calibration runs.
    pub fn zeros(dtype: DataType, count: usize) -> TensorData {
        dispatch_dtype!(dtype, T => <T as Element>::wrap(vec![T::default(); count]),
            bytes => TensorData::Bytes(ByteStrings::empty_strings(count)))
    }
}

/// Runs `$body` with the type alias `$t` set to the Rust element type of a numeric
/// `$dtype`, or `$strings` for [`DataType::Bytes`].
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch_dtype {
    ($dtype:expr, $t:ident => $body:expr, bytes => $strings:expr) => {{
        use $crate::tensor::DataType as D;
        match $dtype {
            D::Bool => {
                type $t = bool;
                $body
            }
            D::U8 => {
                type $t = u8;
                $body
            }
            D::U16 => {
                type $t = u16;
                $body
            }
            D::U32 => {
                type $t = u32;
                $body
            }
            D::U64 => {
                type $t = u64;
                $body
            }
            D::I8 => {
                type $t = i8;
                $body
            }
            D::I16 => {
                type $t = i16;
                $body
            }
            D::I32 => {
                type $t = i32;
                $body
            }
            D::I64 => {
                type $t = i64;
                $body
            }
            D::F16 => {
                type $t = $crate::tensor::f16;
                $body
            }
            D::BF16 => {
                type $t = $crate::tensor::bf16;
                $body
            }
            D::F32 => {
                type $t = f32;
                $body
            }
            D::F64 => {
                type $t = f64;
                $body
            }
            D::Bytes => $strings,
        }
    }};
}
pub use dispatch_dtype;

/// A dense tensor: `shape` (row-major) and a buffer of exactly `shape.product()` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let expected = element_count(&shape);
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                given: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// Size of the first (batch) dimension; 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements in one row (product of the non-batch dims).
    pub fn row_len(&self) -> usize {
        element_count(self.shape.get(1..).unwrap_or(&[]))
    }
}

/// Product of dims, saturating so absurd shapes cannot overflow (they are rejected later).
pub fn element_count(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bytes_counts_what_the_buffer_holds() {
        assert_eq!(TensorData::F32(vec![0.0; 10]).memory_bytes(), 40);
        assert_eq!(TensorData::Bool(vec![true; 3]).memory_bytes(), 3);
        assert_eq!(TensorData::zeros(DataType::F16, 4).memory_bytes(), 8);
        let strings: ByteStrings = ["abc", "", "de"].into_iter().collect();
        let offsets = 3 * std::mem::size_of::<usize>();
        assert_eq!(TensorData::Bytes(strings).memory_bytes(), 5 + offsets);
        assert_eq!(
            TensorData::zeros(DataType::Bytes, 3).memory_bytes(),
            offsets
        );
    }

    /// The binary codec reads numbers with `size_of::<T>()`; it must be the wire size.
    #[test]
    fn every_numeric_element_is_its_wire_size_in_memory() {
        for dt in DataType::all() {
            let size = dispatch_dtype!(dt, T => Some(std::mem::size_of::<T>()), bytes => None);
            assert_eq!(size, dt.fixed_size(), "{dt}");
        }
    }
}
