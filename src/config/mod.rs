//! Configuration: parsing declarative text, the canonical entity model, and loading from files.
//!
//! Pipeline: text → [`source::parse`] (positions) → [`decode::decode`] (typed entities,
//! references resolved) → [`ConfigDoc`], then `crate::snapshot::compile` turns it into runtime
//! state. Each stage collects all of its errors.

pub mod decode;
pub mod error;
pub mod export;
pub mod files;
pub mod ids;
pub mod model;
pub mod source;
pub mod vault;
pub mod watch;

pub use error::{ConfigError, ConfigErrors};
pub use model::ConfigDoc;
pub use source::{Locator, SourceDoc};

use std::path::Path;

/// Read a declarative file (YAML or JSON) as text; the error names the file.
pub fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: path.display().to_string(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read file: {e}"),
        }])
    })
}

/// Read and decode a declarative file (YAML or JSON).
pub fn load_file(path: &Path) -> Result<ConfigDoc, ConfigErrors> {
    load_str(&path.display().to_string(), &read_file(path)?)
}

/// Decode declarative text; `name` is used in error messages.
pub fn load_str(name: &str, text: &str) -> Result<ConfigDoc, ConfigErrors> {
    let src = source::parse(name, text).map_err(|e| ConfigErrors(vec![e]))?;
    match decode::decode(src) {
        (doc, errors) if errors.is_empty() => Ok(doc),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}
