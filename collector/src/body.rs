//! Reading a request body under three bounds: its size, its time, and the memory all bodies in
//! flight hold together.
//!
//! - A `Content-Length` over the size limit is refused (413) before a byte of the body is read; a
//!   body without one is cut off at the limit as it arrives.
//! - The whole body must arrive within the body timeout (408 `body_timeout`, connection closed), so
//!   a client that stops sending mid-body cannot hold its buffer for ever.
//! - Every byte held, as received and later as decompressed, is counted against one global bound
//!   ([`InflightBytes`]): a declared `Content-Length` whole before its buffer is allocated, a body
//!   without one frame by frame. A request that would pass the bound gets 503 `overloaded` with
//!   `Retry-After: 1` at once instead of waiting, and what it held is released when its answer is
//!   sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use qoe_schemas::wire::WireError;

use crate::error::ApiError;

/// The global bound on bytes of request bodies held at once.
#[derive(Debug, Clone)]
pub struct InflightBytes {
    semaphore: Arc<Semaphore>,
    limit: u64,
    gauge: IntGauge,
}

/// Bytes one request holds against [`InflightBytes`]; released when dropped.
#[derive(Debug)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    bound: InflightBytes,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.bound.update_gauge();
    }
}

impl InflightBytes {
    /// A bound of `limit` bytes, reported in `gauge`.
    pub fn new(limit: u64, gauge: IntGauge) -> InflightBytes {
        let permits = (limit as usize).min(Semaphore::MAX_PERMITS);
        InflightBytes {
            semaphore: Arc::new(Semaphore::new(permits)),
            limit: permits as u64,
            gauge,
        }
    }

    /// Nothing held yet.
    pub fn hold_nothing(&self) -> Held {
        Held {
            permit: None,
            bound: self.clone(),
        }
    }

    /// Adds `bytes` to what `held` holds, or refuses at once when the bound would be passed.
    pub fn hold(&self, held: &mut Held, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let overloaded = || ApiError::Overloaded { limit: self.limit };
        let bytes = u32::try_from(bytes).map_err(|_| overloaded())?;
        let permit = Arc::clone(&self.semaphore)
            .try_acquire_many_owned(bytes)
            .map_err(|_| overloaded())?;
        match &mut held.permit {
            Some(existing) => existing.merge(permit),
            None => held.permit = Some(permit),
        }
        self.update_gauge();
        Ok(())
    }

    /// Gives back what `held` holds beyond `keep` bytes (after a reservation turned out larger than
    /// what was used).
    pub fn release_beyond(&self, held: &mut Held, keep: usize) {
        if let Some(permit) = &mut held.permit {
            let excess = permit.num_permits().saturating_sub(keep);
            drop(permit.split(excess));
        }
        self.update_gauge();
    }

    fn update_gauge(&self) {
        let available = self.semaphore.available_permits() as u64;
        self.gauge.set(self.limit.saturating_sub(available) as i64);
    }
}

/// Reads `body` whole: at most `max_bytes`, within `timeout`, each frame counted in `held`.
/// `content_length` is the request's declared length, refused up front when over `max_bytes`.
pub async fn read(
    body: Body,
    content_length: Option<u64>,
    max_bytes: usize,
    timeout: Duration,
    bound: &InflightBytes,
    held: &mut Held,
) -> Result<Bytes, ApiError> {
    if let Some(declared) = content_length {
        if declared > max_bytes as u64 {
            return Err(ApiError::Wire(WireError::BodyTooLarge {
                size: usize::try_from(declared).unwrap_or(usize::MAX),
                limit: max_bytes,
            }));
        }
    }
    // A declared length is held whole before its buffer is allocated, so the allocation is inside
    // the bound; a body without one is held frame by frame as it grows.
    let declared = content_length.map(|length| length as usize);
    if let Some(declared) = declared {
        bound.hold(held, declared)?;
    }
    let reading = async {
        let mut body = body;
        let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| WireError::Malformed(format!("could not be read: {error}")))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buffer.len() + data.len() > max_bytes {
                return Err(ApiError::Wire(WireError::BodyTooLarge {
                    size: buffer.len() + data.len(),
                    limit: max_bytes,
                }));
            }
            if declared.is_none() {
                bound.hold(held, data.len())?;
            }
            buffer.extend_from_slice(&data);
        }
        Ok(buffer.freeze())
    };
    match tokio::time::timeout(timeout, reading).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::BodyTimeout {
            secs: timeout.as_secs(),
        }),
    }
}
