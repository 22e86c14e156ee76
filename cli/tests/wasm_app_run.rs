//! Promise: `testudo app run` runs an app under exactly the grants on its command line;
//! the exit code is the app's, and a trap, limit or denial is one clear line with exit 70+.
#![cfg(feature = "wasm")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Builds `wasm-apps/<source>.c` as `cargo xtask apps` does.
fn build(source: &str) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wasm-app-run")
        .join(std::process::id().to_string());
    testudo_testkit::wasm::build_app(source, &out, &[])
}

fn testudo(args: &[&str], cache: &Path) -> Output {
    // Options go before the app's own arguments: everything after `--` belongs to the app.
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "run", "--cache"])
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn app_run_grants_only_what_the_command_line_says() {
    let cache = tempfile::tempdir().unwrap();
    let hello = build("hello");
    let probe = build("probe");
    let hello_s = hello.to_str().unwrap();
    let probe_s = probe.to_str().unwrap();

    let out = testudo(
        &[hello_s, "--env", "GREETING=hi", "--", "a b"],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi from testudo\narg 1: a b\n");

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "content").unwrap();
    let dir = format!("{}:/data:ro", data.path().display());
    let read = testudo(
        &[probe_s, "--dir", &dir, "--", "read", "/data/f.txt"],
        cache.path(),
    );
    assert_eq!(
        (read.status.code(), text(&read.stdout).as_str()),
        (Some(0), "content")
    );
    // The app's own exit code passes through: writing to a read-only dir fails with 1.
    let write = testudo(
        &[probe_s, "--dir", &dir, "--", "write", "/data/g.txt", "x"],
        cache.path(),
    );
    assert_eq!(write.status.code(), Some(1), "{}", text(&write.stderr));
    assert!(!data.path().join("g.txt").exists());
    let ungranted = testudo(&[probe_s, "--", "read", "/data/f.txt"], cache.path());
    assert_eq!(ungranted.status.code(), Some(1));

    let sensor = testudo(
        &[
            probe_s,
            "--sensor",
            "temperature=21.5",
            "--",
            "sensor",
            "temperature",
        ],
        cache.path(),
    );
    assert_eq!(text(&sensor.stdout), "21.500\n");
    let no_sensor = testudo(&[probe_s, "--", "sensor", "temperature"], cache.path());
    assert_eq!(no_sensor.status.code(), Some(1));
    assert!(
        text(&no_sensor.stderr).contains("denied sensor read"),
        "{}",
        text(&no_sensor.stderr)
    );
}

#[test]
fn traps_limits_and_denials_are_one_line_with_exit_70_and_up() {
    let cache = tempfile::tempdir().unwrap();
    let cases = [
        (
            "hostile/spin",
            vec!["--cpu-time", "200ms"],
            72,
            "CPU time limit of 200 ms exceeded",
        ),
        (
            "hostile/memory",
            vec!["--memory", "8MiB"],
            71,
            "memory limit of 8388608 bytes exceeded",
        ),
        ("hostile/recursion", vec![], 70, "trapped: "),
        (
            "hostile/output",
            vec!["--output-limit", "64KiB"],
            73,
            "output limit of 65536 bytes exceeded",
        ),
        (
            "hostile/imports",
            vec![],
            74,
            "import testudo:device/admin@0.1.0#reboot is not granted",
        ),
    ];
    for (source, flags, code, reason) in cases {
        let app = build(source);
        let mut args = vec![app.to_str().unwrap()];
        args.extend(flags);
        let out = testudo(&args, cache.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{source}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(reason), "{source}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{source}: {stderr}"
        );
    }
    let missing = testudo(&["/nonexistent/app.wasm"], cache.path());
    assert_eq!(missing.status.code(), Some(76));
    assert_eq!(text(&missing.stderr).lines().count(), 1);
}
