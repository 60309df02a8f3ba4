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

/// Holds a slot for the whole request, or refuses it.
pub(crate) async fn one_slot_per_request(slots: Slots, request: Request, next: Next) -> Response {
    match slots.try_take() {
        Ok(_slot) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}
