//! Admission of inference messages on the gRPC port: the request body of `ModelInfer` and
//! `ModelStreamInfer` takes its bytes from the service's in-flight budget as they arrive,
//! before tonic buffers or decodes them. Over budget the body fails with the status the
//! call answers: RESOURCE_EXHAUSTED when the message alone is larger than the budget,
//! UNAVAILABLE when it could fit later. The call's [`Charge`] rides in the request's
//! extensions, so the handlers add what decoding and answering build to it and a stream
//! gives back each message's bytes once it is decoded; the response body
//! ([`Charged`], shared with HTTP) holds the charge until the answer is written.
//!
//! [`Charged`]: crate::service::budget::Charged

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::service::budget::{ByteBudget, Charge, Refusal};

/// RPCs whose messages are charged: the ones that carry tensors.
pub fn charged(path: &str) -> bool {
    matches!(
        path,
        "/inference.GRPCInferenceService/ModelInfer"
            | "/inference.GRPCInferenceService/ModelStreamInfer"
    )
}

/// The status a refusal answers with, naming the limit.
pub fn status(budget: &ByteBudget, refusal: Refusal) -> tonic::Status {
    let message = budget.error(refusal).to_string();
    match refusal {
        Refusal::NeverFits => tonic::Status::resource_exhausted(message),
        Refusal::NotNow => tonic::Status::unavailable(message),
    }
}

/// A request body whose data frames are taken from `charge` (when set) as they arrive.
/// It also reads each message's 5-byte length prefix, so a message declared larger than
/// the whole budget is refused at its first frame, not once the budget ran out.
pub struct Counted {
    inner: Incoming,
    charge: Option<Arc<Charge>>,
    /// Bytes of the current message's prefix seen so far, and the prefix itself.
    prefix: [u8; 5],
    prefix_seen: usize,
    /// Payload bytes of the current message still to come.
    payload_left: usize,
}

impl Counted {
    pub fn new(inner: Incoming, charge: Option<Arc<Charge>>) -> Counted {
        Counted {
            inner,
            charge,
            prefix: [0; 5],
            prefix_seen: 0,
            payload_left: 0,
        }
    }

    /// The largest message declared by a prefix completed in `data`.
    fn declared(&mut self, mut data: &[u8]) -> usize {
        let mut largest = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_seen).min(data.len());
            self.prefix[self.prefix_seen..self.prefix_seen + n].copy_from_slice(&data[..n]);
            self.prefix_seen += n;
            data = &data[n..];
            if self.prefix_seen == 5 {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                largest = largest.max(len + 5);
                self.payload_left = len;
                self.prefix_seen = 0;
            }
        }
        largest
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some(data), Some(charge)) = (frame.data_ref(), this.charge.clone()) {
            let declared = this.declared(data);
            let refused = if declared > charge.budget().limit() {
                charge.refuse(Refusal::NeverFits);
                Err(Refusal::NeverFits)
            } else {
                charge.take(data.len())
            };
            if let Err(refusal) = refused {
                // tonic answers a body error that is a Status with that status.
                return Poll::Ready(Some(Err(Box::new(status(charge.budget(), refusal)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
