//! The data plane: accept, route, run plugins, forward upstream, stream back.
pub mod balance;
pub mod body;
pub mod breaker;
pub mod client_ip;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod h1_client;
pub mod h1_guard;
pub mod h2_client;
pub mod handler;
pub mod http2;
pub mod limits;
pub mod path;
pub mod pool;
pub mod retry;
pub mod server;
pub mod stream;
pub mod upgrade;
pub mod upstream_tls;

pub use http2::Http2Settings;
pub use server::{Gateway, GatewayHandle, ServerConfig};
