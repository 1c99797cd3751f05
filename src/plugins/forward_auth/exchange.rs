//! One call to the authorization service: a bodiless GET over the gateway's own upstream
//! machinery (the per-worker keep-alive pool and the lean HTTP/1.1 client), bounded in time as
//! a whole and in the size of the body read back.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::proxy::h1_client::{H1Body, H1Error};
use crate::proxy::pool::{self, ConnectError, H1Pooled, PoolSettings};
use crate::snapshot::TargetAddr;

/// Largest auth response body read back (and relayed to the client on a denial).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why no decision came back from the authorization service.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot connect to the authorization service: {0}")]
    Connect(#[from] ConnectError),
    #[error("the authorization service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the authorization service failed: {0}")]
    Http(#[from] H1Error),
}

/// Why the body of an answer could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("not complete within the timeout")]
    Timeout,
    #[error(transparent)]
    Http(#[from] H1Error),
}

/// The authorization service's answer: its head, and its body when it was read completely.
pub struct Answer {
    pub head: http::response::Parts,
    pub body: Result<Bytes, BodyError>,
}

/// Send `request` (no body) to `target` and read the answer, all within `timeout`.
pub async fn call(
    target: &TargetAddr,
    request: &http::request::Parts,
    timeout: Duration,
    settings: &Arc<PoolSettings>,
) -> Result<Answer, ExchangeError> {
    let deadline = Instant::now() + timeout;
    let (head, mut body, lease) = tokio::time::timeout_at(deadline, async {
        let mut replayed = false;
        loop {
            let H1Pooled {
                conn,
                lease,
                reused,
            } = pool::checkout_h1(!replayed, target, timeout, settings).await?;
            match conn.send(request, timeout).await {
                Ok((head, body)) => return Ok((head, body, lease)),
                // A pooled connection the service had closed meanwhile: the GET is idempotent,
                // so it is sent once more on a fresh connection, as the proxy does.
                Err(e) if reused && !replayed && e.nothing_received() => replayed = true,
                Err(e) => return Err(ExchangeError::from(e)),
            }
        }
    })
    .await
    .map_err(|_| ExchangeError::Timeout(timeout))??;

    let body_result = match tokio::time::timeout_at(deadline, read_bounded(&mut body)).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::Timeout),
    };
    if body_result.is_ok()
        && let Some(conn) = body.take_reusable()
    {
        lease.release(conn);
    }
    Ok(Answer {
        head,
        body: body_result,
    })
}

/// The whole body, unless it is larger than [`MAX_BODY_BYTES`].
async fn read_bounded(body: &mut H1Body) -> Result<Bytes, BodyError> {
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}
