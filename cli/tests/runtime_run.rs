#![cfg(feature = "runtime")]
//! Promise: `testudo run CONFIG` runs the gateway example with every available component
//! sandboxed, prints a line containing `ready`, and on SIGTERM stops everything within a few
//! seconds, exits 0 and leaves no component process behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

#[test]
fn gateway_runs_until_sigterm_and_leaves_nothing_behind() {
    let testudo = Path::new(env!("CARGO_BIN_EXE_testudo"));
    let bin_dir = testudo.parent().expect("bin dir");
    for driver in [
        "testudo-log",
        "testudo-storage",
        "testudo-net",
        "testudo-sensor",
        "testudo-tpm",
    ] {
        assert!(
            bin_dir.join(driver).is_file(),
            "{driver} is missing next to testudo: build it with `cargo build -p testudo-drivers` (cargo test --workspace does)"
        );
    }
    let root = repo_root();
    let mut child = Command::new(testudo)
        .args(["run", "system-config/examples/gateway.ncl", "--app-root"])
        .arg(&root)
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("testudo run starts");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let tx = lines_tx.clone();
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(format!("out: {line}"));
        }
    });
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(format!("err: {line}"));
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no ready line; output:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.starts_with("out: ready:") {
            break line;
        }
    };
    for component in ["log", "net", "sensor", "storage"] {
        assert!(
            ready.split_whitespace().any(|w| w == component),
            "{component} not up: {ready}\n{}",
            seen.join("\n")
        );
    }
    // SAFETY: sends SIGTERM to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "testudo run did not stop within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    seen.extend(lines.try_iter());
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        seen.join("\n")
    );
    // The TPM device does not exist on this host: reported, not faked.
    if !Path::new("/dev/tpm0").exists() {
        assert!(
            seen.iter()
                .any(|l| l.contains("tpm: not started: device /dev/tpm0 missing")),
            "{}",
            seen.join("\n")
        );
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("stopped: all components exited")),
        "{}",
        seen.join("\n")
    );
    let pids: Vec<i32> = seen
        .iter()
        .filter_map(|line| line.split("started (pid ").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|pid| pid.parse().ok())
        .collect();
    assert!(pids.len() >= 4, "{}", seen.join("\n"));
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "component process {pid} left behind"
        );
    }
}
