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
/// new one, never a mix: a new sibling file (never an existing one, nor a link), with the
/// permissions of the file it replaces (it may hold secrets), synced and renamed over it.
pub fn write_file_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        // `mode` is filtered by the umask: set it as it was.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return written;
    }
    // The rename is done: the new text is what a reader sees. Syncing the directory makes it
    // survive a power loss; some file systems refuse, which does not undo the write.
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot sync the directory of the declarative file");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_replaced_whole_and_keeps_its_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kong.yml");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        write_file_atomically(&path, "new text").expect("replaced");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new text");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secrets stay private");
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kong.yml")]);
        // A file that is not there yet is created private.
        let fresh = dir.path().join("fresh.yml");
        write_file_atomically(&fresh, "x").expect("created");
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
