//! The factory and the cloud around a development gateway VM: the image of
//! `gateway-dev.ncl`, the hub emulator on this host, the VM's TPM state and enrollment, and
//! Microsoft's service SDK.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../vm_common/mod.rs"]
mod vm_common;
pub use vm_common::*;

/// The device id (and DPS registration id) of the gateway examples.
pub const DEVICE: &str = "gateway-0001";
/// The development hub's name (`gateway-dev.ncl`'s `hosts` maps it to the VM's host).
pub const HUB_HOST: &str = "hub.testudo.dev";
/// The development ID scope.
pub const ID_SCOPE: &str = "0ne00000001";
/// The development CA, in the repository.
pub const DEV_CA_DIR: &str = "tests/hub/dev-ca";

/// Nickel for a variant whose updater confirms a trial slot after 5 s of health (the
/// example's default is longer).
pub const QUICK_CONFIRM: &str =
    "components.updater.args = [\"--stable-for-ms\", \"5000\", \"--confirm-within-ms\", \"300000\"],";

/// Writes `root/name.ncl`: `gateway-dev.ncl` with `extra` merged in (Nickel). Its path.
fn variant_config(root: &std::path::Path, name: &str, extra: &str) -> String {
    let config = root.join(format!("{name}.ncl"));
    let text = format!(
        "(import \"{}\")\n& {{\n{extra}\n}}\n",
        repo()
            .join("system-config/examples/gateway-dev.ncl")
            .display()
    );
    std::fs::write(&config, text).unwrap();
    config.display().to_string()
}

/// Holds the lock on 127.0.0.1:8883 and :443 (shared with the other tests that need them).
pub struct PortLock {
    _file: File,
}

/// Takes the port lock the official-SDK tests take for 8883.
pub fn lock_hub_ports() -> PortLock {
    let file = File::create(std::env::temp_dir().join("testudo-hub-port-8883.lock")).unwrap();
    file.lock().unwrap();
    PortLock { _file: file }
}

/// Fails naming what is missing unless Microsoft's service SDK can be imported.
pub fn require_service_sdk() {
    if let Err(missing) = testudo_testkit::python::require_modules(
        &["azure.iot.hub"],
        "azure-iot-hub (Microsoft's official IoT Hub service SDK)",
    ) {
        panic!("{missing}");
    }
}

/// A built development gateway and the directories of its hub and VM.
pub struct DeviceRig {
    tmp: tempfile::TempDir,
    /// The disk image as built.
    built_disk: PathBuf,
    /// The disk image the VM boots.
    pub disk: PathBuf,
    /// The emulator's state directory.
    pub hub_state: PathBuf,
    /// The VM's state directory (firmware variables, TPM).
    pub vm_state: PathBuf,
    /// XDG data home (development keys).
    pub data_home: PathBuf,
}

/// The hub emulator process, stopped when dropped.
pub struct HubProcess(Child);

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl DeviceRig {
    /// Builds `gateway-dev.ncl` (its trust anchors are the development CA).
    pub fn build() -> DeviceRig {
        DeviceRig::build_with("")
    }

    /// Builds `gateway-dev.ncl` with `extra` merged in (Nickel; none when empty).
    pub fn build_with(extra: &str) -> DeviceRig {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data_home = root.join("data-home");
        let config = if extra.is_empty() {
            "system-config/examples/gateway-dev.ncl".to_owned()
        } else {
            variant_config(&root, "device", extra)
        };
        let out = build_image(
            &root,
            &config,
            &[&format!("{DEV_CA_DIR}/ca.pem")],
            &data_home,
        );
        DeviceRig {
            built_disk: out.join("disk.img"),
            disk: out.join("disk.img"),
            hub_state: root.join("hub"),
            vm_state: root.join("vm"),
            data_home,
            tmp,
        }
    }

    /// A new device from the same build: a copy of the disk as built (an empty data
    /// partition) and a fresh VM state (a new TPM, hence a new endorsement key to enroll).
    pub fn renew_device(&mut self, label: &str) {
        let root = self.tmp.path();
        self.disk = root.join(format!("disk-{label}.img"));
        self.vm_state = root.join(format!("vm-{label}"));
        run(
            "cp",
            &[
                "--sparse=always",
                self.built_disk.to_str().unwrap(),
                self.disk.to_str().unwrap(),
            ],
        );
    }

    /// Starts `testudo hub serve` for the development gateway and waits until it listens.
    pub fn serve_hub(&self) -> HubProcess {
        let ca = repo().join(DEV_CA_DIR);
        let child = testudo_command(
            &[
                "hub",
                "serve",
                "--state",
                self.hub_state.to_str().unwrap(),
                "--host",
                HUB_HOST,
                "--id-scope",
                ID_SCOPE,
                "--ca",
                ca.to_str().unwrap(),
            ],
            &self.data_home,
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
        let hub = HubProcess(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !["127.0.0.1:8883", "127.0.0.1:443"]
            .iter()
            .all(|address| TcpStream::connect(address).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "the hub emulator does not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        hub
    }

    /// `testudo vm tpm-ek`: the EK of the VM's TPM (created with its state), in a file.
    pub fn tpm_ek(&self) -> PathBuf {
        let ek = testudo_ok(
            &["vm", "tpm-ek", "--state", self.vm_state.to_str().unwrap()],
            &self.data_home,
        );
        let path = self.tmp.path().join("ek.pub");
        std::fs::write(&path, ek).unwrap();
        path
    }

    /// `testudo hub enrollment add`: an individual TPM enrollment of the device (replacing an
    /// earlier one of the same id).
    pub fn enroll(&self, ek: &std::path::Path) {
        // An earlier enrollment of this id, if any, goes first; none is not an error here.
        let _ = testudo(
            &[
                "hub",
                "enrollment",
                "remove",
                "--state",
                self.hub_state.to_str().unwrap(),
                DEVICE,
            ],
            &self.data_home,
        );
        testudo_ok(
            &[
                "hub",
                "enrollment",
                "add",
                "--state",
                self.hub_state.to_str().unwrap(),
                DEVICE,
                "--tpm-ek",
                ek.to_str().unwrap(),
            ],
            &self.data_home,
        );
    }

    /// Boots the disk with the VM's state (the same TPM every time).
    pub fn boot(&self) -> RunningVm {
        RunningVm::start(
            &[
                self.disk.to_str().unwrap(),
                "--state",
                self.vm_state.to_str().unwrap(),
                "--timeout",
                "1800",
            ],
            &self.data_home,
        )
    }

    /// The emulator's service connection string (`testudo hub connection-string`).
    pub fn service_connection_string(&self) -> String {
        testudo_ok(
            &[
                "hub",
                "connection-string",
                "--state",
                self.hub_state.to_str().unwrap(),
            ],
            &self.data_home,
        )
        .trim()
        .to_owned()
    }

    /// `testudo deploy app` of `module` (a repository path) as `version` into the gateway's
    /// `cloud-app` slot, signed with the image's development deploy key; without `--url`, so
    /// the module goes to the emulator's artifact store, which the device reaches under the
    /// hub's name. Returns what the command printed.
    pub fn deploy(&self, module: &str, version: &str) -> String {
        let module = repo().join(module);
        let config = repo().join("system-config/examples/gateway-dev.ncl");
        self.deploy_command(
            &[
                "app",
                DEVICE,
                "--slot",
                "cloud-app",
                "--module",
                module.to_str().unwrap(),
                "--app-version",
                version,
                "--config",
                config.to_str().unwrap(),
            ]
            .map(str::to_owned),
        )
    }

    /// `testudo deploy ARGS...` with the development keys and the emulator reached on this
    /// host under the hub's name; returns what it printed.
    fn deploy_command(&self, args: &[String]) -> String {
        let keys = self.data_home.join("testudo/dev-keys");
        let ca = self.hub_state.join("ca.pem");
        let mut all = vec!["deploy".to_owned()];
        all.extend(args.iter().cloned());
        all.extend(
            [
                "--keys",
                keys.to_str().unwrap(),
                "--hub",
                &self.service_connection_string(),
                "--ca",
                ca.to_str().unwrap(),
                "--hub-address",
                "127.0.0.1:443",
            ]
            .map(str::to_owned),
        );
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        testudo_ok(&all, &self.data_home)
    }

    /// Builds a variant of `gateway-dev.ncl` (`extra` merged in, Nickel) with the same keys:
    /// its output directory (`update.raucb` is what an update to it installs).
    pub fn build_variant(&self, name: &str, extra: &str) -> PathBuf {
        let root = self.tmp.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        let config = variant_config(&root, name, extra);
        build_image(
            &root,
            &config,
            &[&format!("{DEV_CA_DIR}/ca.pem")],
            &self.data_home,
        )
    }

    /// A client of the emulator's service API, reaching it on this host under the hub's name.
    #[cfg(feature = "deploy")]
    pub fn service_client(&self) -> testudo_hub_service::ServiceClient {
        testudo_hub_service::ServiceClient::new(
            testudo_hub_service::ServiceConnectionString::parse(&self.service_connection_string())
                .unwrap(),
            &std::fs::read_to_string(self.hub_state.join("ca.pem")).unwrap(),
        )
        .unwrap()
        .connect_to("127.0.0.1:443".parse().unwrap())
    }

    /// `testudo bundle delta` from bundle `from` to bundle `to`, signed with the development
    /// keys, written to `out`; returns what it printed.
    pub fn bundle_delta(
        &self,
        from: &std::path::Path,
        to: &std::path::Path,
        out: &std::path::Path,
    ) -> String {
        let keys = self.data_home.join("testudo/dev-keys");
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        testudo_ok(
            &[
                "bundle",
                "delta",
                "--keyring",
                &path(&keys.join("ca.pem")),
                "--from",
                &path(from),
                "--to",
                &path(to),
                "--cert",
                &path(&keys.join("signing.pem")),
                "--key",
                &path(&keys.join("signing.key")),
                "-o",
                &path(out),
            ],
            &self.data_home,
        )
    }

    /// `testudo deploy os` of `bundle` to the gateway, signed under the development update
    /// root; without `--url`, so the bundle goes to the emulator's artifact store. Returns
    /// what the command printed.
    pub fn deploy_os(&self, bundle: &std::path::Path) -> String {
        self.deploy_os_with_deltas(bundle, &[])
    }

    /// As [`Self::deploy_os`], offering `deltas` (delta bundles of the same update) too.
    pub fn deploy_os_with_deltas(
        &self,
        bundle: &std::path::Path,
        deltas: &[&std::path::Path],
    ) -> String {
        let mut args = vec![
            "os".to_owned(),
            DEVICE.to_owned(),
            "--bundle".to_owned(),
            bundle.to_str().unwrap().to_owned(),
        ];
        for delta in deltas {
            args.push("--delta".to_owned());
            args.push(delta.to_str().unwrap().to_owned());
        }
        self.deploy_command(&args)
    }

    /// Polls the twin (Microsoft's service SDK) until `done` holds for the reported
    /// `deviceUpdate.agent`, or fails after `timeout` showing it and the VM's console.
    pub fn wait_os_update_report(
        &self,
        vm: &RunningVm,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let twin = self.service(&["twin", DEVICE]);
            let agent = &twin["deviceUpdate"]["agent"];
            if done(agent) {
                return agent.clone();
            }
            assert!(
                Instant::now() < deadline,
                "deviceUpdate.agent is not as expected: {agent}\n{}",
                vm.console()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The telemetry messages the emulator captured from `app` on the device.
    pub fn app_telemetry(&self, app: &str) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.hub_state.join("telemetry.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|message| message["properties"]["testudo-app"] == app)
            .collect()
    }

    /// Runs the service-side script (`tests/sdk/device_service.py`) with `args`; its JSON.
    pub fn service(&self, args: &[&str]) -> Value {
        let connection_string = self.service_connection_string();
        let script = repo().join("cli/tests/sdk/device_service.py");
        let output = testudo_testkit::python::command()
            .arg(&script)
            .args(args)
            .env("HUB_SERVICE_CS", &connection_string)
            .env("HUB_CA", self.hub_state.join("ca.pem"))
            .env("HUB_ADDRESSES", format!("{HUB_HOST}=127.0.0.1"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "device_service.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "device_service.py {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}
