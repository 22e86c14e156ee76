#![cfg(feature = "config")]
//! Promise: `testudo graph` writes an SVG (no Graphviz needed) or DOT file of the gateway and
//! prints its path; other extensions are refused.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../system-config/examples/gateway.ncl")
}

fn graph(output: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("graph")
        .arg(gateway())
        .arg("-o")
        .arg(output)
        // No Graphviz on PATH: the SVG must not need it.
        .env("PATH", "/nonexistent")
        .output()
        .expect("run testudo graph")
}

#[test]
fn svg_and_dot_are_written_and_the_path_printed() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gateway.svg", "gateway.dot"] {
        let path = dir.path().join(name);
        let out = graph(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            path.display().to_string()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for component in [
            "agent",
            "forwarder",
            "log",
            "net",
            "sensor-reader",
            "storage",
            "tpm",
            "cloud-app",
        ] {
            assert!(text.contains(component), "{name} lacks {component}");
        }
    }
    let svg = std::fs::read_to_string(dir.path().join("gateway.svg")).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
}

#[test]
fn unknown_extension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = graph(&dir.path().join("gateway.png"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("output must end in .svg or .dot"));
}
