//! Conversion between our [`Tensor`] and ONNX Runtime values. Inputs hand their buffer to
//! ORT without a copy; outputs are copied once out of ORT-owned memory.

use ort::value::{DynValue, Tensor as OrtTensor, ValueType};

use super::{dispatch_dtype, with_tensor_data, DataType, Tensor};

/// Moves `tensor` into an ORT value (the buffer is handed over, not copied).
pub fn to_ort_value(tensor: Tensor) -> ort::Result<DynValue> {
    let shape = tensor.shape;
    with_tensor_data!(tensor.data, v => Ok(OrtTensor::from_array((shape, v))?.into_dyn()))
}

/// Copies an ORT output tensor into a [`Tensor`]; errors name the unsupported type.
pub fn from_ort_value(value: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("output is a {}, not a tensor", value.dtype()));
    };
    let dtype = DataType::from_ort(*ty)
        .ok_or_else(|| format!("output element type {ty} is not supported"))?;
    dispatch_dtype!(dtype, T => {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        Ok(Tensor {
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: <T as super::Element>::wrap(data.to_vec()),
        })
    })
}
