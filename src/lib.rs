//! Gatehouse: an API gateway driven by a Kong-style declarative configuration.
#![forbid(unsafe_code)]

pub mod router;
pub mod proxy;
