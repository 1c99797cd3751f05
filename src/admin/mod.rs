//! The Admin API: Kong's management endpoints on their own listener (loopback by default),
//! served off the proxy's workers so that management traffic never competes with requests.
//!
//! - [`views`]: entities in Kong's shapes, from the configuration serving now;
//! - [`paging`]: `size`/`offset` pagination and `tags` filtering;
//! - [`routes`]: the table of endpoints, which [`api`] dispatches on and [`openapi`]
//!   describes;
//! - [`api`]: the endpoints;
//! - [`replies`]: answers and errors in Kong's shapes;
//! - [`schemas`]: entity and plugin schemas in Kong's form, and defaults filled from them;
//! - [`server`]: the listener and its thread.

pub mod access;
pub mod api;
pub mod flat_errors;
pub mod form;
pub mod multipart;
pub mod openapi;
pub mod paging;
pub mod replies;
pub mod routes;
pub mod schemas;
pub mod server;
pub mod views;

use std::sync::Arc;

use crate::config::ConfigErrors;
use crate::snapshot::Snapshot;

pub use access::Access;
pub use api::{Admin, NodeInfo};
pub use server::AdminServer;

/// Why a whole configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// It does not validate.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Another write reached the database first.
    #[error("{0}")]
    Conflict(String),
    /// The database (or the node) cannot take writes now.
    #[error("{0}")]
    Unavailable(String),
}

/// What the Admin API needs of the node it manages.
pub trait Control: Send + Sync + 'static {
    /// The configuration serving now.
    fn current(&self) -> Arc<Snapshot>;
    /// Validate a whole declarative configuration and, if valid, store it (in database mode)
    /// and serve it; the configuration now serving is returned. `base` is the configuration
    /// `text` was computed from (a change to one entity): the write is refused as a conflict
    /// if the stored configuration has moved on from it, so that it cannot undo another
    /// node's write. Without a base, `text` replaces whatever is stored.
    fn replace(&self, base: Option<&Snapshot>, text: &str) -> Result<Arc<Snapshot>, ReplaceError>;
    /// Client connections the proxy has accepted since it started.
    fn connections_accepted(&self) -> u64;
    /// The node's database, if it has one.
    fn store(&self) -> Option<&crate::store::Store>;
}
