//! Reload on file change (`--watch-config`), through the binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Running, get_status};

/// How long a change may take to be served: the 200 ms debounce, a read and a compile, with room
/// for a loaded machine.
const APPLIED_WITHIN: Duration = Duration::from_secs(3);

fn route(path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nroutes:\n- paths: [{path}]\n  plugins: [{{name: request-termination, config: {{status_code: 200, message: hi}}}}]\n"
    )
}

/// A directory of its own (no other test's files changing next to it) holding `gatehouse.yaml`.
fn config_dir(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

/// Statuses of `paths` on the running gateway.
fn statuses(gw: &Running, paths: &[&str]) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    paths
        .iter()
        .map(|p| rt.block_on(get_status(&gw.addr, p)))
        .collect()
}

fn assert_reloaded(gw: &Running) {
    let line = gw.wait_for_log_within("configuration reloaded", APPLIED_WITHIN);
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("trigger=\"file change\"")),
        "no reload on file change: {line:?}"
    );
}

fn stop(gw: Running) {
    gw.signal("-TERM");
    gw.assert_exits_cleanly();
}

#[test]
fn an_edit_in_place_is_served_and_is_one_reload() {
    let (_dir, path) = config_dir(&route("/a"));
    let gw = Running::start(&path);
    assert_eq!(statuses(&gw, &["/a"]), [200]);
    std::fs::write(&path, route("/b")).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    assert_eq!(
        gw.count_logs("configuration reloaded", Duration::from_secs(1)),
        0,
        "one save must be one reload"
    );
    stop(gw);
}

#[test]
fn a_slow_save_in_chunks_is_one_reload_of_the_whole_file() {
    use std::io::Write;
    let (_dir, path) = config_dir(&route("/a"));
    let gw = Running::start(&path);
    let text = route("/b");
    let (head, tail) = text.split_at(text.len() / 2);
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [head, tail] {
        f.write_all(chunk.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(f);
    assert_reloaded(&gw);
    assert_eq!(
        gw.count_logs("configuration", Duration::from_secs(1)),
        0,
        "a half-written file must not be read (nor rejected) on its own"
    );
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    stop(gw);
}

#[test]
fn an_atomic_save_renamed_over_the_file_is_served() {
    let (dir, path) = config_dir(&route("/a"));
    let gw = Running::start(&path);
    let temp = dir.path().join(".gatehouse.yaml.tmp");
    std::fs::write(&temp, route("/b")).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    assert_eq!(
        gw.count_logs("configuration reloaded", Duration::from_secs(1)),
        0
    );
    // The new file (a new inode) is watched too.
    std::fs::write(&path, route("/c")).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/c", "/b"]), [200, 404]);
    stop(gw);
}

#[test]
fn an_invalid_edit_is_rejected_and_a_later_valid_one_applied() {
    let (_dir, path) = config_dir(&route("/a"));
    let gw = Running::start(&path);
    std::fs::write(
        &path,
        "_format_version: \"3.0\"\nroutes:\n- paths: [\"~(\"]\n",
    )
    .unwrap();
    assert!(
        gw.wait_for_log_within("configuration rejected", APPLIED_WITHIN)
            .is_some()
    );
    assert_eq!(
        statuses(&gw, &["/a"]),
        [200],
        "an invalid file must not replace a working configuration"
    );
    std::fs::write(&path, route("/b")).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    stop(gw);
}

#[test]
fn touching_the_file_without_changing_it_reloads_nothing() {
    let (_dir, path) = config_dir(&route("/a"));
    let gw = Running::start(&path);
    let same = std::fs::read(&path).unwrap();
    std::fs::write(&path, same).unwrap();
    assert_eq!(gw.count_logs("configuration", Duration::from_secs(1)), 0);
    stop(gw);
}

/// A Kubernetes ConfigMap volume: `gatehouse.yaml -> ..data/gatehouse.yaml`, `..data -> ..v1`;
/// an update writes `..v2` and renames a new `..data` symlink over the old one.
#[test]
fn a_configmap_volume_update_is_served() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (version, path) in [("..v1", "/a"), ("..v2", "/b")] {
        std::fs::create_dir(d.join(version)).unwrap();
        std::fs::write(d.join(version).join("gatehouse.yaml"), route(path)).unwrap();
    }
    symlink("..v1", d.join("..data")).unwrap();
    symlink("..data/gatehouse.yaml", d.join("gatehouse.yaml")).unwrap();
    let gw = Running::start(&d.join("gatehouse.yaml"));
    assert_eq!(statuses(&gw, &["/a"]), [200]);
    symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    stop(gw);
}

/// A file that is a symbolic link to a file in another directory: edits to that file count.
#[test]
fn an_edit_to_the_target_of_a_symlink_is_served() {
    let (_target_dir, target) = config_dir(&route("/a"));
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("gatehouse.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let gw = Running::start(&link);
    std::fs::write(&target, route("/b")).unwrap();
    assert_reloaded(&gw);
    assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
    stop(gw);
}

/// Command-line arguments and environment of one `gatehouse run`.
type Launch<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

#[test]
fn watch_config_false_ignores_edits_and_sighup_still_reloads() {
    let off: [Launch; 3] = [
        (&[], &[("GATEHOUSE_WATCH_CONFIG", "false")]),
        (&[], &[("GATEHOUSE_WATCH_CONFIG", "off")]),
        (&["--watch-config", "false"], &[]),
    ];
    for (args, env) in off {
        let (_dir, path) = config_dir(&route("/a"));
        let gw = Running::start_with(&path, args, env);
        std::fs::write(&path, route("/b")).unwrap();
        assert_eq!(
            gw.count_logs("configuration", Duration::from_secs(1)),
            0,
            "{args:?} {env:?}"
        );
        assert_eq!(statuses(&gw, &["/a", "/b"]), [200, 404]);
        gw.signal("-HUP");
        let line = gw.wait_for_log("configuration reloaded");
        assert!(line.contains("trigger=\"SIGHUP\""), "{line}");
        assert_eq!(statuses(&gw, &["/b", "/a"]), [200, 404]);
        stop(gw);
    }
}

#[test]
fn a_bare_watch_config_flag_means_true() {
    let (_dir, path) = config_dir(&route("/a"));
    let gw = Running::start_with(&path, &["--watch-config"], &[]);
    std::fs::write(&path, route("/b")).unwrap();
    assert_reloaded(&gw);
    stop(gw);
}
