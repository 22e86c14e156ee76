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
fn mqtt_packets() {
    replay("mqtt_packets", testudo_hub_fuzz::mqtt_packets::fuzz);
}

#[test]
fn tpm_public() {
    replay("tpm_public", testudo_hub_fuzz::tpm_public::fuzz);
}

#[test]
fn twin_patches() {
    replay("twin_patches", testudo_hub_fuzz::twin_patches::fuzz);
}
