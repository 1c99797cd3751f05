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

/// Replace the file at `path` with `text` so that a crash leaves either the old text or the
/// new one, never a mix: a sibling temporary file, synced, renamed over it, the directory
/// synced.
pub fn write_file_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
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
