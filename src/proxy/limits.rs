//! Client-side limits of the HTTP/1 listeners: the settings, the per-node connection slots, and
//! the one type that names every way a request is refused for breaking them
//! ([`Violation`]; see `docs/limits.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;

/// Limits on what a client may send (node settings, from flags).
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Longest request line (method, target and version), in bytes: 414 above.
    pub max_request_line: usize,
    /// Largest request head (request line, header lines and the blank line), in bytes: 431 above.
    pub max_head_size: usize,
    /// Most header lines in one request head: 431 above.
    pub max_headers: usize,
    /// Largest request body, in bytes (`u64::MAX`: no limit): 413 above.
    pub max_body_size: u64,
    /// Time allowed to receive the rest of a request head once its first byte arrived: 408.
    pub header_timeout: Duration,
    /// Most client connections open at once on this node (0: no limit).
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_request_line: 8 << 10,
            max_head_size: 32 << 10,
            max_headers: 100,
            max_body_size: 100 << 20,
            header_timeout: Duration::from_secs(60),
            max_connections: 16_384,
        }
    }
}

/// Why a request was refused before the gateway handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// The request line is longer than `max_request_line`.
    UriTooLong,
    /// The request head is larger than `max_head_size` (or a trailer section is).
    HeadTooLarge,
    /// More header lines than `max_headers`.
    TooManyHeaders,
    /// The body is (or announces itself as) larger than `max_body_size`.
    BodyTooLarge,
    /// The head was not complete within the header timeout.
    HeaderTimeout,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    VersionNotSupported,
    /// A transfer coding other than `chunked`.
    TransferCodingNotSupported,
    /// Malformed framing or syntax; the text says what.
    Malformed(&'static str),
}

impl Violation {
    pub fn status(&self) -> StatusCode {
        match self {
            Violation::UriTooLong => StatusCode::URI_TOO_LONG,
            Violation::HeadTooLarge | Violation::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Violation::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Violation::HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            Violation::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Violation::TransferCodingNotSupported => StatusCode::NOT_IMPLEMENTED,
            Violation::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Violation::UriTooLong => "Request-URI too long".into(),
            Violation::HeadTooLarge => "Request header fields too large".into(),
            Violation::TooManyHeaders => "Too many request header fields".into(),
            Violation::BodyTooLarge => "Payload too large".into(),
            Violation::HeaderTimeout => "Request timeout".into(),
            Violation::VersionNotSupported => "HTTP version not supported".into(),
            Violation::TransferCodingNotSupported => "Transfer-Encoding not supported".into(),
            Violation::Malformed(why) => format!("Bad request: {why}").into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Violation {}

/// The violation behind a body error, if the framing guard raised it (hyper wraps the I/O error
/// the guard returns; this walks the sources down to it).
pub fn violation_in(e: &(dyn std::error::Error + 'static)) -> Option<Violation> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(v) = err.downcast_ref::<Violation>() {
            return Some(*v);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(v) = io.get_ref().and_then(|i| i.downcast_ref::<Violation>())
        {
            return Some(*v);
        }
        cur = err.source();
    }
    None
}

/// Count of the client connections open on this node, shared by every listener and worker.
#[derive(Debug, Default)]
pub struct ConnCount(AtomicUsize);

impl ConnCount {
    /// A slot for one more connection, unless `max` (0: no limit) are open already.
    pub fn acquire(self: &Arc<Self>, max: usize) -> Option<ConnSlot> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if max != 0 && before >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnSlot(self.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One open client connection; the slot is given back when this is dropped (it travels with
/// the connection's I/O, so an upgraded connection keeps it until it closes).
#[derive(Debug)]
pub struct ConnSlot(Arc<ConnCount>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let count = Arc::new(ConnCount::default());
        let a = count.acquire(2);
        let b = count.acquire(2);
        assert!(a.is_some() && b.is_some());
        assert!(count.acquire(2).is_none());
        assert_eq!(count.open(), 2);
        drop(a);
        assert!(count.acquire(2).is_some());
        assert_eq!(count.open(), 1);
        let many: Vec<_> = (0..10).filter_map(|_| count.acquire(0)).collect();
        assert_eq!(many.len(), 10);
    }

    #[test]
    fn violations_are_found_inside_io_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, Violation::BodyTooLarge);
        assert_eq!(violation_in(&io), Some(Violation::BodyTooLarge));
        let other = std::io::Error::other("x");
        assert_eq!(violation_in(&other), None);
    }
}
