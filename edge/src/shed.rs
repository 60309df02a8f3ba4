//! Load shedding: a fixed number of request slots; a request that finds none free is refused at
//! once with 503 (the client retries or fails over) instead of queueing behind slow ones and
//! answering after the client has given up.
//!
//! Where the slot is taken is the caller's choice: the extender takes it for the whole request
//! ([`crate::ApiLimits`]); the webhook takes it only once the body is in, so clients that
//! trickle bodies hold none.

use std::sync::Arc;

use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests in flight; retry")]
pub struct Overloaded;

impl From<Overloaded> for ApiError {
    fn from(e: Overloaded) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// Request slots, shared by clones.
#[derive(Debug, Clone)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    /// `n` slots (at least one).
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self(Arc::new(Semaphore::new(n.max(1))))
    }

    /// Takes a slot, held until the returned permit is dropped.
    ///
    /// # Errors
    /// [`Overloaded`] when none is free; never waits.
    pub fn try_take(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        Arc::clone(&self.0).try_acquire_owned().map_err(|_| Overloaded)
    }
}

/// A budget of bytes in flight, shared by clones: for work whose memory grows with its input,
/// where a count of requests bounds nothing (one request may be 64 KiB or 7 MiB).
#[derive(Debug, Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

impl Budget {
    /// A budget of `bytes` (rounded up to whole KiB; at least one).
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        let total_kib = bytes.div_ceil(1024).clamp(1, Semaphore::MAX_PERMITS);
        Self { kib: Arc::new(Semaphore::new(total_kib)), total_kib }
    }

    /// Takes `bytes` of the budget, held until the returned permit is dropped. Work larger than
    /// the whole budget takes all of it, so it runs alone rather than never.
    ///
    /// # Errors
    /// [`Overloaded`] when not enough is left; never waits.
    pub fn try_take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Overloaded> {
        let kib = bytes.div_ceil(1024).clamp(1, self.total_kib);
        let kib = u32::try_from(kib).map_err(|_| Overloaded)?;
        Arc::clone(&self.kib).try_acquire_many_owned(kib).map_err(|_| Overloaded)
    }
}

/// Holds a slot for the whole request, or refuses it.
pub(crate) async fn one_slot_per_request(slots: Slots, request: Request, next: Next) -> Response {
    match slots.try_take() {
        Ok(_slot) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_does_not_fit_until_it_is_given_back() {
        let budget = Budget::new(100 * 1024);
        let first = budget.try_take(60 * 1024).expect("60 KiB of 100 fit");
        assert_eq!(budget.try_take(60 * 1024).err(), Some(Overloaded));
        let small = budget.try_take(40 * 1024).expect("the other 40 KiB fit");
        drop(first);
        drop(small);
        assert!(budget.try_take(100 * 1024).is_ok(), "all of it is back");
    }

    #[test]
    fn work_larger_than_the_whole_budget_takes_all_of_it() {
        let budget = Budget::new(10 * 1024);
        let whole = budget.try_take(7 << 20).expect("runs alone");
        assert_eq!(budget.try_take(1).err(), Some(Overloaded));
        drop(whole);
        assert!(budget.try_take(1).is_ok());
    }
}
