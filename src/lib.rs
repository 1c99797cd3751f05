//! Gatehouse: an API gateway driven by a Kong-style declarative configuration.
#![forbid(unsafe_code)]

pub mod config;
pub mod proxy;
pub mod router;
