//! Stacking the inputs of several requests into one batch (padding declared axes) and
//! splitting batched outputs back into each request's rows. Pure and synchronous; runs on
//! the worker thread so the async side never copies tensors. String inputs pad with the
//! empty string, whatever `pad_value` says (it is a number; load refuses any other for
//! strings).

use super::BatchError;
use crate::spec::{ContextSpec, Feed, TensorSpec};
use crate::tensor::{
    dispatch_dtype, element_count, with_tensor_data, ByteStrings, Element, FromJson, JsonNumber,
    Tensor, TensorData,
};

/// Stacks requests along axis 0. `requests[j][i]` is input `i` of request `j`, already
/// validated against `specs` and of one shape class; request `j` has `rows[j]` rows. An
/// input of one row in a request of more is a broadcast input: its row is repeated to the
/// request's rows here, and nowhere earlier. A single request without one is moved, not
/// copied.
pub fn stack(
    specs: &[TensorSpec],
    mut requests: Vec<Vec<Tensor>>,
    rows: &[usize],
) -> Result<Vec<Tensor>, BatchError> {
    if requests.len() == 1 {
        let request = requests.pop().unwrap_or_default();
        let r = rows.first().copied().unwrap_or(1);
        return specs
            .iter()
            .zip(request)
            .map(|(spec, t)| {
                // A graph that cannot batch has no broadcast input (load refuses it), and its
                // first axis is no row count.
                if t.rows() == r || !spec.broadcast {
                    Ok(t)
                } else {
                    stack_input(spec.pad_value, std::slice::from_ref(&t), &[r])
                }
            })
            .collect();
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
        .map(|(spec, parts)| stack_input(spec.pad_value, &parts, rows))
        .collect()
}

/// Stacks one input of every request: part `j` fills `rows[j]` rows of the result, by
/// itself or, with one row, repeated (a broadcast input).
fn stack_input(pad_value: f64, parts: &[Tensor], rows: &[usize]) -> Result<Tensor, BatchError> {
    let first = parts
        .first()
        .ok_or_else(|| BatchError::Assemble("nothing to stack".into()))?;
    if parts.len() != rows.len() {
        return Err(BatchError::Assemble(format!(
            "{} parts to stack for {} requests",
            parts.len(),
            rows.len()
        )));
    }
    if let Some((p, r)) = parts
        .iter()
        .zip(rows)
        .find(|(p, &r)| p.rows() != r && p.rows() != 1)
    {
        return Err(BatchError::Assemble(format!(
            "an input of {} rows in a request of {r} rows: only a broadcast row repeats",
            p.rows()
        )));
    }
    let mut target = first.shape.clone();
    target[0] = rows.iter().sum();
    for (axis, dim) in target.iter_mut().enumerate().skip(1) {
        *dim = parts
            .iter()
            .map(|p| p.shape.get(axis).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
    }
    dispatch_dtype!(first.dtype(), T => stack_typed::<T>(parts, rows, target, pad_value),
        bytes => stack_strings(parts, rows, target))
}

fn stack_strings(
    parts: &[Tensor],
    rows: &[usize],
    target: Vec<usize>,
) -> Result<Tensor, BatchError> {
    let mut out = ByteStrings::with_capacity(
        element_count(&target),
        parts
            .iter()
            .filter_map(|p| p.data.as_strings())
            .map(ByteStrings::total_bytes)
            .sum(),
    );
    for (p, &r) in parts.iter().zip(rows) {
        let src = p.data.as_strings().ok_or_else(mixed_dtypes)?;
        let repeat = if p.rows() == r { 1 } else { r };
        if p.shape[1..] == target[1..] {
            for _ in 0..repeat {
                out.extend_from(src);
            }
        } else {
            let mut dst = target.clone();
            dst[0] = p.rows();
            let mut padded = ByteStrings::with_capacity(element_count(&dst), src.total_bytes());
            pad_strings(src, 0, &p.shape, &dst, &mut padded);
            for _ in 0..repeat {
                out.extend_from(&padded);
            }
        }
    }
    Ok(Tensor::new(target, TensorData::Bytes(out))?)
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
    rows: &[usize],
    target: Vec<usize>,
    pad: f64,
) -> Result<Tensor, BatchError> {
    let pad = T::from_json(JsonNumber::Float(pad)).unwrap_or_default();
    let mut out = Vec::with_capacity(element_count(&target));
    for (p, &r) in parts.iter().zip(rows) {
        let src = T::slice(&p.data).ok_or_else(mixed_dtypes)?;
        let start = out.len();
        if p.shape[1..] == target[1..] {
            out.extend_from_slice(src);
        } else {
            let mut dst = target.clone();
            dst[0] = p.rows();
            pad_block(src, &p.shape, &dst, pad, &mut out);
        }
        if p.rows() != r {
            // A broadcast row: the padded copy just written, repeated to the request's rows.
            let end = out.len();
            for _ in 1..r {
                out.extend_from_within(start..end);
            }
        }
    }
    Ok(Tensor::new(target, T::wrap(out))?)
}

fn mixed_dtypes() -> BatchError {
    BatchError::Assemble("inputs of one batch differ in datatype".into())
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

/// The context step of a context model's batch: stacks the context inputs of every request
/// (one row from a request that sent its context once, its rows from one that repeated
/// it), runs the context graph once on them (`run`), and returns each request's scorer
/// inputs in the scorer's order: its own per-row inputs and its rows of the context
/// outputs (one row, repeated to the request's rows by [`stack`] like any broadcast row).
pub fn run_context(
    context: &ContextSpec,
    requests: Vec<Vec<Tensor>>,
    rows: &[usize],
    run: impl FnOnce(Vec<Tensor>) -> Result<Vec<Tensor>, BatchError>,
) -> Result<Vec<Vec<Tensor>>, BatchError> {
    // A request's context rows: 1 when every context input came once, else its rows (an
    // input sent once beside one sent repeated is repeated to match).
    let context_rows: Vec<usize> = requests
        .iter()
        .zip(rows)
        .map(|(inputs, &r)| {
            let sent_once = context
                .inputs
                .iter()
                .all(|&i| inputs.get(i).is_some_and(|t| t.rows() == 1));
            if sent_once {
                1
            } else {
                r
            }
        })
        .collect();
    let context_inputs: Vec<Vec<Tensor>> = requests
        .iter()
        .map(|inputs| {
            context
                .inputs
                .iter()
                .map(|&i| {
                    inputs.get(i).cloned().ok_or_else(|| {
                        BatchError::Assemble("a request lacks a context input".into())
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let stacked = stack(&context.input_specs, context_inputs, &context_rows)?;
    let outputs = run(stacked)?;
    let mut per_request = split(outputs, &context_rows)?.into_iter();
    let mut scorer = Vec::with_capacity(requests.len());
    for mut inputs in requests {
        let mut fed = per_request
            .next()
            .ok_or_else(|| {
                BatchError::Assemble("the context graph answered fewer requests than it ran".into())
            })?
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        let mut own: Vec<Option<Tensor>> = inputs.drain(..).map(Some).collect();
        let mut request = Vec::with_capacity(context.feeds.len());
        for (at, feed) in context.feeds.iter().enumerate() {
            let t = match *feed {
                // An input only the scorer takes is moved; one both graphs take is shared.
                Feed::Client(i) if !context.inputs.contains(&i) => own[i].take(),
                Feed::Client(i) => own[i].clone(),
                Feed::Context(o) => fed.get_mut(o).and_then(Option::take),
            };
            request.push(
                t.ok_or_else(|| BatchError::Assemble(format!("scorer input {at} has no tensor")))?,
            );
        }
        scorer.push(request);
    }
    Ok(scorer)
}

/// Splits a request's inputs (`total` rows) into parts of `sizes` rows for batches of
/// their own. A broadcast input (one row in a request of more) goes whole to every part.
pub fn split_request(
    inputs: Vec<Tensor>,
    total: usize,
    sizes: &[usize],
) -> Result<Vec<Vec<Tensor>>, BatchError> {
    let count = inputs.len();
    let (per_row, broadcast): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .enumerate()
        .partition(|(_, t)| t.rows() == total);
    let (positions, tensors): (Vec<usize>, Vec<Tensor>) = per_row.into_iter().unzip();
    let mut parts = if tensors.is_empty() {
        sizes.iter().map(|_| Vec::new()).collect()
    } else {
        split(tensors, sizes)?
    };
    for part in &mut parts {
        let mut slots: Vec<Option<Tensor>> = vec![None; count];
        for (&at, t) in positions.iter().zip(part.drain(..)) {
            slots[at] = Some(t);
        }
        for (at, t) in &broadcast {
            slots[*at] = Some(t.clone());
        }
        *part = slots.into_iter().flatten().collect();
    }
    Ok(parts)
}

/// Splits each batched output into consecutive row ranges of `rows`. Returns one vector of
/// outputs per request. A single request gets the outputs moved.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, BatchError> {
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
            return Err(BatchError::Assemble(format!(
                "output of shape {:?} does not have the batch's {total} rows on axis 0",
                out.shape
            )));
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
            broadcast: false,
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
            &[1, 2],
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
            &[1, 2],
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
        let out = stack(&[s], vec![vec![a], vec![b]], &[1, 1]).unwrap();
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
            &[1, 2],
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
        let same = stack(&[s], vec![vec![b.clone()], vec![b]], &[2, 2]).unwrap();
        assert_eq!(same[0].shape, vec![4, 3]);
        assert_eq!(same[0].data.as_strings().unwrap().get(10), Some(&b"e"[..]));
    }

    #[test]
    fn a_broadcast_row_repeats_to_its_requests_rows_padded_like_the_rest() {
        // Request 0 sends its one row for 3 rows; request 1 has 2 rows of its own.
        let out = stack(
            &[spec(vec![1])],
            vec![
                vec![t(vec![1, 1], vec![7])],
                vec![t(vec![2, 2], vec![1, 2, 3, 4])],
            ],
            &[3, 2],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![t(vec![5, 2], vec![7, -1, 7, -1, 7, -1, 1, 2, 3, 4])]
        );
        // Alone, the row is repeated too (nothing else would do it).
        let declared = TensorSpec {
            broadcast: true,
            ..spec(vec![])
        };
        let alone = stack(&[declared], vec![vec![t(vec![1, 2], vec![5, 6])]], &[2]).unwrap();
        assert_eq!(alone, vec![t(vec![2, 2], vec![5, 6, 5, 6])]);
        let s = TensorSpec {
            dtype: DataType::Bytes,
            pad_value: 0.0,
            ..spec(vec![1])
        };
        let words = stack(
            &[s],
            vec![
                vec![strings(vec![1, 1], &["a"])],
                vec![strings(vec![1, 2], &["b", "c"])],
            ],
            &[2, 1],
        )
        .unwrap();
        assert_eq!(
            words,
            vec![strings(vec![3, 2], &["a", "", "a", "", "b", "c"])]
        );
        // Any other mismatch is a bug upstream, refused rather than guessed at.
        assert!(stack(
            &[spec(vec![])],
            vec![
                vec![t(vec![2, 1], vec![1, 2])],
                vec![t(vec![1, 1], vec![3])]
            ],
            &[3, 1]
        )
        .is_err());
    }

    #[test]
    fn the_context_graph_runs_once_on_every_requests_context_rows() {
        // Client inputs: 0 = context (broadcast), 1 = per-row; the scorer takes the
        // per-row input and the context output, in that order.
        let context_input = TensorSpec {
            broadcast: true,
            ..spec(vec![])
        };
        let fed = TensorSpec {
            name: "c".into(),
            broadcast: true,
            ..spec(vec![])
        };
        let context = ContextSpec {
            file: "context.onnx".into(),
            inputs: vec![0],
            input_specs: vec![context_input],
            outputs: vec![fed.clone()],
            scorer_inputs: vec![spec(vec![]), fed],
            feeds: vec![Feed::Client(1), Feed::Context(0)],
        };
        // Request 0 sends its context once for 3 rows, request 1 repeats it on 2 rows.
        let requests = vec![
            vec![t(vec![1, 1], vec![5]), t(vec![3, 1], vec![1, 2, 3])],
            vec![t(vec![2, 1], vec![6, 6]), t(vec![2, 1], vec![4, 5])],
        ];
        let mut ran = Vec::new();
        let scorer = run_context(&context, requests, &[3, 2], |stacked| {
            ran.push(stacked[0].clone());
            // The "context graph": ten times its input.
            let TensorData::I64(v) = &stacked[0].data else {
                return Err(BatchError::Assemble("not INT64".into()));
            };
            let v = v.iter().map(|x| x * 10).collect();
            Ok(vec![t(stacked[0].shape.clone(), v)])
        })
        .unwrap();
        assert_eq!(
            ran,
            vec![t(vec![3, 1], vec![5, 6, 6])],
            "1 + 2 context rows, one run"
        );
        assert_eq!(
            scorer,
            vec![
                vec![t(vec![3, 1], vec![1, 2, 3]), t(vec![1, 1], vec![50])],
                vec![t(vec![2, 1], vec![4, 5]), t(vec![2, 1], vec![60, 60])],
            ]
        );
        let stacked = stack(&context.scorer_inputs, scorer, &[3, 2]).unwrap();
        assert_eq!(stacked[1], t(vec![5, 1], vec![50, 50, 50, 60, 60]));
    }

    #[test]
    fn a_split_request_sends_its_broadcast_row_to_every_part() {
        let inputs = vec![t(vec![1, 2], vec![8, 9]), t(vec![3, 1], vec![1, 2, 3])];
        let parts = split_request(inputs, 3, &[2, 1]).unwrap();
        assert_eq!(
            parts,
            vec![
                vec![t(vec![1, 2], vec![8, 9]), t(vec![2, 1], vec![1, 2])],
                vec![t(vec![1, 2], vec![8, 9]), t(vec![1, 1], vec![3])],
            ]
        );
    }
}
