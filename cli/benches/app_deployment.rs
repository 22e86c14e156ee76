//! Benchmark: the defining loop on this host. A signed deployment is set as the device twin's
//! desired properties (the hub acknowledges the PATCH: the clock starts); the gateway under
//! `testudo run` (agent connected to the emulator over MQTT/TLS) relays it to init, which
//! verifies it and switches the `cloud-app` slot; the clock stops when the hub holds the
//! reported properties saying the new serial is `running`. Two builds of `sensor-reader`
//! alternate, both already on the device after the warm-up, so the download is excluded as
//! the goal says. Median of 5.
//!
//! Anchors, in the same run: the app's sandboxed start (init's line switching the slot to its
//! line saying the new app started, as they reach `testudo run`'s output) and the module's
//! download (the agent's `fetch_module` from the same nginx, HTTPS on loopback).
//!
//! Release binaries: `cargo build --release --workspace` first, then
//! `cargo bench -p testudo --bench app_deployment`.

#![allow(clippy::unwrap_used)] // a benchmark: a failed set-up step is a failed run

#[path = "../tests/deploy_common/mod.rs"]
mod deploy_common;
#[path = "../tests/runtime_common/mod.rs"]
mod runtime_common;
#[path = "common/slot_deployment.rs"]
mod slot_deployment;
#[path = "common/timing.rs"]
mod timing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_common::*;
use slot_deployment::*;
use testudo_hub_service::{ServiceClient, ServiceConnectionString};

/// Connects to 127.0.0.1 whatever the name (nginx's certificate is for `localhost`).
#[derive(Debug)]
struct Loopback(u16);

impl testudo_agent::dial::Dialer for Loopback {
    fn dial(
        &self,
        _host: &str,
        _port: u16,
    ) -> Result<std::net::TcpStream, Box<dyn std::error::Error + Send + Sync>> {
        Ok(std::net::TcpStream::connect(("127.0.0.1", self.0))?)
    }
}

/// From the slot's switch line for `serial` to its started line, as they reached this
/// process (arrival times recorded by the output readers).
fn start_time(gateway: &Gateway, serial: u64) -> Option<Duration> {
    let switched = format!("{SLOT}: app slot: serial {serial}:");
    let started = format!("{SLOT}: started");
    let arrivals = gateway.run.arrivals.lock().ok()?;
    let (switch, _) = arrivals.iter().find(|(_, line)| line.contains(&switched))?;
    let (start, _) = arrivals
        .iter()
        .find(|(at, line)| at >= switch && line.contains(&started))?;
    Some(start.duration_since(*switch))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("app_deployment: bench");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = runtime_common::repo_root().join("wasm-apps/sensor-reader.c");
    let mut gateway = Gateway::start(&[], 3000);
    let modules: Vec<Module> = ["1", "2"]
        .iter()
        .map(|version| {
            let out = dir.path().join(format!("v{version}.wasm"));
            let define = format!("SENSOR_READER_VERSION={version}");
            testudo_testkit::wasm::compile_c_app(&source, &out, &[&define]).unwrap();
            std::fs::copy(
                &out,
                gateway.artifacts.root().join(format!("v{version}.wasm")),
            )
            .unwrap();
            Module {
                bytes: std::fs::read(&out).unwrap(),
                url: format!(
                    "https://localhost:{}/v{version}.wasm",
                    gateway.artifacts.port()
                ),
            }
        })
        .collect();
    let plan = testudo_plan::Plan::from_bytes(&std::fs::read(&gateway.plan).unwrap()).unwrap();
    let mut deployer = Deployer {
        client: ServiceClient::new(
            ServiceConnectionString::parse(&gateway.service).unwrap(),
            &std::fs::read_to_string(gateway.state.join("ca.pem")).unwrap(),
        )
        .unwrap(),
        key: testudo_deployment::read_signing_key(&gateway.keys.join("deploy.ed25519")).unwrap(),
        uses: plan.app_slots[SLOT].max_uses.clone(),
        compatible: plan.compatible,
        device: DEVICE.to_owned(),
        serial: 0,
    };
    // One deployment: acknowledged -> reported running, and the sandboxed start within it;
    // then the health check is let pass.
    let mut round = |gateway: &mut Gateway, module: &Module| -> (Duration, Option<Duration>) {
        let (serial, acknowledged) = deployer.deploy(module);
        let running = deployer
            .wait_running(serial, WAIT)
            .duration_since(acknowledged);
        std::thread::sleep(Duration::from_millis(3500));
        (running, start_time(gateway, serial))
    };
    // Warm-up: both modules fetched, compiled and cached once.
    round(&mut gateway, &modules[0]);
    round(&mut gateway, &modules[1]);

    let tls = testudo_agent::TlsSettings {
        ca_pem: gateway.artifacts.ca_pem().as_bytes().to_vec(),
        client_identity: None,
    }
    .client_config("localhost")
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dialer: Arc<dyn testudo_agent::dial::Dialer> = Arc::new(Loopback(gateway.artifacts.port()));
    let download = |module: &Module| {
        let sha256 = module.sha256();
        let request = testudo_agent::module_fetch::ModuleRequest {
            url: &module.url,
            size: module.bytes.len() as u64,
            sha256: &sha256,
        };
        let started = Instant::now();
        runtime
            .block_on(testudo_agent::module_fetch::fetch_module(
                dialer.clone(),
                tls.clone(),
                &request,
                &mut std::io::sink(),
                |_, _| {},
            ))
            .unwrap();
        started.elapsed()
    };

    let (mut running, mut starts, mut downloads) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..5 {
        let module = &modules[i % 2];
        let (to_running, start) = round(&mut gateway, module);
        running.push(to_running);
        starts.extend(start);
        downloads.push(download(module));
    }
    report(
        "desired change acknowledged by the hub -> new app reported running (module on the device)",
        running,
        vec![
            (
                "the app's sandboxed start (init's switch line -> its started line)".to_owned(),
                starts,
            ),
            (
                format!(
                    "the module's download ({} bytes, HTTPS from nginx on loopback)",
                    modules[0].bytes.len()
                ),
                downloads,
            ),
        ],
    );
    println!("goal: < 1000 ms excluding the download");
    gateway.run.stop_cleanly();
}
