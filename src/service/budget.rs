//! The server-wide budget of in-flight request bytes (`--max-inflight-bytes`), one for
//! every transport: HTTP bodies and gRPC messages (unary and streamed) take from it before
//! they are decoded, and give back when answered. A request that alone is larger than the
//! budget can never fit (413 / RESOURCE_EXHAUSTED); one that does not fit now could later
//! (503 + Retry-After / UNAVAILABLE). Knows no transport: the transports map [`Refusal`].
//! Past its body, a request holds what decoding and answering build (its tensors, its
//! encoded answer) as [`Hold`]s on the same charge, resized as they change, and its
//! answer's body ([`Charged`], any transport's) holds the charge until it is written.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

use crate::error::Error;

/// Bytes every request together may hold; shared by all connections of one server.
#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
    /// `mlpserve_inflight_refusals_total{source, refusal}`, when the server counts them.
    refusals: Option<prometheus::IntCounterVec>,
}

/// Why bytes were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request alone holds more than the whole budget: it can never be admitted.
    NeverFits,
    /// Other requests hold the budget now; the request could be admitted later.
    NotNow,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicUsize::new(0),
            refusals: None,
        })
    }

    /// A budget that counts each request's first refusal in `refusals` (labels `source`,
    /// `refusal`).
    pub fn counted(limit: usize, refusals: prometheus::IntCounterVec) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicUsize::new(0),
            refusals: Some(refusals),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held right now by every request together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A new, empty charge for one request (or one stream); `source` labels its refusal
    /// (`http`, `grpc`, `working_memory`).
    pub fn charge(self: &Arc<ByteBudget>, source: &'static str) -> Arc<Charge> {
        Arc::new(Charge {
            source,
            budget: self.clone(),
            taken: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            refused: AtomicU8::new(0),
        })
    }

    /// Takes `n` bytes if they fit; all or nothing.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// The error a refusal answers with, naming the limit.
    pub fn error(&self, refusal: Refusal) -> Error {
        match refusal {
            Refusal::NeverFits => Error::TooLarge(format!(
                "the request needs more than the server's whole in-flight budget of {} bytes (--max-inflight-bytes); it can never be admitted, send less per request",
                self.limit
            )),
            Refusal::NotNow => Error::Unavailable(format!(
                "the server holds its limit of {} in-flight request bytes (--max-inflight-bytes); retry later",
                self.limit
            )),
        }
    }
}

/// What a request's estimated working memory in ONNX Runtime came to, for the refusal.
#[derive(Debug, Clone)]
pub struct WorkEstimate<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub work: crate::spec::Work,
    /// Bytes per padded element, and whether that figure was measured at load.
    pub bytes_per_element: usize,
    pub measured: bool,
}

impl ByteBudget {
    /// The error a refused working-memory charge answers with, naming the estimate, how it
    /// was made and the limit.
    pub fn work_error(&self, refusal: Refusal, e: &WorkEstimate<'_>) -> Error {
        let how = if e.measured { "measured" } else { "assumed" };
        let estimate = format!(
            "model '{}' version {}: this request needs an estimated {} bytes of ONNX Runtime working memory ({} row(s) of {} padded elements, {} bytes per element {how} at load)",
            e.model, e.version, e.work.bytes, e.work.rows, e.work.width, e.bytes_per_element
        );
        match refusal {
            Refusal::NeverFits => Error::TooLarge(format!(
                "{estimate}, more than the server's whole in-flight budget of {} bytes (--max-inflight-bytes) even one batch at a time; it can never be admitted, send fewer or shorter rows",
                self.limit
            )),
            Refusal::NotNow => Error::Unavailable(format!(
                "{estimate}, and other requests hold the server's in-flight budget of {} bytes (--max-inflight-bytes) now; retry later",
                self.limit
            )),
        }
    }
}

/// What one request (or one gRPC stream) holds of the budget; all of it is given back on
/// drop. Shared between the body reader that takes and the handler that gives back.
#[derive(Debug)]
pub struct Charge {
    /// What the charge is for, as the refusal metric labels it.
    source: &'static str,
    budget: Arc<ByteBudget>,
    taken: AtomicUsize,
    /// Every byte ever taken (never decreases): a stream tells its messages' sizes by it.
    received: AtomicUsize,
    /// The first refusal: 0 none, 1 never fits, 2 not now.
    refused: AtomicU8,
}

impl Charge {
    /// Takes `n` more bytes for this request, or says why not (and remembers it).
    pub fn take(&self, n: usize) -> Result<(), Refusal> {
        let held = self.taken.load(Ordering::Acquire);
        let refusal = if held.saturating_add(n) > self.budget.limit {
            Refusal::NeverFits
        } else if self.budget.try_take(n) {
            self.taken.fetch_add(n, Ordering::AcqRel);
            self.received.fetch_add(n, Ordering::AcqRel);
            return Ok(());
        } else {
            Refusal::NotNow
        };
        self.refuse(refusal);
        Err(refusal)
    }

    /// Records a refusal decided without taking (a gRPC message declared larger than the
    /// whole budget); the first one of a charge is remembered and counted.
    pub fn refuse(&self, refusal: Refusal) {
        let (code, label) = match refusal {
            Refusal::NeverFits => (1, "never_fits"),
            Refusal::NotNow => (2, "not_now"),
        };
        let first = self
            .refused
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if let (true, Some(counter)) = (first, &self.budget.refusals) {
            counter.with_label_values(&[self.source, label]).inc();
        }
    }

    /// Gives back up to `n` bytes (a stream's answered message) before the charge drops.
    pub fn give(&self, n: usize) {
        let given = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t - t.min(n)))
            .map_or(0, |before| before.min(n));
        self.budget.give(given);
    }

    /// Bytes this charge holds now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Every byte this charge has taken so far, given back or not.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Acquire)
    }

    /// The first refusal this charge met, if any.
    pub fn refused(&self) -> Option<Refusal> {
        match self.refused.load(Ordering::Acquire) {
            1 => Some(Refusal::NeverFits),
            2 => Some(Refusal::NotNow),
            _ => None,
        }
    }

    /// The budget this charge draws from.
    pub fn budget(&self) -> &ByteBudget {
        &self.budget
    }
}

/// Bytes `tensors` hold, as a request's [`Hold`] charges them.
pub fn tensor_bytes<'a>(tensors: impl IntoIterator<Item = &'a crate::tensor::Tensor>) -> usize {
    tensors
        .into_iter()
        .map(|t| t.data.memory_bytes() + std::mem::size_of_val(t.shape.as_slice()))
        .sum()
}

/// One thing a request holds beyond its body (its decoded tensors, then its answer), as a
/// part of the request's [`Charge`]: resized as the thing changes, given back on drop, or
/// left on the charge with [`Hold::keep`] until the whole request is done. A hold without
/// a charge (a route nothing charges) takes nothing.
#[derive(Debug)]
pub struct Hold {
    charge: Option<Arc<Charge>>,
    bytes: usize,
}

impl Hold {
    pub fn new(charge: Option<Arc<Charge>>) -> Hold {
        Hold { charge, bytes: 0 }
    }

    /// A hold of `bytes` already taken on `charge` (a message its transport charged as it
    /// arrived), given back when the hold drops.
    pub fn taken(charge: Option<Arc<Charge>>, bytes: usize) -> Hold {
        Hold { charge, bytes }
    }

    /// The charge this hold is a part of.
    pub fn charge(&self) -> Option<Arc<Charge>> {
        self.charge.clone()
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes the hold `n` bytes: takes what it grows by (all or nothing; on a refusal the
    /// hold is unchanged), gives back what it shrinks by.
    pub fn resize(&mut self, n: usize) -> Result<(), Refusal> {
        let Some(charge) = &self.charge else {
            return Ok(());
        };
        if n > self.bytes {
            charge.take(n - self.bytes)?;
        } else {
            charge.give(self.bytes - n);
        }
        self.bytes = n;
        Ok(())
    }

    /// Reserves an estimate of `n` bytes before the thing is built, so that building it
    /// cannot run over the budget: refused when it does not fit now; an estimate that
    /// alone would never fit is not a refusal (the estimate may be high), the actual size
    /// set by [`Hold::resize`] decides. Nothing is remembered of a refusal here.
    pub fn reserve(&mut self, n: usize) -> Result<(), Refusal> {
        let Some(charge) = &self.charge else {
            return Ok(());
        };
        if n <= self.bytes {
            return Ok(());
        }
        let grow = n - self.bytes;
        if charge.taken().saturating_add(grow) > charge.budget.limit {
            return Ok(());
        }
        if !charge.budget.try_take(grow) {
            charge.refuse(Refusal::NotNow);
            return Err(Refusal::NotNow);
        }
        charge.taken.fetch_add(grow, Ordering::AcqRel);
        charge.received.fetch_add(grow, Ordering::AcqRel);
        self.bytes = n;
        Ok(())
    }

    /// [`Hold::resize`], refused with the error the request answers (naming the limit).
    pub fn set(&mut self, n: usize) -> Result<(), Error> {
        self.resize(n).map_err(|r| self.error(r))
    }

    /// [`Hold::reserve`], refused with the error the request answers (naming the limit).
    pub fn estimate(&mut self, n: usize) -> Result<(), Error> {
        self.reserve(n).map_err(|r| self.error(r))
    }

    fn error(&self, refusal: Refusal) -> Error {
        match &self.charge {
            Some(charge) => charge.budget.error(refusal),
            None => Error::Internal("a hold without a charge was refused".to_string()),
        }
    }

    /// Leaves the held bytes on the charge, given back when the charge drops (an answer
    /// held until it is written).
    pub fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(charge) = &self.charge {
            charge.give(self.bytes);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(*self.taken.get_mut());
    }
}

/// A response body that holds its request's charge until it has been written to its end
/// (or dropped, when the client went away first): what the answer's bytes and the
/// request's tensors took stays taken while the transport still holds them. One wrapper
/// for every transport's body type (HTTP's and gRPC's).
pub struct Charged<B> {
    inner: B,
    charge: Option<Arc<Charge>>,
}

impl<B> Charged<B> {
    pub fn new(inner: B, charge: Arc<Charge>) -> Charged<B> {
        Charged {
            inner,
            charge: Some(charge),
        }
    }
}

impl<B: Body + Unpin> Body for Charged<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // Written: the charge is given back now, not when the connection drops the body.
            this.charge = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_all_or_nothing_and_given_back() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5), "6 + 5 is over 10");
        assert!(budget.try_take(4));
        budget.give(10);
        assert!(budget.try_take(10));
    }

    #[test]
    fn a_charge_tells_never_from_not_now_and_gives_back_on_drop() {
        let budget = ByteBudget::new(10);
        let a = budget.charge("http");
        assert_eq!(a.take(6), Ok(()));
        let b = budget.charge("http");
        assert_eq!(b.take(5), Err(Refusal::NotNow));
        assert_eq!(b.refused(), Some(Refusal::NotNow));
        assert_eq!(a.take(5), Err(Refusal::NeverFits), "6 + 5 alone is over 10");
        a.give(100);
        assert_eq!(a.taken(), 0);
        assert_eq!(a.received(), 6);
        assert_eq!(b.take(10), Ok(()));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_hold_grows_and_shrinks_on_its_charge_and_gives_back_on_drop() {
        let budget = ByteBudget::new(10);
        let charge = budget.charge("http");
        charge.take(4).unwrap();
        let mut hold = Hold::new(Some(charge.clone()));
        assert_eq!(hold.resize(5), Ok(()));
        assert_eq!(budget.used(), 9);
        assert_eq!(hold.resize(7), Err(Refusal::NeverFits), "4 + 7 is over 10");
        assert_eq!(hold.bytes(), 5, "unchanged by a refusal");
        assert_eq!(hold.resize(2), Ok(()));
        assert_eq!(budget.used(), 6);
        drop(hold);
        assert_eq!(budget.used(), 4);
        let mut kept = Hold::new(Some(charge.clone()));
        kept.resize(3).unwrap();
        kept.keep();
        assert_eq!(budget.used(), 7, "kept on the charge");
        drop(charge);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reservation_refuses_only_what_does_not_fit_now() {
        let budget = ByteBudget::new(10);
        let other = budget.charge("http");
        other.take(6).unwrap();
        let charge = budget.charge("http");
        let mut hold = Hold::new(Some(charge.clone()));
        assert_eq!(
            hold.reserve(11),
            Ok(()),
            "an estimate over the budget decides nothing"
        );
        assert_eq!(hold.bytes(), 0);
        assert_eq!(hold.reserve(5), Err(Refusal::NotNow));
        assert_eq!(charge.refused(), Some(Refusal::NotNow));
        assert_eq!(hold.reserve(4), Ok(()));
        assert_eq!(budget.used(), 10);
        assert_eq!(Hold::new(None).reserve(100), Ok(()));
    }
}
