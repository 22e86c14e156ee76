//! Benchmark: a signed app deployment relayed to init → the new app running in its slot,
//! under a real `testudo-init` with real sandboxed WASM hosts, the module already on the
//! device (download excluded, as the goal says). Anchor, in the same run: the sandboxed
//! start of the same app as a plain component (`launch::spec_for`, `prepare`, `spawn`,
//! until it exits). Median of 5 of each, alternating two versions of the app.
//!
//! `cargo bench -p testudo-wasm-host --bench app_deployment`

#![allow(clippy::unwrap_used)] // a benchmark: a failed setup step is a failed run

#[allow(dead_code)]
#[path = "../tests/common/sandboxed.rs"]
mod sandboxed;
#[allow(dead_code)] // shared with the app slot tests
#[path = "../tests/common/slots.rs"]
mod slots;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use slots::*;
use testudo_deployment::SessionState;
use testudo_plan::plan::RestartPolicy;
use testudo_scheme::Rights;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Relays `token` and returns the time until init says the app runs.
fn until_running(rig: &Rig, token: &str, module: &[u8]) -> Duration {
    let started = Instant::now();
    let session = rig.route().open(SLOT, Rights::ReadWrite).unwrap();
    session.write_all(token.as_bytes()).unwrap();
    let mut state = read_state(&session);
    if matches!(state, SessionState::WantsModule { .. }) {
        session.write_all(module).unwrap();
        session.fsync().unwrap();
    }
    loop {
        match state {
            SessionState::Started { .. } => return started.elapsed(),
            SessionState::Applying { .. } | SessionState::WantsModule { .. } => {}
            other => panic!("deployment not started: {other:?}"),
        }
        std::thread::sleep(Duration::from_micros(200));
        state = read_state(&session);
    }
}

fn main() {
    let rig = Rig::new();
    let (v1, v2, _) = build_apps(rig.dir.path());
    let modules = [std::fs::read(&v1).unwrap(), std::fs::read(&v2).unwrap()];

    // Anchor: the same app started sandboxed as a plain component, until it exits (`ONCE`).
    let once = rig.dir.path().join("once.wasm");
    let source = rig.dir.path().join("slot_app.c");
    testudo_testkit::wasm::compile_c_app(&source, &once, &["VERSION=0", "ONCE"]).unwrap();
    let mut component = sandboxed::wasm_component("apps/once.wasm");
    component.limits.restart = RestartPolicy::Never;
    let device = sandboxed::Device::new(
        &rig.dir.path().join("anchor"),
        sandboxed::plan(vec![("once", component)]),
        &[("apps/once.wasm", &once)],
    );
    let start_sandboxed = || {
        let started = Instant::now();
        let (spec, _stdout, _stderr) = device.spec("once");
        let prepared = testudo_sandbox::prepare(spec).unwrap();
        let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).unwrap();
        sandboxed::wait(&child.pidfd);
        started.elapsed()
    };

    // Warm-up: both versions fetched into the slot and compiled into its cache once.
    let mut serial = 0;
    let mut deploy = |rig: &Rig| {
        serial += 1;
        let module = &modules[(serial % 2) as usize];
        let token = rig.sign(&deployment(serial, module, BTreeMap::new()));
        let elapsed = until_running(rig, &token, module);
        // Let the health check pass before the next deployment.
        std::thread::sleep(Duration::from_millis(700));
        elapsed
    };
    deploy(&rig);
    deploy(&rig);
    start_sandboxed();

    let mut deployed = Vec::new();
    let mut anchor = Vec::new();
    for _ in 0..5 {
        deployed.push(deploy(&rig));
        anchor.push(start_sandboxed());
    }
    let (deployed, anchor) = (median(deployed), median(anchor));
    println!(
        "app deployment, token relayed to init -> new app running (module on the device): median {:.1} ms",
        deployed.as_secs_f64() * 1e3
    );
    println!(
        "anchor: sandboxed start of the same app until it exits: median {:.1} ms",
        anchor.as_secs_f64() * 1e3
    );
    println!(
        "ratio: {:.2}x the anchor (goal: < 1 s)",
        deployed.as_secs_f64() / anchor.as_secs_f64()
    );
}
