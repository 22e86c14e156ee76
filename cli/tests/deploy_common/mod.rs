//! A gateway running under `testudo run` on this host, connected to the hub emulator, with a
//! real nginx serving artifacts: shared by the end-to-end deployment test and benchmark.
#![allow(dead_code)] // each user takes what it needs
#![allow(clippy::unwrap_used)] // test support: a failed set-up step is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::runtime_common::{repo_root, RunningTestudo};

pub const DEVICE: &str = "gateway-0001";
pub const WAIT: Duration = Duration::from_secs(60);

/// The `testudo` binary under test.
pub fn testudo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
}

pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A child killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `testudo hub serve` on free ports: the emulator, its MQTT and HTTPS ports and service
/// connection string.
pub fn serve(state: &Path) -> (Killed, u16, u16, String) {
    let mut child = testudo()
        .args(["hub", "serve", "--state"])
        .arg(state)
        .args(["--mqtt-port", "0", "--https-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let emulator = Killed(child);
    let mut mqtt_port = None;
    let mut https_port = None;
    let mut service = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(address) = line.strip_prefix("mqtt: ") {
            mqtt_port = address.rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if let Some(address) = line.strip_prefix("https: ") {
            https_port = address.rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if let Some(connection_string) = line.strip_prefix("service: ") {
            service = Some(connection_string.to_owned());
            break;
        }
    }
    (
        emulator,
        mqtt_port.unwrap(),
        https_port.unwrap(),
        service.unwrap(),
    )
}

/// The gateway example as a plan for this host: the agent talks to the emulator on
/// `localhost` with a symmetric key (no TPM, no DPS) and may reach the artifact servers (nginx
/// and the emulator's store).
pub fn host_plan(dir: &Path, mqtt_port: u16, https_port: u16, artifacts_port: u16) -> PathBuf {
    let gateway = repo_root().join("system-config/examples/gateway.ncl");
    let plan_file = dir.join("gateway.plan.json");
    ok(testudo()
        .arg("plan")
        .arg(&gateway)
        .arg("-o")
        .arg(&plan_file)
        .output()
        .unwrap());
    let mut plan: Value = serde_json::from_slice(&std::fs::read(&plan_file).unwrap()).unwrap();
    let components = plan["components"].as_object_mut().unwrap();
    components.remove("tpm");
    let agent = &mut components["agent"];
    agent["uses"].as_object_mut().unwrap().remove("tpm");
    agent["after"] = json!(["log", "net", "storage"]);
    agent["uses"]["net"]["allow"] = json!([
        format!("localhost:{artifacts_port}"),
        format!("localhost:{https_port}"),
        format!("localhost:{mqtt_port}"),
    ]);
    let cloud = plan["cloud"].as_object_mut().unwrap();
    cloud.remove("dps");
    cloud.remove("trust_anchors");
    cloud.insert("hub".into(), json!("localhost"));
    cloud.insert("identity".into(), json!("sas"));
    cloud.insert("mqtt_port".into(), json!(mqtt_port));
    std::fs::write(&plan_file, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    plan_file
}

pub fn reported_apps(state: &Path) -> Value {
    let text = ok(testudo()
        .args(["hub", "twin", "--state"])
        .arg(state)
        .arg(DEVICE)
        .output()
        .unwrap());
    let twin: Value = serde_json::from_str(&text).unwrap();
    twin["properties"]["reported"]["apps"].clone()
}

pub fn wait_reported(state: &Path, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let apps = reported_apps(state);
        if check(&apps) {
            return apps;
        }
        assert!(
            Instant::now() < deadline,
            "no {what}; reported apps: {apps}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Telemetry the emulator captured from the deployed app (the agent names the sending app).
pub fn app_telemetry(state: &Path, app: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(state.join("telemetry.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["properties"]["testudo-app"] == app)
        .collect()
}

/// Everything around a running gateway.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub keys: PathBuf,
    pub state: PathBuf,
    pub service: String,
    pub plan: PathBuf,
    pub artifacts: testudo_testkit::nginx::Nginx,
    pub run: RunningTestudo,
    _emulator: Killed,
}

impl Gateway {
    /// Keys, the emulator with the device registered, nginx serving `modules` (files copied
    /// into its root under their names), the plan, the agent's credentials, then `testudo
    /// run` (health check `health_check_ms`) until ready.
    pub fn start(modules: &[&Path], health_check_ms: u64) -> Gateway {
        let root = repo_root();
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        ok(testudo()
            .args(["keys", "init"])
            .arg(&keys)
            .output()
            .unwrap());

        let state = dir.path().join("hub");
        let (emulator, mqtt_port, https_port, service) = serve(&state);
        let device = ok(testudo()
            .args(["hub", "device", "add", "--state"])
            .arg(&state)
            .arg(DEVICE)
            .output()
            .unwrap());
        let device_key = device
            .trim()
            .split(';')
            .find_map(|part| part.strip_prefix("SharedAccessKey="))
            .unwrap()
            .to_owned();

        let artifacts = testudo_testkit::nginx::start("localhost", &Default::default());
        for module in modules {
            std::fs::copy(module, artifacts.root().join(module.file_name().unwrap())).unwrap();
        }
        let plan = host_plan(dir.path(), mqtt_port, https_port, artifacts.port());

        // The agent's credentials, as the factory leaves them on the data partition: the hub's CA
        // (and the artifact server's: it trusts both for TLS) and the device key.
        let agent_storage = dir.path().join("data/agent");
        std::fs::create_dir_all(&agent_storage).unwrap();
        let mut trust = std::fs::read_to_string(state.join("ca.pem")).unwrap();
        trust.push_str(artifacts.ca_pem());
        std::fs::write(agent_storage.join("hub-ca.pem"), trust).unwrap();
        std::fs::write(agent_storage.join("device-key"), &device_key).unwrap();

        let mut command = testudo();
        command
            .arg("run")
            .arg(&plan)
            .arg("--app-root")
            .arg(&root)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--deploy-key")
            .arg(keys.join("deploy.ed25519.pub"))
            .args(["--health-check-ms", &health_check_ms.to_string()])
            .current_dir(&root);
        let mut run = RunningTestudo::spawn(command, "testudo run must start");
        run.wait_for("out: ready:", WAIT);

        Gateway {
            dir,
            keys,
            state,
            service,
            plan,
            artifacts,
            run,
            _emulator: emulator,
        }
    }
}

/// Development keys in `dir/keys`, a hub emulator on free ports with state in `dir/hub`, and
/// device `device` added to it: what every `testudo deploy` test starts from.
pub struct HubWithDevice {
    /// The keys directory (`testudo keys init`).
    pub keys: std::path::PathBuf,
    /// The emulator's state directory.
    pub state: std::path::PathBuf,
    /// The hub's service connection string.
    pub hub: String,
    /// The emulator's CA certificate.
    pub ca: std::path::PathBuf,
    /// The emulator, stopped when dropped.
    _emulator: Killed,
}

/// Sets up a [`HubWithDevice`] in `dir`.
pub fn hub_with_device(dir: &Path, device: &str) -> HubWithDevice {
    let keys = dir.join("keys");
    ok(testudo()
        .args(["keys", "init"])
        .arg(&keys)
        .output()
        .unwrap());
    let state = dir.join("hub");
    let (emulator, _, _, hub) = serve(&state);
    ok(testudo()
        .args(["hub", "device", "add", "--state"])
        .arg(&state)
        .arg(device)
        .output()
        .unwrap());
    HubWithDevice {
        keys,
        ca: state.join("ca.pem"),
        state,
        hub,
        _emulator: emulator,
    }
}
