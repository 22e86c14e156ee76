#![cfg(all(feature = "hub", feature = "agent", feature = "images"))]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
//! Promise: the factory flow as a user runs it. `testudo vm tpm-ek --state DIR` prints the
//! endorsement key of the VM's TPM (created once, the same key every time after); `testudo hub
//! serve --id-scope S --ca DIR` serves DPS under that scope with a certificate the given CA
//! issued; `testudo hub enrollment add --tpm-ek FILE` enrolls that TPM, after which a device
//! holding that TPM state provisions itself through DPS (real swtpm, TPM attestation over
//! HTTPS with ActivateCredential and Import) and a TPM that is not enrolled does not;
//! `testudo agent create-x509-key --vm-state DIR` gives the VM's TPM an X.509 key and writes
//! its certificate, with which the device registers through DPS (X.509 attestation, the key
//! signing in that TPM) once the certificate is enrolled;
//! symmetric-key (individual and group), X.509 (individual, by the thumbprint openssl computes)
//! and X.509 CA group enrollments are added, listed and removed offline; bad input is refused
//! clearly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use testudo_agent::dps_tpm::{self, TpmDpsConfig};
use testudo_agent::tls::TlsSettings;
use testudo_agent::tpm::DEFAULT_KEY_HANDLE;

const SCOPE: &str = "0ne0000ABCD";

fn testudo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
}

fn dev_ca() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hub/dev-ca")
}

fn succeeded(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn failed(command: &mut Command) -> String {
    let Output { status, stderr, .. } = command.output().unwrap();
    assert!(!status.success(), "{command:?} should have failed");
    String::from_utf8(stderr).unwrap()
}

/// A `testudo hub serve` process, killed when dropped; its printed lines up to `service:`.
struct Served {
    child: Child,
    printed: Vec<String>,
}

impl Served {
    fn start(state: &Path, extra: &[&str]) -> Self {
        let mut child = testudo()
            .args(["hub", "serve", "--state"])
            .arg(state)
            .args(["--mqtt-port", "0", "--https-port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut printed = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let done = line.starts_with("service: ");
            printed.push(line);
            if done {
                break;
            }
        }
        Self { child, printed }
    }

    fn value(&self, label: &str) -> &str {
        self.printed
            .iter()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in {:?}", self.printed))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SHA-256 thumbprint of a PEM certificate as openssl computes it (upper-case hex): the
/// independent check of what testudo computes.
fn openssl_thumbprint(cert: &Path) -> String {
    let fingerprint = succeeded(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
    );
    let hex = fingerprint.trim().rsplit('=').next().unwrap();
    hex.replace(':', "")
}

fn read_ek(vm_state: &Path, file: &Path) -> String {
    succeeded(
        testudo()
            .args(["vm", "tpm-ek", "--state"])
            .arg(vm_state)
            .arg("-o")
            .arg(file),
    );
    std::fs::read_to_string(file).unwrap().trim().to_owned()
}

/// Registers the TPM of `vm_state` with the DPS at `https` (`host:port`) as `id`.
fn register(vm_state: &Path, https: &str, id: &str) -> Result<String, String> {
    let tpm = testudo_images::vm_tpm::open_vm_tpm(vm_state).unwrap();
    let port = https.rsplit_once(':').unwrap().1.parse().unwrap();
    let config = TpmDpsConfig {
        host: "localhost".into(),
        port,
        id_scope: SCOPE.into(),
        registration_id: id.into(),
        tcti: tpm.tcti.clone(),
        key_handle: DEFAULT_KEY_HANDLE,
        tls: TlsSettings::from_files(&dev_ca().join("ca.pem"), None).unwrap(),
        timeout: Duration::from_secs(30),
    };
    let registered = dps_tpm::register_with_tpm(&config)
        .map(|registration| registration.assignment.device_id)
        .map_err(|error| format!("{error:?}"));
    drop(tpm);
    registered
}

#[test]
fn a_tpm_enrolled_by_its_printed_endorsement_key_provisions_through_the_served_dps() {
    let dir = tempfile::tempdir().unwrap();
    let (vm, other_vm, hub) = (
        dir.path().join("vm"),
        dir.path().join("other-vm"),
        dir.path().join("hub"),
    );

    let ek = read_ek(&vm, &dir.path().join("ek.txt"));
    assert!(
        vm.join("tpm").is_dir(),
        "the TPM state is where vm run keeps it"
    );
    assert_eq!(
        read_ek(&vm, &dir.path().join("ek-again.txt")),
        ek,
        "the TPM state is kept: the same endorsement key every time"
    );
    let other_ek = read_ek(&other_vm, &dir.path().join("other-ek.txt"));
    assert_ne!(ek, other_ek, "each TPM state is its own TPM");

    let served = Served::start(
        &hub,
        &["--id-scope", SCOPE, "--ca", dev_ca().to_str().unwrap()],
    );
    assert_eq!(served.value("dps id scope: "), SCOPE);
    assert_eq!(
        std::fs::read(hub.join("ca.pem")).unwrap(),
        std::fs::read(dev_ca().join("ca.pem")).unwrap(),
        "the hub serves with the given CA"
    );
    let https = served.value("https: ").to_owned();

    // Enrolled through the running emulator's service API.
    let added = succeeded(
        testudo()
            .args(["hub", "enrollment", "add", "--state"])
            .arg(&hub)
            .arg("tpm-dev")
            .arg("--tpm-ek")
            .arg(dir.path().join("ek.txt")),
    );
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    assert_eq!(added["registrationId"], "tpm-dev");
    assert_eq!(added["attestation"]["tpm"]["endorsementKey"], ek.as_str());

    assert_eq!(register(&vm, &https, "tpm-dev").unwrap(), "tpm-dev");
    let refused = register(&other_vm, &https, "tpm-dev").unwrap_err();
    assert!(refused.contains("refused the TPM"), "{refused}");

    let removed = testudo()
        .args(["hub", "enrollment", "remove", "--state"])
        .arg(&hub)
        .arg("tpm-dev")
        .output()
        .unwrap();
    assert!(removed.status.success());
    let list = succeeded(
        testudo()
            .args(["hub", "enrollment", "list", "--state"])
            .arg(&hub),
    );
    assert_eq!(list.trim(), "[]");
}

#[test]
fn symmetric_key_and_x509_enrollments_are_managed_offline() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    let enroll = |args: &[&str]| {
        let mut command = testudo();
        command
            .args(["hub", "enrollment", "add", "--state"])
            .arg(&hub)
            .args(args);
        command
    };

    let fresh: serde_json::Value =
        serde_json::from_str(&succeeded(&mut enroll(&["sym-dev", "--symmetric-key"]))).unwrap();
    let key = fresh["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    assert!(key.len() >= 24, "a fresh key is generated: {fresh}");
    let given = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let group: serde_json::Value = serde_json::from_str(&succeeded(&mut enroll(&[
        "line-7",
        "--symmetric-key",
        given,
        "--group",
    ])))
    .unwrap();
    assert_eq!(group["enrollmentGroupId"], "line-7");
    assert_eq!(group["attestation"]["symmetricKey"]["primaryKey"], given);

    let key_file = dir.path().join("device.key.pem");
    let cert_file = dir.path().join("device.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=x509-dev", "-addext"])
        .args(["basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key_file)
        .arg("-out")
        .arg(&cert_file)
        .output()
        .expect("openssl (Debian package openssl) makes the device certificate");
    assert!(made.status.success(), "{made:?}");
    let expected = openssl_thumbprint(&cert_file);
    let x509: serde_json::Value = serde_json::from_str(&succeeded(&mut enroll(&[
        "x509-dev",
        "--x509-cert",
        cert_file.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(x509["attestation"]["x509"]["thumbprint"], expected.as_str());

    let ca_key = dir.path().join("ca.key.pem");
    let ca_file = dir.path().join("ca.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=Line 7 device CA", "-addext"])
        .args(["basicConstraints=critical,CA:TRUE", "-keyout"])
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_file)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let ca_group: serde_json::Value = serde_json::from_str(&succeeded(&mut enroll(&[
        "line-7-x509",
        "--x509-ca",
        ca_file.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(ca_group["enrollmentGroupId"], "line-7-x509");
    assert_eq!(
        ca_group["attestation"]["x509"]["signingCertificates"]["primary"]["certificate"],
        std::fs::read_to_string(&ca_file).unwrap()
    );

    let list: serde_json::Value = serde_json::from_str(&succeeded(
        testudo()
            .args(["hub", "enrollment", "list", "--state"])
            .arg(&hub),
    ))
    .unwrap();
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("registrationId")
                .or(e.get("enrollmentGroupId"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["sym-dev", "line-7", "x509-dev", "line-7-x509"]);

    // Bad input: a clear error, and the enrollments stay as they were.
    let no_attestation = failed(&mut enroll(&["nothing"]));
    assert!(no_attestation.contains("--tpm-ek"), "{no_attestation}");
    let short_key = failed(&mut enroll(&["short", "--symmetric-key", "c2hvcnQ="]));
    assert!(short_key.contains("at least 16 bytes"), "{short_key}");
    let not_a_cert = failed(&mut enroll(&[
        "bad-cert",
        "--x509-cert",
        key_file.to_str().unwrap(),
    ]));
    assert!(not_a_cert.contains("no PEM certificate"), "{not_a_cert}");
    let leaf_as_ca = failed(&mut enroll(&[
        "bad-ca",
        "--x509-ca",
        cert_file.to_str().unwrap(),
    ]));
    assert!(leaf_as_ca.contains("not a CA"), "{leaf_as_ca}");
    let bad_ek = dir.path().join("bad-ek.txt");
    std::fs::write(&bad_ek, "AAAA\n").unwrap();
    let bad_ek = failed(&mut enroll(&[
        "bad-ek",
        "--tpm-ek",
        bad_ek.to_str().unwrap(),
    ]));
    assert!(bad_ek.contains("endorsement key"), "{bad_ek}");

    let removed = failed(
        testudo()
            .args(["hub", "enrollment", "remove", "--state"])
            .arg(&hub)
            .arg("no-such-enrollment"),
    );
    assert!(
        removed.contains("no enrollment no-such-enrollment"),
        "{removed}"
    );
    succeeded(
        testudo()
            .args(["hub", "enrollment", "remove", "--state"])
            .arg(&hub)
            .arg("line-7"),
    );
    let list = succeeded(
        testudo()
            .args(["hub", "enrollment", "list", "--state"])
            .arg(&hub),
    );
    assert!(
        !list.contains("\"line-7\"") && list.contains("\"line-7-x509\""),
        "{list}"
    );
}

#[test]
fn serve_refuses_a_malformed_scope_or_an_incomplete_ca() {
    let dir = tempfile::tempdir().unwrap();
    let bad_scope = failed(
        testudo()
            .args(["hub", "serve", "--state"])
            .arg(dir.path().join("a"))
            .args([
                "--mqtt-port",
                "0",
                "--https-port",
                "0",
                "--id-scope",
                "scope-1",
            ]),
    );
    assert!(bad_scope.contains("ID scope \"scope-1\""), "{bad_scope}");

    let half_ca = dir.path().join("half-ca");
    std::fs::create_dir_all(&half_ca).unwrap();
    std::fs::copy(dev_ca().join("ca.pem"), half_ca.join("ca.pem")).unwrap();
    let no_key = failed(
        testudo()
            .args(["hub", "serve", "--state"])
            .arg(dir.path().join("b"))
            .args(["--mqtt-port", "0", "--https-port", "0", "--ca"])
            .arg(&half_ca),
    );
    assert!(no_key.contains("no ca.key.pem"), "{no_key}");
}

#[test]
fn a_vm_tpm_given_an_x509_key_at_the_factory_registers_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (vm, hub) = (dir.path().join("vm"), dir.path().join("hub"));
    let cert_file = dir.path().join("device.pem");
    let thumbprint = succeeded(
        testudo()
            .args(["agent", "create-x509-key", "--vm-state"])
            .arg(&vm)
            .args(["--device-id", "x509-vm", "--cert-out"])
            .arg(&cert_file),
    );
    let expected = openssl_thumbprint(&cert_file);
    assert_eq!(thumbprint.trim(), expected);

    let served = Served::start(
        &hub,
        &["--id-scope", SCOPE, "--ca", dev_ca().to_str().unwrap()],
    );
    succeeded(
        testudo()
            .args(["hub", "enrollment", "add", "--state"])
            .arg(&hub)
            .args(["x509-vm", "--x509-cert"])
            .arg(&cert_file),
    );
    let mqtt_port = served
        .value("mqtt: ")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();

    let tpm = testudo_images::vm_tpm::open_vm_tpm(&vm).unwrap();
    let key =
        testudo_agent::tpm_x509::TpmEcdsaKey::open(&tpm.tcti, testudo_agent::tpm::X509_KEY_HANDLE)
            .unwrap();
    let mut tls = TlsSettings::from_files(&dev_ca().join("ca.pem"), None).unwrap();
    tls.client_identity = Some(testudo_agent::tls::ClientIdentity::Tpm {
        cert: std::fs::read(&cert_file).unwrap(),
        key: std::sync::Arc::new(key),
    });
    let config = testudo_agent::dps::DpsConfig {
        host: "localhost".into(),
        port: mqtt_port,
        id_scope: SCOPE.into(),
        registration_id: "x509-vm".into(),
        tls,
        signer: None,
        timeout: Duration::from_secs(30),
        dialer: None,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let assignment = runtime
        .block_on(testudo_agent::dps::register(&config))
        .unwrap();
    assert_eq!(assignment.device_id, "x509-vm");
}
