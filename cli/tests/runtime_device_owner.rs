#![cfg(feature = "runtime")]
//! Promise: a host path standing in for a device node (here a swtpm socket as the gateway's
//! `/dev/tpm0`, as `--tpm host` uses the host's own node) belongs to its driver's uid while
//! `testudo run` runs and goes back to its owner when it stops.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testudo_testkit::swtpm;

mod runtime_common;
use runtime_common::{repo_root, RunningTestudo};

const OWNER: (u32, u32) = (4242, 4343);

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).expect("stat the device stand-in");
    (meta.uid(), meta.gid())
}

#[test]
fn a_device_node_goes_back_to_its_owner_when_the_run_stops() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "needs root: only as root does init hand device nodes to a driver's uid (CI runs as root)"
    );
    let work = tempfile::tempdir().expect("temp dir");
    let state = work.path().join("tpm-state");
    std::fs::create_dir(&state).expect("swtpm state dir");
    let tpm = swtpm::start_unixio(&state, &work.path().join("tpm.sock"));
    std::os::unix::fs::chown(&tpm.socket, Some(OWNER.0), Some(OWNER.1)).expect("chown");

    let root = repo_root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_testudo"));
    command
        .args(["run", "system-config/examples/gateway.ncl", "--app-root"])
        .arg(&root)
        .arg("--device")
        .arg(format!("/dev/tpm0={}", tpm.socket.display()))
        .current_dir(&root);
    let mut run = RunningTestudo::spawn(command, "testudo run must start");
    let ready = run.wait_for("out: ready:", Duration::from_secs(120));
    assert!(
        ready.split_whitespace().any(|w| w == "tpm"),
        "tpm driver not up: {ready}\n{}",
        run.seen.join("\n")
    );
    let while_running = owner(&tpm.socket);
    assert_ne!(
        while_running,
        OWNER,
        "the tpm driver's uid does not own its device:\n{}",
        run.seen.join("\n")
    );

    run.stop_cleanly();
    assert_eq!(
        owner(&tpm.socket),
        OWNER,
        "not given back:\n{}",
        run.seen.join("\n")
    );
    let said = format!("given back to uid {}, gid {}", OWNER.0, OWNER.1);
    assert!(
        run.seen.iter().any(|l| l.contains(&said)),
        "{}",
        run.seen.join("\n")
    );
}
