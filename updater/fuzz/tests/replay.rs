//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Runs `fuzz` on each file of `corpus/<target>/`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        eprintln!("replaying {}", file.display());
        fuzz(&std::fs::read(&file).expect("corpus file"));
    }
}

#[test]
fn bundle() {
    replay("bundle", testudo_updater_fuzz::bundle::fuzz);
}

#[test]
fn grubenv() {
    replay("grubenv", testudo_updater_fuzz::grubenv::fuzz);
}

#[test]
fn manifest() {
    replay("manifest", testudo_updater_fuzz::manifest::fuzz);
}

#[test]
fn status_file() {
    replay("status_file", testudo_updater_fuzz::status_file::fuzz);
}

#[test]
fn system_conf() {
    replay("system_conf", testudo_updater_fuzz::system_conf::fuzz);
}
