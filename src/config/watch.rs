//! Watching the declarative file: a change to it is reported on a channel the main loop selects
//! on, which debounces it and reloads.
//!
//! The file's directory is watched, not the file: an editor's atomic save renames a new file over
//! the old one, and Kubernetes swaps a ConfigMap volume's `..data` symlink; a watch on the file
//! itself would stay on the old inode in both cases. When the file is a symbolic link, the
//! directory of the file it points to (at start) is watched too. Events are kept when they name
//! the file (or that target), or an entry whose name starts with `..` (the ConfigMap volume's own
//! entries); reads are ignored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};

/// A running watch; dropping it stops the watch.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl FileWatcher {
    /// Watch the directory of `path`. Each event that may change `path` sends `()` on the
    /// returned channel; events are coalesced (at most one waits in the channel), so a burst of
    /// events is one message or a few, to be debounced by the receiver. The callback runs on
    /// the watcher's own thread and never blocks.
    pub fn start(path: &Path) -> notify::Result<(FileWatcher, tokio::sync::mpsc::Receiver<()>)> {
        let mut dirs = vec![watched_dir(path)];
        let mut names: Vec<OsString> = path.file_name().map(OsString::from).into_iter().collect();
        if let Some(target) = link_target(path) {
            names.extend(target.file_name().map(OsString::from));
            let dir = watched_dir(&target);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
            let relevant = match res {
                Ok(event) => names.iter().any(|name| is_relevant(&event, name)),
                Err(e) => {
                    // The watch may have missed events: check the file anyway.
                    tracing::warn!("configuration file watch: {e}");
                    true
                }
            };
            if relevant {
                // Full means a check is already pending; closed means the loop is gone.
                let _ = tx.try_send(());
            }
        })?;
        for (i, dir) in dirs.iter().enumerate() {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {}
                // The file's own directory is required; a link target's is best effort.
                Err(e) if i > 0 => {
                    tracing::warn!(dir = %dir.display(), "configuration file watch: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok((FileWatcher { _watcher: watcher }, rx))
    }
}

/// Where `path` leads, when it is a symbolic link.
fn link_target(path: &Path) -> Option<PathBuf> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        std::fs::canonicalize(path).ok()
    } else {
        None
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn watched_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `event`, seen in the watched directory, may have changed the file named `name`.
pub fn is_relevant(event: &Event, name: &std::ffi::OsStr) -> bool {
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n == name || n.as_encoded_bytes().starts_with(b".."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn keeps_changes_to_the_file_and_configmap_swaps() {
        let name = std::ffi::OsStr::new("gatehouse.yaml");
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(is_relevant(
            &event(modify, &["/etc/g/gatehouse.yaml"]),
            name
        ));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(is_relevant(
            &event(
                rename,
                &["/etc/g/.gatehouse.yaml.swp", "/etc/g/gatehouse.yaml"]
            ),
            name
        ));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(is_relevant(
            &event(closed, &["/etc/g/gatehouse.yaml"]),
            name
        ));
        let create = EventKind::Create(CreateKind::Any);
        assert!(is_relevant(&event(create, &["/etc/g/..data_tmp"]), name));
    }

    #[test]
    fn ignores_reads_and_other_files() {
        let name = std::ffi::OsStr::new("gatehouse.yaml");
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!is_relevant(&event(read, &["/etc/g/gatehouse.yaml"]), name));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!is_relevant(&event(open, &["/etc/g/gatehouse.yaml"]), name));
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(!is_relevant(&event(modify, &["/etc/g/other.yaml"]), name));
        assert!(!is_relevant(
            &event(modify, &["/etc/g/gatehouse.yaml.bak"]),
            name
        ));
    }

    #[test]
    fn watches_the_directory() {
        assert_eq!(watched_dir(Path::new("g.yaml")), PathBuf::from("."));
        assert_eq!(
            watched_dir(Path::new("/etc/g/g.yaml")),
            PathBuf::from("/etc/g")
        );
    }
}
