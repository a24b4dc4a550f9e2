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

/// How long a heavy answer is waited for before its headers go out.
const FIRST_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a long answer sends a space (JSON and HTML allow leading whitespace) while
/// its work runs.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers with what `work` (a replay of recorded history) makes, in `content_type`. Work
/// done within a second answers as usual (its error with its own status). Longer work
/// answers 200 at once and sends a space every second until the body follows: the server
/// only learns that a client left when a write to it fails, and a failed write drops
/// `work` (a replay stops at its next check, its places are freed). When `stopping` is
/// cancelled (the service is told to stop) the work is dropped too and the client told to
/// come back (503), instead of holding the shutdown for the drain timeout. Work that fails
/// after the answer began ends it broken (the client sees a cut transfer, never a whole
/// body) and logs why.
pub async fn answer_while_working<F>(
    stopping: tokio_util::sync::CancellationToken,
    content_type: &'static str,
    work: F,
) -> Result<actix_web::HttpResponse, ApiError>
where
    F: std::future::Future<Output = Result<actix_web::web::Bytes, ApiError>> + 'static,
{
    use actix_web::web::Bytes;
    let mut work = Box::pin(async move {
        tokio::select! {
            out = work => out,
            _ = stopping.cancelled() => Err(ApiError::Unavailable(
                "the service is stopping; ask another replica or try again".into(),
            )),
        }
    });
    if let Ok(done) = tokio::time::timeout(FIRST_WAIT, &mut work).await {
        return Ok(actix_web::HttpResponse::Ok()
            .content_type(content_type)
            .body(done?));
    }
    let body = futures_util::stream::unfold(Some(work), |state| async move {
        let mut work = state?;
        tokio::select! {
            done = &mut work => Some((
                done.map_err(|e| {
                    tracing::warn!(error = %e, "a long answer failed after it began; it ends cut");
                    std::io::Error::other("the answer failed after it began")
                }),
                None,
            )),
            _ = tokio::time::sleep(HEARTBEAT) => Some((Ok(Bytes::from_static(b" ")), Some(work))),
        }
    });
    Ok(actix_web::HttpResponse::Ok()
        .content_type(content_type)
        .streaming(body))
}
