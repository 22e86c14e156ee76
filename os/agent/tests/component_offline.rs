//! Promise: started like `testudo-init` starts it (sandboxed, role `agent`, no network of its
//! own), the agent component serves `telemetry` and `identity` to apps through real scheme
//! handles and stays up while the hub is unreachable and it has no credentials, saying so on
//! its log route; telemetry it accepted survives a restart of the component.

#[path = "common/component.rs"]
mod component;

use std::time::Duration;

use component::*;
use testudo_scheme::{Errno, Rights};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn serves_apps_offline_and_keeps_their_telemetry_across_a_restart() {
    // Nothing listens on the hub's port, and the storage holds no credentials yet.
    let rig = Rig::new("localhost", "gateway-0001", unused_port());
    let agent = rig.start();
    rig.wait_line("serving telemetry and identity", WAIT);
    let offline = rig.wait_line("cloud: offline", WAIT);
    assert!(offline.contains("no hub CA certificate"), "{offline}");

    let identity = agent.route("app", "identity", Rights::Read);
    let document: serde_json::Value = serde_json::from_slice(&read_all(&identity)).unwrap();
    assert_eq!(document["device_id"], "gateway-0001");
    assert_eq!(document["hub"], "localhost");
    assert_eq!(document["identity"], "sas");
    assert!(identity.write(b"{}").is_err(), "identity is read-only");

    let telemetry = agent.route("app", "telemetry", Rights::Write);
    for n in 0..3 {
        let message = format!("{{\"temperature\":{n}}}");
        assert_eq!(telemetry.write(message.as_bytes()).unwrap(), message.len());
    }
    let refused = telemetry.write(b"not json").unwrap_err();
    assert_eq!(refused.refused_errno(), Some(Errno::EINVAL));
    rig.wait_line("telemetry from app refused", WAIT);
    assert_eq!(telemetry.fstat().unwrap().size, 3, "3 messages pending");

    // Credentials that lead nowhere: the dial through the net route fails, and the agent
    // keeps retrying instead of exiting.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    put(&rig.storage_dir().join("hub-ca.pem"), &ca.cert.pem());
    put(
        &rig.storage_dir().join("device-key"),
        "c2VjcmV0LWtleS1mb3ItdGVzdHM=",
    );
    let before = rig.lines().len();
    let dial = rig.wait_line_after(before, "cloud: offline: dialing localhost:", WAIT);
    assert!(dial.contains("3 pending"), "{dial}");
    assert!(
        agent.running(),
        "the agent exited:\n{}",
        rig.lines().join("\n")
    );

    // Stop it like init does and start it again: the 3 messages are still there.
    let (status, _) = agent.stop_with(libc::SIGTERM);
    assert_eq!(status, 0, "exit status after SIGTERM");
    let before = rig.lines().len();
    let agent = rig.start();
    let restored = rig.wait_line_after(before, "telemetry spool:", WAIT);
    assert!(restored.contains("3 messages"), "{restored}");
    let telemetry = agent.route("app", "telemetry", Rights::Write);
    assert_eq!(telemetry.fstat().unwrap().size, 3);
    agent.stop_with(libc::SIGKILL);
}
