//! Binary tensor codec: little-endian, row-major, no padding; BOOL is one byte (0/1).
//! Used by the HTTP binary-data extension and gRPC `raw_*_contents`.

use super::{dispatch_dtype, element_count, with_tensor_data, DataType, Element, Tensor};

/// Decodes `bytes` as a tensor of `dtype` and `shape`. The byte count must match exactly,
/// so a short or long buffer is an error, never an over-read.
pub fn decode_binary(dtype: DataType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
    let count = element_count(shape);
    let expected = count.saturating_mul(dtype.size_bytes());
    if bytes.len() != expected {
        return Err(format!(
            "{dtype} tensor of shape {shape:?} needs {expected} bytes but {} were given",
            bytes.len()
        ));
    }
    fn decode<T: Element>(bytes: &[u8], size: usize) -> Vec<T> {
        bytes.chunks_exact(size).map(T::get_le).collect()
    }
    let data = dispatch_dtype!(dtype, T => T::wrap(decode::<T>(bytes, dtype.size_bytes())));
    Ok(Tensor {
        shape: shape.to_vec(),
        data,
    })
}

/// Appends the tensor's bytes to `out`.
pub fn encode_binary(tensor: &Tensor, out: &mut Vec<u8>) {
    out.reserve(tensor.data.len() * tensor.dtype().size_bytes());
    with_tensor_data!(&tensor.data, v => v.iter().for_each(|x| x.put_le(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn f32_round_trips(values in proptest::collection::vec(any::<f32>(), 0..64)) {
            let t = Tensor { shape: vec![values.len()], data: TensorData::F32(values) };
            let mut bytes = Vec::new();
            encode_binary(&t, &mut bytes);
            let back = decode_binary(DataType::F32, &t.shape, &bytes).unwrap();
            let (TensorData::F32(a), TensorData::F32(b)) = (&t.data, &back.data) else { panic!() };
            prop_assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }

        #[test]
        fn i64_round_trips(values in proptest::collection::vec(any::<i64>(), 0..64)) {
            let t = Tensor { shape: vec![values.len()], data: TensorData::I64(values) };
            let mut bytes = Vec::new();
            encode_binary(&t, &mut bytes);
            prop_assert_eq!(decode_binary(DataType::I64, &t.shape, &bytes).unwrap(), t);
        }

        #[test]
        fn wrong_lengths_are_errors(len in 0usize..64, rows in 0usize..8) {
            let shape = [rows, 2];
            let expected = rows * 2 * 4;
            let result = decode_binary(DataType::F32, &shape, &vec![0u8; len]);
            prop_assert_eq!(result.is_ok(), len == expected);
        }
    }

    #[test]
    fn bools_are_one_byte() {
        let t = decode_binary(DataType::Bool, &[3], &[0, 1, 2]).unwrap();
        assert_eq!(t.data, TensorData::Bool(vec![false, true, true]));
        let mut out = Vec::new();
        encode_binary(&t, &mut out);
        assert_eq!(out, vec![0, 1, 1]);
    }
}
