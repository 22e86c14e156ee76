//! Promise: an app's link and time calls (hard link, symbolic link, reading a link, setting
//! times) are answered "unsupported" by the host itself, for a core module (WASI preview 1)
//! and for a component (`wasi:filesystem`) alike, and nothing changes on disk: so the
//! `wasm_host` seccomp role needs none of `linkat`, `symlinkat`, `readlinkat`, `utimensat`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use testudo_wasm_host::{AppLimits, DirGrant, Grants, LocalDevice, Outcome};

#[test]
fn link_and_time_calls_are_refused_by_the_host_for_modules_and_components() {
    let module = common::build("hostile/links", &[]);
    let component = common::build_component("hostile/links");
    for (form, app) in [("module", &module), ("component", &component)] {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(root.path().join("outside.txt"), "outside").unwrap();
        std::os::unix::fs::symlink("../outside.txt", data.join("planted")).unwrap();
        let grants = Grants {
            dirs: vec![DirGrant {
                host: data.clone(),
                guest: "/data".into(),
                read_only: false,
            }],
            ..Grants::default()
        };
        let ran = common::run(
            app,
            grants,
            AppLimits::default(),
            Arc::new(LocalDevice::new()),
        );
        assert_eq!(
            ran.outcome,
            Outcome::Exited(0),
            "{form}: {}{}",
            ran.stdout,
            ran.stderr
        );
        for call in ["link", "symlink", "readlink", "utimensat", "futimens"] {
            assert!(
                ran.stdout.contains(&format!("{call}: refused")),
                "{form}: {call} not refused: {}",
                ran.stdout
            );
        }
        assert!(!data.join("hard-link").exists(), "{form}");
        assert!(data.join("soft-link").symlink_metadata().is_err(), "{form}");
        let modified = std::fs::metadata(data.join("file.txt"))
            .unwrap()
            .modified()
            .unwrap();
        assert_ne!(modified, std::time::UNIX_EPOCH, "{form}: times were set");
    }
}
