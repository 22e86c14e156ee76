#![cfg(all(feature = "agent", feature = "hub"))]
//! Promise: `testudo agent run` against `testudo hub serve` reports device info and echoes a
//! desired change set with `testudo hub twin --desired`, end to end through the CLI.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn testudo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn twin(state: &std::path::Path, desired: Option<&str>) -> serde_json::Value {
    let mut command = testudo();
    command
        .args(["hub", "twin", "--state"])
        .arg(state)
        .arg("cli-agent");
    if let Some(desired) = desired {
        command.args(["--desired", desired]);
    }
    let out = command.output().expect("run testudo hub twin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("twin JSON")
}

fn wait_for(state: &std::path::Path, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reported = twin(state, None)["properties"]["reported"].clone();
        if check(&reported) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; reported: {reported}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agent_run_echoes_desired_properties() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("hub");
    let mut server = testudo()
        .args(["hub", "serve", "--state"])
        .arg(&state)
        .args(["--mqtt-port", "0", "--https-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let server = Killed(server);
    let mut mqtt_port = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("mqtt: ") {
            mqtt_port = addr.rsplit(':').next().map(str::to_string);
        }
        if line.starts_with("service: ") {
            break;
        }
    }
    let mqtt_port = mqtt_port.expect("serve printed its MQTT address");
    let added = testudo()
        .args(["hub", "device", "add", "--state"])
        .arg(&state)
        .arg("cli-agent")
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let connection_string = String::from_utf8(added.stdout).unwrap().trim().to_string();

    let agent = Killed(
        testudo()
            .args([
                "agent",
                "run",
                "--connection-string",
                &connection_string,
                "--ca",
            ])
            .arg(state.join("ca.pem"))
            .args(["--mqtt-port", &mqtt_port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&state, "device info", |r| {
        r["deviceInfo"]["agent"] == "testudo-agent"
    });
    twin(&state, Some(r#"{"interval": 7}"#));
    wait_for(&state, "the echo", |r| r["echo"]["interval"] == 7);
    drop(agent);
    drop(server);
}
