//! Conversion between our [`Tensor`] and ONNX Runtime values, and between [`DataType`]
//! and ORT's element types. Numeric inputs hand their buffer to ORT without a copy; string
//! inputs are copied into ORT's own strings (it keeps one allocation per element); outputs
//! are copied once out of ORT-owned memory. The rest of the crate never sees an ORT type.

use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::RunError;

use crate::tensor::{
    dispatch_dtype, with_tensor_data, ByteStrings, DataType, Element, Tensor, TensorData,
};

/// ORT's element type for `dtype`. Exhaustive: a new [`DataType`] does not compile until
/// it is mapped here.
pub fn element_type(dtype: DataType) -> TensorElementType {
    match dtype {
        DataType::Bool => TensorElementType::Bool,
        DataType::U8 => TensorElementType::Uint8,
        DataType::U16 => TensorElementType::Uint16,
        DataType::U32 => TensorElementType::Uint32,
        DataType::U64 => TensorElementType::Uint64,
        DataType::I8 => TensorElementType::Int8,
        DataType::I16 => TensorElementType::Int16,
        DataType::I32 => TensorElementType::Int32,
        DataType::I64 => TensorElementType::Int64,
        DataType::F16 => TensorElementType::Float16,
        DataType::BF16 => TensorElementType::Bfloat16,
        DataType::F32 => TensorElementType::Float32,
        DataType::F64 => TensorElementType::Float64,
        DataType::Bytes => TensorElementType::String,
    }
}

/// The [`DataType`] of an ORT element type; `None` for types we do not serve (fp8, int4,
/// complex, ...).
pub fn data_type(ty: TensorElementType) -> Option<DataType> {
    DataType::all().find(|&d| element_type(d) == ty)
}

/// Moves `tensor` into an ORT value (a numeric buffer is handed over, not copied). String
/// elements must be UTF-8 without NUL bytes (requests are checked against that first).
pub fn to_ort_value(tensor: Tensor) -> ort::Result<DynValue> {
    let shape = tensor.shape;
    with_tensor_data!(tensor.data, v => Ok(OrtTensor::from_array((shape, v))?.into_dyn()),
        bytes s => strings_to_ort(shape, &s))
}

fn strings_to_ort(shape: Vec<usize>, strings: &ByteStrings) -> ort::Result<DynValue> {
    // ORT keeps one std::string per element, and the crate's constructor takes owned
    // `'static` elements: one copy per element either way.
    let texts = strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            String::from_utf8(s.to_vec())
                .map_err(|e| ort::Error::new(format!("string element {i} is not UTF-8: {e}")))
        })
        .collect::<ort::Result<Vec<String>>>()?;
    Ok(OrtTensor::from_string_array((shape, texts.as_slice()))?.into_dyn())
}

/// Copies an ORT output tensor into a [`Tensor`]; errors name the unsupported type.
pub fn from_ort_value(value: &DynValue) -> Result<Tensor, RunError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(RunError::NotATensor(value.dtype().to_string()));
    };
    let dtype = data_type(*ty).ok_or_else(|| RunError::UnsupportedOutput(ty.to_string()))?;
    dispatch_dtype!(dtype, T => {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        Ok(Tensor {
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: <T as Element>::wrap(data.to_vec()),
        })
    }, bytes => {
        let (shape, data) = value.try_extract_strings()?;
        Ok(Tensor {
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: TensorData::Bytes(data.iter().collect()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_maps_to_one_element_type_and_back() {
        for dt in DataType::all() {
            assert_eq!(data_type(element_type(dt)), Some(dt), "{dt}");
        }
        assert_eq!(data_type(TensorElementType::String), Some(DataType::Bytes));
        assert_eq!(data_type(TensorElementType::Complex64), None);
    }
}
