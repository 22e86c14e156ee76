#![cfg(feature = "runtime")]
//! Promise: `testudo run CONFIG` runs the gateway example with every component up in its
//! sandbox (the TPM served by a private swtpm, the default; the updater's partitions by
//! stand-in files, on which it confirms slot A), prints a line containing `ready`, keeps them
//! running, and on SIGTERM stops everything within a few seconds, exits 0 and leaves no
//! process behind (no component, no swtpm).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod runtime_common;
use runtime_common::{repo_root, RunningTestudo};

/// Every component of `system-config/examples/gateway.ncl`.
const GATEWAY: [&str; 9] = [
    "log",
    "storage",
    "tpm",
    "net",
    "sensor",
    "updater",
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
        ("testudo-updater", "testudo-update-service"),
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
    let mut command = Command::new(testudo);
    command
        .args(["run", "system-config/examples/gateway.ncl", "--app-root"])
        .arg(&root)
        .current_dir(&root);
    let mut run = RunningTestudo::spawn(command, "testudo run must start");
    let ready = run.wait_for("out: ready:", Duration::from_secs(120));
    let expected_up: Vec<&str> = GATEWAY
        .iter()
        .copied()
        .filter(|c| !CANNOT_RUN_HERE.iter().any(|(name, _)| name == c))
        .collect();
    for component in &expected_up {
        assert!(
            ready.split_whitespace().any(|w| w == *component),
            "{component} not up: {ready}\n{}",
            run.seen.join("\n")
        );
    }
    // The updater holds stand-ins for the ESP and slots, never this host's partitions, and
    // confirms the slot the stand-in grubenv boots.
    for partition in ["esp", "rootfs-a", "rootfs-b"] {
        let node = format!("/dev/disk/by-partlabel/{partition} -> ");
        assert!(
            run.seen
                .iter()
                .any(|l| l.split(&node).nth(1).is_some_and(
                    |rest| rest.contains(&format!("disk/{partition}.img (a stand-in"))
                )),
            "{partition} has no stand-in:\n{}",
            run.seen.join("\n")
        );
    }
    let confirmed = "err: testudo-init: updater| updater: slot A confirmed good";
    if !run.seen.iter().any(|line| line.starts_with(confirmed)) {
        run.wait_for(confirmed, Duration::from_secs(30));
    }
    // Up means staying up: a second later none of them has exited or been restarted.
    run.collect_for(Duration::from_secs(1));
    let seen = &run.seen;
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
    run.stop_cleanly();
    let seen = &run.seen;
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
