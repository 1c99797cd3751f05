//! Target health: Kong's active and passive health checks for upstream targets.
//!
//! - [`config`]: the typed `healthchecks` block ([`Healthchecks::parse`]).
//! - [`state`]: per-target state shared across reloads ([`HealthRegistry`]), the request-path
//!   calls ([`TargetHealth::is_healthy`], [`TargetHealth::report_passive`]) and the
//!   `GET /upstreams/{name}/health` report ([`UpstreamHealth::report`]).
//! - [`active`]: background probes ([`ActiveChecker`]).
//!
//! See `docs/health-checks.md` for the semantics and how the gateway wires them.

pub mod active;
pub mod config;
pub mod state;

pub use active::{ActiveChecker, StartError};
pub use config::Healthchecks;
pub use state::{
    Health, HealthRegistry, HealthReport, Outcome, TargetHealth, TargetReport, TargetState,
    UpstreamHealth,
};
