//! Shared helpers for the integration tests.

pub mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use upstream::{Recorded, Upstream, closed_port, pattern_bytes};

/// A reqwest client that ignores proxy settings from the environment, with 10 s connect and
/// total timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

/// Writes `bytes` verbatim on a fresh TCP connection to `addr`, then returns everything read
/// until the peer closes the connection (or resets it), or until 5 s have passed since the
/// call — whatever was received by then is returned. For malformed-HTTP tests; send
/// `Connection: close` in well-formed requests so the peer closes instead of waiting for the
/// timeout. Write errors are ignored (the peer may reject and close early); panics only if the
/// connection cannot be established.
pub async fn raw_http(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("raw_http: connect to {addr}: {e}"));
        let _ = stream.write_all(bytes).await;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
    received
}

/// Reads from `stream` until a whole request head (up to the blank line) has arrived; `None`
/// if the peer closes or fails first. What follows the head in the last read is kept too.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
