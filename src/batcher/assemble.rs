//! Stacking the inputs of several requests into one batch (padding declared axes) and
//! splitting batched outputs back into each request's rows. Pure and synchronous; runs on
//! the worker thread so the async side never copies tensors. String inputs pad with the
//! empty string, whatever `pad_value` says (it is a number; load refuses any other for
//! strings).

use crate::spec::TensorSpec;
use crate::tensor::{
    dispatch_dtype, element_count, with_tensor_data, ByteStrings, Element, FromJson, JsonNumber,
    Tensor, TensorData,
};

/// Stacks requests along axis 0. `requests[j][i]` is input `i` of request `j`, already
/// validated against `specs` and of one shape class. A single request is moved, not copied.
pub fn stack(specs: &[TensorSpec], mut requests: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    if requests.len() == 1 {
        return Ok(requests.pop().unwrap_or_default());
    }
    let mut per_input: Vec<Vec<Tensor>> = specs
        .iter()
        .map(|_| Vec::with_capacity(requests.len()))
        .collect();
    for request in requests {
        for (i, t) in request.into_iter().enumerate() {
            per_input[i].push(t);
        }
    }
    specs
        .iter()
        .zip(per_input)
        .map(|(spec, parts)| stack_input(spec.pad_value, &parts))
        .collect()
}

fn stack_input(pad_value: f64, parts: &[Tensor]) -> Result<Tensor, String> {
    let first = parts.first().ok_or("nothing to stack")?;
    let mut target = first.shape.clone();
    target[0] = parts.iter().map(Tensor::rows).sum();
    for (axis, dim) in target.iter_mut().enumerate().skip(1) {
        *dim = parts
            .iter()
            .map(|p| p.shape.get(axis).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
    }
    dispatch_dtype!(first.dtype(), T => stack_typed::<T>(parts, target, pad_value),
        bytes => stack_strings(parts, target))
}

fn stack_strings(parts: &[Tensor], target: Vec<usize>) -> Result<Tensor, String> {
    let mut out = ByteStrings::with_capacity(
        element_count(&target),
        parts
            .iter()
            .filter_map(|p| p.data.as_strings())
            .map(ByteStrings::total_bytes)
            .sum(),
    );
    for p in parts {
        let src = p
            .data
            .as_strings()
            .ok_or("inputs of one batch differ in datatype")?;
        if p.shape[1..] == target[1..] {
            out.extend_from(src);
        } else {
            let mut dst = target.clone();
            dst[0] = p.rows();
            pad_strings(src, 0, &p.shape, &dst, &mut out);
        }
    }
    Tensor::new(target, TensorData::Bytes(out))
}

/// [`pad_block`] for strings: appends `src` from element `at` on (laid out as `src_dims`)
/// to `out` laid out as `dst_dims`, filling with empty strings.
fn pad_strings(
    src: &ByteStrings,
    at: usize,
    src_dims: &[usize],
    dst_dims: &[usize],
    out: &mut ByteStrings,
) {
    match (src_dims, dst_dims) {
        ([], _) | (_, []) => out.extend_from_range(src, at..at + element_count(src_dims)),
        ([n], [m]) => {
            out.extend_from_range(src, at..at + n);
            out.push_empty(m - n);
        }
        ([n, src_inner @ ..], [m, dst_inner @ ..]) => {
            let src_chunk = element_count(src_inner);
            let dst_chunk = element_count(dst_inner);
            for i in 0..*n {
                pad_strings(src, at + i * src_chunk, src_inner, dst_inner, out);
            }
            out.push_empty((m - n) * dst_chunk);
        }
    }
}

fn stack_typed<T: Element + FromJson>(
    parts: &[Tensor],
    target: Vec<usize>,
    pad: f64,
) -> Result<Tensor, String> {
    let pad = T::from_json(JsonNumber::Float(pad)).unwrap_or_default();
    let mut out = Vec::with_capacity(element_count(&target));
    for p in parts {
        let src = T::slice(&p.data).ok_or("inputs of one batch differ in datatype")?;
        if p.shape[1..] == target[1..] {
            out.extend_from_slice(src);
        } else {
            let mut dst = target.clone();
            dst[0] = p.rows();
            pad_block(src, &p.shape, &dst, pad, &mut out);
        }
    }
    Tensor::new(target, T::wrap(out))
}

/// Appends `src` (of `src_dims`) to `out` laid out as `dst_dims`, filling with `pad`.
fn pad_block<T: Copy>(src: &[T], src_dims: &[usize], dst_dims: &[usize], pad: T, out: &mut Vec<T>) {
    match (src_dims, dst_dims) {
        ([], _) | (_, []) => out.extend_from_slice(src),
        ([n], [m]) => {
            out.extend_from_slice(&src[..*n]);
            out.extend(std::iter::repeat_n(pad, m - n));
        }
        ([n, src_inner @ ..], [m, dst_inner @ ..]) => {
            let src_chunk = element_count(src_inner);
            let dst_chunk = element_count(dst_inner);
            for i in 0..*n {
                pad_block(
                    &src[i * src_chunk..(i + 1) * src_chunk],
                    src_inner,
                    dst_inner,
                    pad,
                    out,
                );
            }
            out.extend(std::iter::repeat_n(pad, (m - n) * dst_chunk));
        }
    }
}

/// Splits each batched output into consecutive row ranges of `rows`. Returns one vector of
/// outputs per request. A single request gets the outputs moved.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for out in outputs {
        if out.rows() != total || out.shape.is_empty() {
            return Err(format!(
                "output of shape {:?} does not have the batch's {total} rows on axis 0",
                out.shape
            ));
        }
        let row_len = out.row_len();
        let mut start = 0;
        for (j, &r) in rows.iter().enumerate() {
            let mut shape = out.shape.clone();
            shape[0] = r;
            let range = start * row_len..(start + r) * row_len;
            let data = with_tensor_data!(&out.data, v => Element::wrap(v[range.clone()].to_vec()),
                bytes s => TensorData::Bytes(s.slice(range.clone())));
            per_request[j].push(Tensor { shape, data });
            start += r;
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, TensorData};

    fn spec(pad_axes: Vec<usize>) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            dtype: DataType::I64,
            shape: vec![-1, -1],
            symbols: Vec::new(),
            pad_axes,
            pad_value: -1.0,
        }
    }

    fn t(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::new(shape, TensorData::I64(v)).unwrap()
    }

    #[test]
    fn equal_shapes_concatenate() {
        let out = stack(
            &[spec(vec![])],
            vec![
                vec![t(vec![1, 2], vec![1, 2])],
                vec![t(vec![2, 2], vec![3, 4, 5, 6])],
            ],
        )
        .unwrap();
        assert_eq!(out, vec![t(vec![3, 2], vec![1, 2, 3, 4, 5, 6])]);
    }

    #[test]
    fn paddable_axes_pad_to_the_longest() {
        let out = stack(
            &[spec(vec![1])],
            vec![
                vec![t(vec![1, 1], vec![7])],
                vec![t(vec![2, 3], vec![1, 2, 3, 4, 5, 6])],
            ],
        )
        .unwrap();
        assert_eq!(out, vec![t(vec![3, 3], vec![7, -1, -1, 1, 2, 3, 4, 5, 6])]);
    }

    #[test]
    fn padding_works_on_inner_axes() {
        let a = Tensor::new(vec![1, 1, 2], TensorData::F32(vec![1.0, 2.0])).unwrap();
        let b = Tensor::new(vec![1, 2, 2], TensorData::F32(vec![3.0, 4.0, 5.0, 6.0])).unwrap();
        let s = TensorSpec {
            dtype: DataType::F32,
            shape: vec![-1, -1, 2],
            pad_value: 0.0,
            ..spec(vec![1])
        };
        let out = stack(&[s], vec![vec![a], vec![b]]).unwrap();
        assert_eq!(out[0].shape, vec![2, 2, 2]);
        assert_eq!(
            out[0].data,
            TensorData::F32(vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 5.0, 6.0])
        );
    }

    #[test]
    fn split_returns_each_requests_rows() {
        let out = split(vec![t(vec![3, 2], vec![1, 2, 3, 4, 5, 6])], &[1, 2]).unwrap();
        assert_eq!(out[0], vec![t(vec![1, 2], vec![1, 2])]);
        assert_eq!(out[1], vec![t(vec![2, 2], vec![3, 4, 5, 6])]);
        assert!(split(vec![t(vec![2, 1], vec![1, 2])], &[1, 2]).is_err());
    }

    fn strings(shape: Vec<usize>, v: &[&str]) -> Tensor {
        Tensor::new(shape, TensorData::Bytes(v.iter().collect())).unwrap()
    }

    #[test]
    fn strings_stack_pad_with_empty_strings_and_split_back() {
        let s = TensorSpec {
            dtype: DataType::Bytes,
            pad_value: 0.0,
            ..spec(vec![1])
        };
        let a = strings(vec![1, 1], &["a"]);
        let b = strings(vec![2, 3], &["b", "cc", "d", "", "e", "f"]);
        let out = stack(
            std::slice::from_ref(&s),
            vec![vec![a.clone()], vec![b.clone()]],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![strings(
                vec![3, 3],
                &["a", "", "", "b", "cc", "d", "", "e", "f"]
            )]
        );
        let back = split(out, &[1, 2]).unwrap();
        assert_eq!(back[0], vec![strings(vec![1, 3], &["a", "", ""])]);
        assert_eq!(back[1], vec![b.clone()]);
        let same = stack(&[s], vec![vec![b.clone()], vec![b]]).unwrap();
        assert_eq!(same[0].shape, vec![4, 3]);
        assert_eq!(same[0].data.as_strings().unwrap().get(10), Some(&b"e"[..]));
    }
}
