//! Binary tensor codec: little-endian, row-major, no padding; BOOL is one byte (0/1);
//! BYTES is, per element, its length as 4 little-endian bytes and then its bytes (Triton's
//! form). Used by the HTTP binary-data extension and gRPC `raw_*_contents`.

use super::{
    dispatch_dtype, element_count, with_tensor_data, ByteStrings, DataType, Element, StringsError,
    Tensor, TensorData, TensorError,
};

/// Decodes `bytes` as a tensor of `dtype` and `shape`. The byte count must match exactly,
/// so a short or long buffer is an error, never an over-read.
pub fn decode_binary(
    dtype: DataType,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Tensor, TensorError> {
    let count = element_count(shape);
    fn decode<T: Element>(
        bytes: &[u8],
        shape: &[usize],
        count: usize,
    ) -> Result<TensorData, TensorError> {
        // Every element type's in-memory size is its wire size (`DataType::fixed_size`).
        let size = std::mem::size_of::<T>();
        let expected = count.saturating_mul(size);
        if bytes.len() != expected {
            return Err(TensorError::ByteCount {
                dtype: T::DTYPE,
                shape: shape.to_vec(),
                expected,
                given: bytes.len(),
            });
        }
        Ok(T::wrap(bytes.chunks_exact(size).map(T::get_le).collect()))
    }
    let data = dispatch_dtype!(dtype, T => decode::<T>(bytes, shape, count)?,
    bytes => TensorData::Bytes(
        decode_strings(bytes, Some(count))
            .map_err(|source| TensorError::Strings {
                shape: shape.to_vec(),
                source,
            })?,
    ));
    Ok(Tensor {
        shape: shape.to_vec(),
        data,
    })
}

/// Splits length-prefixed strings. With `expected`, exactly that many must fill `bytes`
/// (no more elements, no trailing bytes); without, as many as there are.
pub fn decode_strings(
    mut bytes: &[u8],
    expected: Option<usize>,
) -> Result<ByteStrings, StringsError> {
    // Every element takes at least its 4-byte length, so the text bounds the count.
    let room = expected.unwrap_or(usize::MAX).min(bytes.len() / 4);
    let mut out = ByteStrings::with_capacity(room, bytes.len().saturating_sub(room * 4));
    while !bytes.is_empty() {
        let i = out.len();
        if expected.is_some_and(|n| i == n) {
            return Err(StringsError::TrailingBytes {
                extra: bytes.len(),
                count: i,
            });
        }
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(StringsError::MissingLength {
                index: i,
                remain: bytes.len(),
            });
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(StringsError::ShortElement {
                index: i,
                len,
                remain: rest.len(),
            });
        }
        let (element, rest) = rest.split_at(len);
        out.push(element);
        bytes = rest;
    }
    match expected {
        Some(n) if out.len() != n => Err(StringsError::Count {
            expected: n,
            given: out.len(),
        }),
        _ => Ok(out),
    }
}

/// Appends the tensor's bytes to `out`.
pub fn encode_binary(tensor: &Tensor, out: &mut Vec<u8>) {
    fn numeric<T: Element>(v: &[T], out: &mut Vec<u8>) {
        out.reserve(std::mem::size_of_val(v));
        v.iter().for_each(|x| x.put_le(out));
    }
    with_tensor_data!(&tensor.data, v => numeric(v, out), bytes s => encode_strings(s, out))
}

/// Appends each string as a 4-byte little-endian length and its bytes. An element of 4 GiB
/// or more cannot be framed; the per-element cap keeps every input far below that, and
/// ONNX Runtime outputs of that size would not fit a response body either.
fn encode_strings(strings: &ByteStrings, out: &mut Vec<u8>) {
    out.reserve(strings.total_bytes() + 4 * strings.len());
    for s in strings {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&s[..len as usize]);
    }
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
    fn strings_are_length_prefixed_and_wrong_lengths_are_errors() {
        let framed = [2, 0, 0, 0, b'h', b'i', 0, 0, 0, 0, 1, 0, 0, 0, 0xff];
        let t = decode_binary(DataType::Bytes, &[3], &framed).unwrap();
        let want: ByteStrings = [&b"hi"[..], b"", &[0xff]].into_iter().collect();
        assert_eq!(t.data, TensorData::Bytes(want));
        let mut out = Vec::new();
        encode_binary(&t, &mut out);
        assert_eq!(out, framed);
        for (shape, bytes, needle) in [
            (
                &[3][..],
                &framed[..framed.len() - 1],
                "element 2 has length 1 but only 0",
            ),
            (
                &[3],
                &framed[..12],
                "element 2 needs a 4-byte length but only 2",
            ),
            (
                &[2],
                &framed[..],
                "5 bytes follow the last of the 2 elements",
            ),
            (&[4], &framed[..], "needs 4 length-prefixed elements but 3"),
            (
                &[1],
                &[0xff, 0xff, 0xff, 0xff, 0][..],
                "length 4294967295 but only 1",
            ),
        ] {
            let err = decode_binary(DataType::Bytes, shape, bytes).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    proptest! {
        #[test]
        fn strings_round_trip_and_any_bytes_decode_without_panicking(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..9), 0..9),
            junk in proptest::collection::vec(any::<u8>(), 0..40),
            n in 0usize..6,
        ) {
            let t = Tensor { shape: vec![items.len()], data: TensorData::Bytes(items.iter().collect()) };
            let mut bytes = Vec::new();
            encode_binary(&t, &mut bytes);
            prop_assert_eq!(decode_binary(DataType::Bytes, &t.shape, &bytes).unwrap(), t);
            let _ = decode_binary(DataType::Bytes, &[n], &junk);
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
