//! What both deployment benchmarks do to the hub: sign a deployment of a module into the
//! `cloud-app` slot with the next serial, set it as desired properties through the service
//! API (the hub's acknowledgement starts the clock), and watch the reported properties until
//! that serial is `running`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::timing::{median, ms};
use testudo_deployment::{Action, App, AppRelease, Deployment, SigningKey};
use testudo_hub_service::ServiceClient;

/// The slot the benchmarks deploy into.
pub const SLOT: &str = "cloud-app";

/// A module to deploy: its bytes and where the device fetches it.
pub struct Module {
    pub bytes: Vec<u8>,
    pub url: String,
}

impl Module {
    /// Its sha256, lower-case hex.
    pub fn sha256(&self) -> String {
        let mut hasher = testudo_deployment::ModuleHasher::new();
        hasher.update(&self.bytes);
        hex::encode(hasher.finish().sha256)
    }
}

/// Signs and sets deployments for one device.
pub struct Deployer {
    pub client: ServiceClient,
    pub key: SigningKey,
    pub compatible: String,
    pub device: String,
    pub serial: u64,
    /// The routes deployments ask for (the slot's `max_uses`).
    pub uses: BTreeMap<String, testudo_plan::Route>,
}

impl Deployer {
    /// Sets the next serial's deployment of `module`; returns the serial and when the hub
    /// acknowledged it.
    pub fn deploy(&mut self, module: &Module) -> (u64, Instant) {
        self.serial += 1;
        let deployment = Deployment {
            slot: SLOT.into(),
            compatible: self.compatible.clone(),
            serial: self.serial,
            action: Action::Deploy(AppRelease {
                app: App {
                    name: "sensor-reader".into(),
                    version: format!("1.0.{}", self.serial),
                    sha256: module.sha256(),
                    size: module.bytes.len() as u64,
                },
                uses: self.uses.clone(),
                url: Some(module.url.clone()),
            }),
        };
        let token = testudo_deployment::sign(&deployment, &self.key).unwrap();
        let patch = testudo_deployment::twin::desired_patch(SLOT, &token);
        self.client.patch_desired(&self.device, &patch).unwrap();
        (self.serial, Instant::now())
    }

    /// Waits until the hub holds a report of `serial` running in the slot; when it saw it.
    pub fn wait_running(&self, serial: u64, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let twin = self.client.twin(&self.device).unwrap();
            let apps: &Value = &twin["properties"]["reported"]["apps"];
            if apps[SLOT]["serial"] == serial && apps[SLOT]["runtimeStatus"] == "running" {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "serial {serial} never ran: {apps}"
            );
        }
    }
}

/// Prints a benchmark's result: the median of `running` (`measured` says what), then each
/// anchor with samples (`(what, samples)`), its median and the result's ratio to it.
pub fn report(measured: &str, running: Vec<Duration>, anchors: Vec<(String, Vec<Duration>)>) {
    let running = median(running);
    println!("{measured}: median {:.1} ms", ms(running));
    for (what, samples) in anchors.into_iter().filter(|(_, s)| !s.is_empty()) {
        let anchor = median(samples);
        println!(
            "anchor: {what}: median {:.1} ms ({:.1}x)",
            ms(anchor),
            ms(running) / ms(anchor).max(1e-3)
        );
    }
}
