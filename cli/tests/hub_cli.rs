#![cfg(feature = "hub")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
//! Promise: `testudo hub` serves until SIGTERM (clean exit, state kept), creates `ca.pem`,
//! and `device add` / `connection-string` / `twin` work both against the running emulator
//! and offline on the state directory.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn testudo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
}

fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn serve_manage_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("hub");
    let mut server = testudo()
        .args(["hub", "serve", "--state"])
        .arg(&state)
        .args(["--mqtt-port", "0", "--https-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("service: ");
        printed.push(line);
        if done {
            break;
        }
    }
    assert!(
        state.join("ca.pem").exists(),
        "ca.pem created on first start"
    );
    let service_line = printed.last().unwrap().clone();
    assert!(
        service_line.starts_with("service: HostName=localhost:"),
        "{printed:?}"
    );

    // Online: goes through the running emulator's service API.
    let device = stdout_of(
        testudo()
            .args(["hub", "device", "add", "--state"])
            .arg(&state)
            .arg("cli-dev"),
    );
    assert!(
        device.starts_with("HostName=localhost;DeviceId=cli-dev;SharedAccessKey="),
        "{device}"
    );
    let service = stdout_of(
        testudo()
            .args(["hub", "connection-string", "--state"])
            .arg(&state),
    );
    assert_eq!(format!("service: {}", service.trim()), service_line);
    let twin = stdout_of(
        testudo()
            .args(["hub", "twin", "--state"])
            .arg(&state)
            .args(["cli-dev", "--desired", r#"{"interval":5}"#]),
    );
    let twin: serde_json::Value = serde_json::from_str(&twin).unwrap();
    assert_eq!(twin["properties"]["desired"]["interval"], 5);

    let bad = testudo()
        .args(["hub", "twin", "--state"])
        .arg(&state)
        .args(["cli-dev", "--desired", "{oops"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--desired is not valid JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    // SIGTERM: clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "serve exits cleanly on SIGTERM: {exit:?}");
    assert!(!state.join("endpoint.json").exists());

    // Offline: state persisted, commands work on the files.
    let twin = stdout_of(
        testudo()
            .args(["hub", "twin", "--state"])
            .arg(&state)
            .arg("cli-dev"),
    );
    let twin: serde_json::Value = serde_json::from_str(&twin).unwrap();
    assert_eq!(twin["properties"]["desired"]["interval"], 5);
    let second = stdout_of(
        testudo()
            .args(["hub", "device", "add", "--state"])
            .arg(&state)
            .arg("offline-dev"),
    );
    assert!(second.contains("DeviceId=offline-dev;"));
    let service = stdout_of(
        testudo()
            .args(["hub", "connection-string", "--state"])
            .arg(&state),
    );
    assert!(
        service.starts_with("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=")
    );

    let missing = testudo()
        .args(["hub", "twin", "--state"])
        .arg(&state)
        .arg("nobody")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("device nobody is not registered"));
}
