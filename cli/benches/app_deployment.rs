//! Benchmark: the defining loop on this host. A signed deployment is set as the device twin's
//! desired properties (the hub acknowledges the PATCH: the clock starts); the gateway under
//! `testudo run` (agent connected to the emulator over MQTT/TLS) relays it to init, which
//! verifies it and switches the `cloud-app` slot; the clock stops when the twin's reported
//! properties say the new serial is `running`. Two builds of `sensor-reader` alternate, both
//! already on the device after the warm-up, so the download is excluded as the goal says.
//! Median of 5.
//!
//! Anchors, in the same run: the module's download (the agent's `fetch_module` from the same
//! nginx, over HTTPS on loopback) and the app's sandboxed start (from init's line switching
//! the slot to its line saying the new app started, as they reach `testudo run`'s output).
//!
//! Release binaries: `cargo build --release --workspace` first, then
//! `cargo bench -p testudo --bench app_deployment`.

#![allow(clippy::unwrap_used)] // a benchmark: a failed set-up step is a failed run

#[path = "../tests/deploy_common/mod.rs"]
mod deploy_common;
#[path = "../tests/runtime_common/mod.rs"]
mod runtime_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_common::*;
use testudo_deployment::{Action, App, AppRelease, Deployment};
use testudo_hub_service::{ServiceClient, ServiceConnectionString};

const SLOT: &str = "cloud-app";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn sha256(bytes: &[u8]) -> String {
    let mut hasher = testudo_deployment::ModuleHasher::new();
    hasher.update(bytes);
    hex::encode(hasher.finish().sha256)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Connects to 127.0.0.1 whatever the name (the bench's nginx certificate is for `localhost`).
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let source = runtime_common::repo_root().join("wasm-apps/sensor-reader.c");
    let modules: Vec<std::path::PathBuf> = ["1", "2"]
        .iter()
        .map(|version| {
            let out = dir.path().join(format!("v{version}/sensor-reader.wasm"));
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let define = format!("SENSOR_READER_VERSION={version}");
            testudo_testkit::wasm::compile_c_app(&source, &out, &[&define]).unwrap();
            out
        })
        .collect();
    // nginx serves both under their version's directory.
    let mut gateway = Gateway::start(&[], 3000);
    let urls: Vec<String> = modules
        .iter()
        .enumerate()
        .map(|(i, module)| {
            let name = format!("v{}.wasm", i + 1);
            std::fs::copy(module, gateway.artifacts.root().join(&name)).unwrap();
            format!("https://localhost:{}/{name}", gateway.artifacts.port())
        })
        .collect();
    let bytes: Vec<Vec<u8>> = modules.iter().map(|m| std::fs::read(m).unwrap()).collect();
    let compatible = testudo_plan::Plan::from_bytes(&std::fs::read(&gateway.plan).unwrap())
        .unwrap()
        .compatible;
    let key = testudo_deployment::read_signing_key(&gateway.keys.join("deploy.ed25519")).unwrap();
    let client = ServiceClient::new(
        ServiceConnectionString::parse(&gateway.service).unwrap(),
        &std::fs::read_to_string(gateway.state.join("ca.pem")).unwrap(),
    )
    .unwrap();

    let mut serial = 0u64;
    let mut deploy = |gateway: &mut Gateway| -> (Duration, Duration) {
        serial += 1;
        let i = (serial % 2) as usize;
        let app = App {
            name: "sensor-reader".into(),
            version: format!("1.0.{serial}"),
            sha256: sha256(&bytes[i]),
            size: bytes[i].len() as u64,
        };
        let deployment = Deployment {
            slot: SLOT.into(),
            compatible: compatible.clone(),
            serial,
            action: Action::Deploy(AppRelease {
                app,
                uses: BTreeMap::new(),
                url: Some(urls[i].clone()),
            }),
        };
        let token = testudo_deployment::sign(&deployment, &key).unwrap();
        let patch = testudo_deployment::twin::desired_patch(SLOT, &token);
        client.patch_desired(DEVICE, &patch).unwrap();
        let acknowledged = Instant::now();
        let switched = format!("{SLOT}: app slot: serial {serial}:");
        let mut switch_seen = None;
        let mut start_seen = None;
        loop {
            let twin = client.twin(DEVICE).unwrap();
            let apps = &twin["properties"]["reported"]["apps"];
            if apps[SLOT]["serial"] == serial && apps[SLOT]["runtimeStatus"] == "running" {
                let running = acknowledged.elapsed();
                // The slot's switch and start lines, as they arrived.
                while let Some(line) = gateway.run.next_line(Duration::from_millis(0)) {
                    let now = Instant::now();
                    if line.contains(&switched) {
                        switch_seen.get_or_insert(now);
                    }
                    if switch_seen.is_some() && line.contains(&format!("{SLOT}: started")) {
                        start_seen.get_or_insert(now);
                    }
                }
                let start = match (switch_seen, start_seen) {
                    (Some(switch), Some(start)) => start.duration_since(switch),
                    _ => Duration::ZERO,
                };
                // Let the health check pass before the next one.
                std::thread::sleep(Duration::from_millis(3300));
                return (running, start);
            }
            while let Some(line) = gateway.run.next_line(Duration::from_millis(1)) {
                let now = Instant::now();
                if line.contains(&switched) {
                    switch_seen.get_or_insert(now);
                }
                if switch_seen.is_some() && line.contains(&format!("{SLOT}: started")) {
                    start_seen.get_or_insert(now);
                }
            }
            assert!(
                acknowledged.elapsed() < WAIT,
                "serial {serial} never ran: {apps}"
            );
        }
    };
    // Warm-up: both modules fetched, compiled and cached once.
    deploy(&mut gateway);
    deploy(&mut gateway);

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
    let download = |i: usize| {
        let sha256 = sha256(&bytes[i]);
        let request = testudo_agent::module_fetch::ModuleRequest {
            url: &urls[i],
            size: bytes[i].len() as u64,
            sha256: &sha256,
        };
        let started = Instant::now();
        let mut sink = std::io::sink();
        runtime
            .block_on(testudo_agent::module_fetch::fetch_module(
                dialer.clone(),
                tls.clone(),
                &request,
                &mut sink,
                |_, _| {},
            ))
            .unwrap();
        started.elapsed()
    };

    let (mut running, mut starts, mut downloads) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        let (to_running, start) = deploy(&mut gateway);
        running.push(to_running);
        starts.push(start);
        downloads.push(download(round % 2));
    }
    let (running, start, download) = (median(running), median(starts), median(downloads));
    println!(
        "desired change acknowledged by the hub -> new app reported running (module on the device): median {:.1} ms",
        ms(running)
    );
    println!(
        "anchor: the app's sandboxed start (init's switch line -> its started line): median {:.1} ms ({:.1}x)",
        ms(start),
        ms(running) / ms(start).max(1e-3)
    );
    println!(
        "anchor: the module's download ({} bytes, HTTPS from nginx on loopback): median {:.1} ms ({:.1}x)",
        bytes[0].len(),
        ms(download),
        ms(running) / ms(download).max(1e-3)
    );
    println!("goal: < 1000 ms excluding the download");
    gateway.run.stop_cleanly();
}
