//! Promise: the agent component with `cloud.dps.attestation = "tpm"` provisions itself by TPM
//! attestation with nothing but its routes — the TPM through `tpm` (real swtpm behind the real
//! `tpm` driver), DPS over HTTPS through `net` — imports the key DPS sends into the TPM, keeps
//! the assignment in its storage and connects to the assigned hub with that key, signing in
//! the TPM, logging each step of the registration as it is reached; a TPM whose endorsement
//! key is not enrolled is refused with a clear reason, and nothing is stored (no assignment, no
//! key in the TPM). The EK and SRK the agent creates are the very keys the host-side reference
//! (tss-esapi) creates.

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use component::*;
use serde_json::json;
use testudo_agent::provisioning::StoredAssignment;
use testudo_agent::tpm::DEFAULT_KEY_HANDLE;
use testudo_agent::tpm_commands::{
    self, evict_control, read_public, TpmTransport, TransportError, EK_HANDLE, SRK_HANDLE,
};
use testudo_plan::DpsAttestation;
use testudo_testkit::swtpm;

const WAIT: Duration = Duration::from_secs(30);

/// Raw TPM commands over a swtpm socket (what the `tpm` driver does for the agent).
struct RawTpm<S>(S);

impl<S: Read + Write> TpmTransport for RawTpm<S> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.0.write_all(command)?;
        let mut response = vec![0u8; 10];
        self.0.read_exact(&mut response)?;
        let size = u32::from_be_bytes(response[2..6].try_into()?) as usize;
        if !(10..=4096).contains(&size) {
            return Err(format!("a response declaring {size} bytes").into());
        }
        response.resize(size, 0);
        self.0.read_exact(&mut response[10..])?;
        Ok(response)
    }
}

/// A connection to the unixio swtpm (it serves one client at a time: retried while the
/// agent's `tpm` driver still holds it).
fn connect(socket: &Path) -> RawTpm<UnixStream> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(stream) = UnixStream::connect(socket) {
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .expect("a read timeout on the swtpm socket");
            let mut tpm = RawTpm(stream);
            // A round trip proves swtpm serves this connection.
            if read_public(&mut tpm, EK_HANDLE).is_ok() {
                stream_timeout(&tpm, None);
                return tpm;
            }
        }
        assert!(Instant::now() < deadline, "swtpm did not take a connection");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// swtpm's TCP data port takes one command per connection (as tss's swtpm TCTI uses it).
struct TcpSwtpm(u16);

impl TpmTransport for TcpSwtpm {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        RawTpm(std::net::TcpStream::connect(("127.0.0.1", self.0))?).transact(command)
    }
}

fn stream_timeout(tpm: &RawTpm<UnixStream>, timeout: Option<Duration>) {
    tpm.0
        .set_read_timeout(timeout)
        .expect("a read timeout on the swtpm socket");
}

fn rig_with_tpm_dps(hub: &hub::TestHub, tpm_socket: &Path) -> Rig {
    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.identity = "tpm_sas".into();
    rig.tpm_socket = Some(tpm_socket.to_owned());
    rig.use_dps(
        &hub.hub().id_scope(),
        DpsAttestation::Tpm,
        hub.mqtt_port,
        hub.hub().https_addr.port(),
    );
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    rig
}

#[test]
fn an_enrolled_tpm_provisions_through_its_routes_and_connects_with_the_imported_key() {
    let hub = hub::TestHub::start();
    let state = tempfile::tempdir().unwrap();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));

    // Enrollment: the EK as the agent's own route code reads (here: creates) it.
    let endorsement_key = {
        let mut raw = connect(&tpm.socket);
        tpm_commands::ensure_keys(&mut raw).unwrap().endorsement_key
    };
    hub.hub()
        .add_tpm_enrollment("gateway-0001", &endorsement_key)
        .unwrap();

    let rig = rig_with_tpm_dps(&hub, &tpm.socket);
    let agent = rig.start();
    rig.wait_line(
        "cloud: new DPS assignment: hub localhost, device gateway-0001",
        WAIT,
    );
    rig.wait_line("cloud: connected to localhost:", WAIT);
    // Each step of the registration was logged as it was reached, in order.
    let lines = rig.lines().join("\n");
    let steps = [
        "cloud: DPS: registering gateway-0001 at localhost:",
        "cloud: DPS: credential activated, DPS's key imported into the TPM at 0x81000100",
        "cloud: new DPS assignment",
    ]
    .map(|step| {
        lines
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} in {lines}"))
    });
    assert!(steps.is_sorted(), "{lines}");
    assert_eq!(
        rig.stored_assignment(),
        Some(StoredAssignment {
            id_scope: hub.hub().id_scope(),
            registration_id: "gateway-0001".into(),
            assigned_hub: "localhost".into(),
            device_id: "gateway-0001".into(),
        })
    );
    assert!(hub.hub().is_connected("gateway-0001"));
    assert!(!rig.storage_dir().join("device-key").exists());

    // The device has its twin: its reported properties arrive, a desired change reaches it.
    rig.wait_line("cloud: device properties reported", WAIT);
    let reported = hub.hub().reported("gateway-0001").unwrap();
    assert!(
        reported.as_object().is_some_and(|r| !r.is_empty()),
        "{reported}"
    );
    let version = hub
        .hub()
        .set_desired("gateway-0001", &json!({"interval": 5}))
        .unwrap();
    rig.wait_line(
        &format!("cloud: desired properties at $version {version}"),
        WAIT,
    );
    agent.stop_with(libc::SIGTERM);

    // The key DPS sent stays in the TPM: the next start connects without asking DPS.
    let before = rig.lines().len();
    let again = rig.start();
    rig.wait_line_after(before, "cloud: connected to localhost:", WAIT);
    let lines = rig.lines()[before..].join("\n");
    assert!(
        lines.contains("cloud: stored DPS assignment: hub localhost, device gateway-0001"),
        "{lines}"
    );
    again.stop_with(libc::SIGTERM);
}

#[test]
fn a_tpm_whose_ek_is_not_enrolled_is_refused_and_nothing_is_stored() {
    let hub = hub::TestHub::start();
    let state = tempfile::tempdir().unwrap();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));
    let rig = rig_with_tpm_dps(&hub, &tpm.socket);
    let agent = rig.start();
    let refused = rig.wait_line("registering gateway-0001 with DPS at localhost:", WAIT);
    assert!(refused.contains("cloud: offline:"), "{refused}");
    assert!(
        refused.contains("DPS refused the TPM's endorsement key: Unauthorized"),
        "{refused}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    agent.stop_with(libc::SIGTERM);

    assert_eq!(rig.stored_assignment(), None);
    assert!(!hub.hub().is_connected("gateway-0001"));
    let mut raw = connect(&tpm.socket);
    assert_eq!(read_public(&mut raw, DEFAULT_KEY_HANDLE).unwrap(), None);
    // The agent did create and persist the EK and SRK (they are the TPM's identity).
    assert!(read_public(&mut raw, EK_HANDLE).unwrap().is_some());
    assert!(read_public(&mut raw, SRK_HANDLE).unwrap().is_some());
}

#[test]
fn the_route_code_creates_the_same_ek_and_srk_as_tss_esapi() {
    let tpm = swtpm::start();
    let port: u16 = tpm
        .tcti
        .rsplit("port=")
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let created = {
        let mut raw = TcpSwtpm(port);
        let keys = tpm_commands::ensure_keys(&mut raw).unwrap();
        // Found again, not created twice.
        assert_eq!(tpm_commands::ensure_keys(&mut raw).unwrap(), keys);
        evict_control(&mut raw, EK_HANDLE, EK_HANDLE).unwrap();
        evict_control(&mut raw, SRK_HANDLE, SRK_HANDLE).unwrap();
        assert_eq!(read_public(&mut raw, EK_HANDLE).unwrap(), None);
        keys
    };
    // Primary keys are derived from the hierarchy's seed and the template: the same bytes
    // mean the same templates.
    let reference = testudo_agent::dps_tpm::read_public_keys(&tpm.tcti).unwrap();
    assert_eq!(created, reference);
}
