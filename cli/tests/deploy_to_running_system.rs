#![cfg(all(
    feature = "deploy",
    feature = "hub",
    feature = "runtime",
    feature = "updater"
))]
#![allow(clippy::unwrap_used)] // a test: a failed step is a failed test
//! Promise: the whole loop on this host, real processes everywhere. `testudo deploy app` sets
//! a signed deployment of `wasm-apps/sensor-reader.wasm` into the gateway's `cloud-app` slot
//! as desired properties of the emulator's twin; the gateway under `testudo run` (its agent
//! connected to the emulator) relays the token to init, fetches the module from a real nginx
//! over HTTPS through its `net` route when init asks, and init runs it in its sandbox with
//! only the routes the document names: the app's telemetry reaches the hub, and the twin's
//! reported `apps` says `running` with `lastDesiredStatus` 200. A next version deployed
//! without `--url` is uploaded to the emulator's artifact store and fetched from there. A
//! deployment whose module is not on the server yet is reported as failed (500, naming the
//! status), the running app stays, and the agent tries again until the module is there. An app that passes its health check and exits later is
//! restarted by init, and the twin hears of it (restart count, exit code) with no desired
//! change; `testudo deploy status` says so. A signed removal (`testudo deploy remove`)
//! empties the slot.

mod deploy_common;
mod runtime_common;

use std::path::Path;
use std::time::{Duration, Instant};

use deploy_common::*;
use runtime_common::repo_root;

#[test]
fn a_twin_change_deploys_a_signed_app_into_the_running_gateway() {
    let root = repo_root();
    let module = root.join("wasm-apps/sensor-reader.wasm");
    assert!(
        module.is_file(),
        "wasm-apps/sensor-reader.wasm is missing: build the example apps with `cargo xtask apps` (cargo xtask test does)"
    );
    let mut gateway = Gateway::start(&[&module], 1000);
    let (dir, keys, state, service, plan) = (
        gateway.dir.path().to_owned(),
        gateway.keys.clone(),
        gateway.state.clone(),
        gateway.service.clone(),
        gateway.plan.clone(),
    );
    let artifacts_port = gateway.artifacts.port();
    let deploy = |module: &Path, version: &str, url: Option<&str>| {
        let mut command = testudo();
        command
            .args(["deploy", "app", DEVICE, "--slot", "cloud-app", "--module"])
            .arg(module)
            .args(["--app-version", version, "--config"])
            .arg(&plan)
            .arg("--keys")
            .arg(&keys)
            .args(["--hub", &service, "--ca"])
            .arg(state.join("ca.pem"));
        if let Some(url) = url {
            command.args(["--url", url]);
        }
        command.output().unwrap()
    };
    let url = format!("https://localhost:{}/sensor-reader.wasm", artifacts_port);
    ok(deploy(&module, "1.0.0", Some(&url)));
    let apps = wait_reported(&state, "the deployed app running and healthy", |apps| {
        apps["cloud-app"]["runtimeStatus"] == "running"
            && apps["cloud-app"]["version"] == "1.0.0"
            && apps["lastDesiredStatus"]["code"] == 200
            && apps["lastDesiredStatus"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("applied"))
    });
    assert_eq!(apps["cloud-app"]["serial"], 1, "{apps}");
    assert!(
        gateway
            .artifacts
            .access_log()
            .contains("/sensor-reader.wasm 200"),
        "the module was not fetched from the artifact server: {}",
        gateway.artifacts.access_log()
    );
    let deadline = Instant::now() + WAIT;
    while app_telemetry(&state, "cloud-app").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no telemetry from the deployed app; run output:\n{}",
            gateway.run.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The next version (the same app as a component) through the emulator's artifact store.
    let component = dir.join("1.1.0/sensor-reader.wasm");
    std::fs::create_dir_all(component.parent().unwrap()).unwrap();
    std::fs::copy(
        root.join("wasm-apps/sensor-reader.component.wasm"),
        &component,
    )
    .unwrap();
    let uploaded = ok(deploy(&component, "1.1.0", None));
    assert!(uploaded.contains("/testudo/artifacts/"), "{uploaded}");
    let apps = wait_reported(&state, "the uploaded version running and healthy", |apps| {
        apps["cloud-app"]["version"] == "1.1.0"
            && apps["cloud-app"]["runtimeStatus"] == "running"
            && apps["lastDesiredStatus"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("applied"))
    });
    assert_eq!(apps["cloud-app"]["serial"], 2, "{apps}");

    // A module the server does not have yet: reported as failed, the app keeps running, and
    // the relay is tried again; once the file is there, it is deployed.
    let late = dir.join("late/sensor-reader.wasm");
    std::fs::create_dir_all(late.parent().unwrap()).unwrap();
    std::fs::copy(&module, &late).unwrap();
    // Another build, so the device does not have it: the same app with a trailing section.
    let mut bytes = std::fs::read(&late).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'l', b'a', b't', b'e']);
    std::fs::write(&late, &bytes).unwrap();
    let url = format!("https://localhost:{artifacts_port}/late.wasm");
    ok(deploy(&late, "1.2.0", Some(&url)));
    let apps = wait_reported(&state, "the failed fetch", |apps| {
        apps["lastDesiredStatus"]["code"] == 500
    });
    let description = apps["lastDesiredStatus"]["description"].as_str().unwrap();
    assert!(description.contains("404"), "{apps}");
    assert!(description.contains("trying again in"), "{apps}");
    assert_eq!(apps["cloud-app"]["version"], "1.1.0", "{apps}");
    assert_eq!(apps["cloud-app"]["runtimeStatus"], "running", "{apps}");
    std::fs::copy(&late, gateway.artifacts.root().join("late.wasm")).unwrap();
    wait_reported(&state, "the retried deployment applied", |apps| {
        apps["cloud-app"]["version"] == "1.2.0"
            && apps["lastDesiredStatus"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("applied"))
    });

    // An app that runs past its health check, then exits 1: restarted, and reported so.
    let source = dir.join("late_exit.c");
    std::fs::write(
        &source,
        "#include <time.h>\nint main(void) { struct timespec t = {1, 500000000}; nanosleep(&t, 0); return 1; }\n",
    )
    .unwrap();
    let late_exit = dir.join("late-exit.wasm");
    testudo_testkit::wasm::compile_c_app(&source, &late_exit, &[]).unwrap();
    std::fs::copy(&late_exit, gateway.artifacts.root().join("late-exit.wasm")).unwrap();
    let url = format!("https://localhost:{artifacts_port}/late-exit.wasm");
    ok(deploy(&late_exit, "1.3.0", Some(&url)));
    let apps = wait_reported(&state, "the late exit reported with a restart", |apps| {
        apps["cloud-app"]["app"] == "late-exit"
            && apps["cloud-app"]["restartCount"].as_u64() >= Some(1)
            && apps["cloud-app"]["exitCode"] == 1
    });
    assert_eq!(apps["lastDesiredStatus"]["code"], 200, "{apps}");
    let hub_args = |command: &mut std::process::Command| {
        command
            .args(["--hub", &service, "--ca"])
            .arg(state.join("ca.pem"));
    };
    let mut status = testudo();
    status.args(["deploy", "status", DEVICE]);
    hub_args(&mut status);
    let status = ok(status.output().unwrap());
    assert!(
        status.contains("slot cloud-app: late-exit 1.3.0, serial 4")
            && status.contains("last exit code 1"),
        "{status}"
    );

    // A signed removal through the twin empties the slot.
    let mut remove = testudo();
    remove
        .args([
            "deploy",
            "remove",
            DEVICE,
            "--slot",
            "cloud-app",
            "--config",
        ])
        .arg(&plan)
        .arg("--keys")
        .arg(&keys);
    hub_args(&mut remove);
    ok(remove.output().unwrap());
    let apps = wait_reported(&state, "the slot emptied", |apps| {
        apps["cloud-app"]["runtimeStatus"] == "stopped" && apps["cloud-app"]["app"].is_null()
    });
    assert_eq!(apps["lastDesiredStatus"]["code"], 200, "{apps}");
    gateway.run.stop_cleanly();
}
