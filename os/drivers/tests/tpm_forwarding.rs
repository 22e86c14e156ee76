//! Promise: the tpm driver owns a real TPM (swtpm here, through a `unixio` socket standing in
//! for /dev/tpm0) and forwards raw TPM 2.0 commands from a sandboxed consumer.

mod common;

use std::time::Duration;

use common::*;
use testudo_init::{InitOptions, RunningSystem};
use testudo_plan::plan::{ComponentKind, RestartPolicy};
use testudo_plan::SandboxRole;

#[test]
fn get_random_reaches_swtpm_and_comes_back() {
    let work = tempfile::tempdir().expect("tempdir");
    let socket = work.path().join("tpm.sock");
    let swtpm = testudo_testkit::swtpm::start_unixio(work.path(), &socket);
    let mut tpm = component(ComponentKind::Driver, "testudo-tpm")
        .role(SandboxRole::TpmDriver)
        .provides("tpm", "tpm")
        .restart(RestartPolicy::Always);
    tpm.0.devices.nodes = vec!["/dev/tpm0".into()];
    let client = component(ComponentKind::Service, "testudo-escape-probe")
        .args(&["tpm-getrandom"])
        .uses("log", route("log", "log", "log", &[]))
        .uses("tpm", route("tpm", "tpm", "tpm", &[]))
        .0;
    let plan = plan(vec![
        ("log", log_driver()),
        ("tpm", tpm.0),
        ("client", client),
    ]);
    let mut options = InitOptions::new(
        bin_dir(),
        work.path().join("state"),
        work.path().join("data"),
        work.path().to_owned(),
    );
    options.devices.insert("/dev/tpm0".into(), socket.clone());
    options.stop_grace = Duration::from_millis(500);
    let system = RunningSystem::start(plan, options).expect("start");
    let line = output_line(&system, "log", "[client] escape-probe tpm-getrandom");
    system.stop().expect("stop");
    drop(swtpm);
    let hex = line.rsplit(' ').next().expect("hex");
    // TPM_ST_NO_SESSIONS, size 20 (header 10 + TPM2B 2 + 8 bytes), TPM_RC_SUCCESS.
    assert!(hex.starts_with("80010000001400000000"), "{line}");
    assert_eq!(hex.len(), 40, "{line}");
}
