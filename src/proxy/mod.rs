//! The data plane: accept, route, run plugins, forward upstream, stream back.
pub mod client_ip;
pub mod path;
