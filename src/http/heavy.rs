//! Heavy reads (reports, exports, costs, frontiers, optimizations) a few at a time: each
//! reads a range of builds and may replay it, so a client that sends many at once, or
//! holds exports open without reading them, gets 503 with `Retry-After` for the ones past
//! its share instead of taking every read connection and core from the others.

use super::errors::ApiError;
use super::peers::{PeerLimit, Slot};
use actix_web::HttpRequest;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Heavy reads one peer address may have in flight.
pub const PER_PEER: usize = 4;

/// The limits, shared by every handler.
#[derive(Clone)]
pub struct HeavyReads {
    all: Arc<Semaphore>,
    per_peer: PeerLimit,
}

/// A heavy read's place; dropping it (the answer sent, or the client gone) frees it.
pub struct Permit {
    _all: OwnedSemaphorePermit,
    _peer: Option<Slot>,
}

impl HeavyReads {
    /// At most `max` heavy reads at once in all, [`PER_PEER`] of them from one address.
    pub fn new(max: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max.max(1))),
            per_peer: PeerLimit::new(PER_PEER),
        }
    }

    /// A place for one more heavy read of this request's peer, or 503.
    pub fn admit(&self, req: &HttpRequest) -> Result<Permit, ApiError> {
        let peer = match req.peer_addr() {
            Some(addr) => Some(
                self.per_peer
                    .admit(addr.ip())
                    .ok_or(ApiError::Overloaded { retry_after: 5 })?,
            ),
            None => None,
        };
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded { retry_after: 5 })?;
        Ok(Permit {
            _all: all,
            _peer: peer,
        })
    }
}
