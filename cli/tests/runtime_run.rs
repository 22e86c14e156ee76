#![cfg(feature = "runtime")]
//! Promise: `testudo run CONFIG` runs the gateway example with every component up in its
//! sandbox (the TPM served by a private swtpm, the default), prints a line containing
//! `ready`, keeps them running, and on SIGTERM stops everything within a few seconds, exits
//! 0 and leaves no process behind (no component, no swtpm).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod runtime_common;
use runtime_common::{repo_root, StopOnDrop};

/// Every component of `system-config/examples/gateway.ncl`.
const GATEWAY: [&str; 8] = [
    "log",
    "storage",
    "tpm",
    "net",
    "sensor",
    "agent",
    "sensor-reader",
    "forwarder",
];

/// Components of the gateway that cannot run here, and why. Everything else must be up.
const CANNOT_RUN_HERE: [(&str, &str); 0] = [];

#[test]
fn gateway_runs_until_sigterm_and_leaves_nothing_behind() {
    let testudo = Path::new(env!("CARGO_BIN_EXE_testudo"));
    let bin_dir = testudo.parent().expect("bin dir");
    for (binary, package) in [
        ("testudo-log", "testudo-drivers"),
        ("testudo-storage", "testudo-drivers"),
        ("testudo-net", "testudo-drivers"),
        ("testudo-sensor", "testudo-drivers"),
        ("testudo-tpm", "testudo-drivers"),
        ("testudo-agent", "testudo-agent"),
        ("testudo-wasm-host", "testudo-wasm-host"),
    ] {
        assert!(
            bin_dir.join(binary).is_file(),
            "{binary} is missing next to testudo: build it with `cargo build -p {package}` (cargo test --workspace does)"
        );
    }
    let root = repo_root();
    for app in ["sensor-reader.wasm", "forwarder.wasm"] {
        assert!(
            root.join("wasm-apps").join(app).is_file(),
            "wasm-apps/{app} is missing: build the example apps with `cargo xtask apps` (cargo xtask test does)"
        );
    }
    let mut child = StopOnDrop(
        Command::new(testudo)
            .args(["run", "system-config/examples/gateway.ncl", "--app-root"])
            .arg(&root)
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("testudo run starts"),
    );
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.0.stdout.take().expect("stdout");
    let stderr = child.0.stderr.take().expect("stderr");
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
    let expected_up: Vec<&str> = GATEWAY
        .iter()
        .copied()
        .filter(|c| !CANNOT_RUN_HERE.iter().any(|(name, _)| name == c))
        .collect();
    for component in &expected_up {
        assert!(
            ready.split_whitespace().any(|w| w == *component),
            "{component} not up: {ready}\n{}",
            seen.join("\n")
        );
    }
    // Up means staying up: a second later none of them has exited or been restarted.
    let settle = Instant::now() + Duration::from_secs(1);
    while let Ok(line) = lines.recv_timeout(settle.saturating_duration_since(Instant::now())) {
        seen.push(line);
    }
    for component in &expected_up {
        let prefix = format!("err: testudo-init: {component}: ");
        if let Some(line) = seen.iter().find(|l| {
            l.strip_prefix(&prefix).is_some_and(|rest| {
                [
                    "exited",
                    "killed",
                    "restarting",
                    "failed",
                    "denied",
                    "launch failed",
                ]
                .iter()
                .any(|word| rest.starts_with(word))
            })
        }) {
            panic!("{component} did not stay up: {line}\n{}", seen.join("\n"));
        }
    }
    let swtpm_pid: i32 = seen
        .iter()
        .find_map(|l| l.split("/dev/tpm0 -> private swtpm (pid ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no private swtpm reported:\n{}", seen.join("\n")));
    // SAFETY: sends SIGTERM to the child this test started.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
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
    assert!(pids.len() >= expected_up.len(), "{}", seen.join("\n"));
    assert!(
        !Path::new(&format!("/proc/{swtpm_pid}")).exists(),
        "swtpm {swtpm_pid} left behind"
    );
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "component process {pid} left behind"
        );
    }
}
