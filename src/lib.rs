//! Gatehouse: an API gateway driven by a Kong-style declarative configuration.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balancer;
pub mod config;
pub mod consumers;
pub mod dns;
pub mod health;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod tls;
