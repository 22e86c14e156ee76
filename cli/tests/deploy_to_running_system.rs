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
//! deployment whose module is not on the server is reported as failed (500, naming the
//! status) and the running app stays.

mod runtime_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_common::{repo_root, RunningTestudo};
use serde_json::{json, Value};

const DEVICE: &str = "gateway-0001";
const WAIT: Duration = Duration::from_secs(60);

fn testudo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `testudo hub serve` on free ports: the emulator, its MQTT and HTTPS ports and service
/// connection string.
fn serve(state: &Path) -> (Killed, u16, u16, String) {
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
fn host_plan(dir: &Path, mqtt_port: u16, https_port: u16, artifacts_port: u16) -> PathBuf {
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

fn reported_apps(state: &Path) -> Value {
    let text = ok(testudo()
        .args(["hub", "twin", "--state"])
        .arg(state)
        .arg(DEVICE)
        .output()
        .unwrap());
    let twin: Value = serde_json::from_str(&text).unwrap();
    twin["properties"]["reported"]["apps"].clone()
}

fn wait_reported(state: &Path, what: &str, check: impl Fn(&Value) -> bool) -> Value {
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
fn app_telemetry(state: &Path, app: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(state.join("telemetry.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["properties"]["testudo-app"] == app)
        .collect()
}

#[test]
fn a_twin_change_deploys_a_signed_app_into_the_running_gateway() {
    let root = repo_root();
    let module = root.join("wasm-apps/sensor-reader.wasm");
    assert!(
        module.is_file(),
        "wasm-apps/sensor-reader.wasm is missing: build the example apps with `cargo xtask apps` (cargo xtask test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ok(testudo()
        .args(["keys", "init"])
        .arg(&keys)
        .output()
        .unwrap());

    let state = dir.path().join("hub");
    let (_emulator, mqtt_port, https_port, service) = serve(&state);
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
    std::fs::copy(&module, artifacts.root().join("sensor-reader.wasm")).unwrap();
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
        .args(["--health-check-ms", "1000"])
        .current_dir(&root);
    let mut run = RunningTestudo::spawn(command, "testudo run must start");
    run.wait_for("out: ready:", WAIT);

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
    let url = format!("https://localhost:{}/sensor-reader.wasm", artifacts.port());
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
        artifacts.access_log().contains("/sensor-reader.wasm 200"),
        "the module was not fetched from the artifact server: {}",
        artifacts.access_log()
    );
    let deadline = Instant::now() + WAIT;
    while app_telemetry(&state, "cloud-app").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no telemetry from the deployed app; run output:\n{}",
            run.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The next version (the same app as a component) through the emulator's artifact store.
    let component = dir.path().join("1.1.0/sensor-reader.wasm");
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

    // A module the server does not have: reported as failed, the app keeps running.
    let missing = format!("https://localhost:{}/missing.wasm", artifacts.port());
    ok(deploy(
        &root.join("wasm-apps/forwarder.wasm"),
        "1.2.0",
        Some(&missing),
    ));
    let apps = wait_reported(&state, "the failed deployment", |apps| {
        apps["lastDesiredStatus"]["code"] == 500
    });
    let description = apps["lastDesiredStatus"]["description"].as_str().unwrap();
    assert!(description.contains("404"), "{apps}");
    assert_eq!(apps["cloud-app"]["version"], "1.1.0", "{apps}");
    assert_eq!(apps["cloud-app"]["runtimeStatus"], "running", "{apps}");
    run.stop_cleanly();
}
