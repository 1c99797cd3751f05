//! Configuration: parsing declarative text, the canonical entity model, and loading from files.
//!
//! Pipeline: text → [`source::parse`] (positions) → [`decode::decode`] (typed entities,
//! references resolved) → [`ConfigDoc`], then `crate::snapshot::compile` turns it into runtime
//! state. Each stage collects all of its errors.

pub mod decode;
pub mod error;
pub mod model;
pub mod source;
pub mod vault;

pub use error::{ConfigError, ConfigErrors};
pub use model::ConfigDoc;
pub use source::{Locator, SourceDoc};

use std::path::Path;

/// Read and decode a declarative file (YAML or JSON).
pub fn load_file(path: &Path) -> Result<ConfigDoc, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: name.clone(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read file: {e}"),
        }])
    })?;
    load_str(&name, &text)
}

/// Decode declarative text; `name` is used in error messages.
pub fn load_str(name: &str, text: &str) -> Result<ConfigDoc, ConfigErrors> {
    let src = source::parse(name, text).map_err(|e| ConfigErrors(vec![e]))?;
    decode::decode(src).map_err(ConfigErrors)
}
