#![cfg(feature = "agent")]
//! Promise: `testudo agent` puts device identities into a real TPM (swtpm) — an imported SAS
//! key, or a TPM-generated X.509 key with its self-signed certificate — and refuses bad
//! configuration with one clear line, never a panic.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step is a failed test

use std::process::Command;
use testudo_testkit::swtpm;

fn testudo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_key_puts_the_key_into_the_tpm() {
    let tpm = swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("device.key");
    std::fs::write(&key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    let out = testudo(&[
        "agent",
        "import-key",
        "--tpm",
        &tpm.tcti,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0x81000100"));

    // The key is usable by handle afterwards: `run` gets past TPM setup and fails only at the
    // (missing) CA file.
    let out = testudo(&[
        "agent",
        "run",
        "--hub",
        "localhost",
        "--device-id",
        "d",
        "--tpm",
        &tpm.tcti,
        "--ca",
        "/nonexistent/ca.pem",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn create_x509_key_writes_a_certificate_signed_in_the_tpm() {
    let tpm = swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("device.pem");
    let out = testudo(&[
        "agent",
        "create-x509-key",
        "--tpm",
        &tpm.tcti,
        "--device-id",
        "gw-x509",
        "--cert-out",
        cert.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let thumbprint = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(thumbprint.len(), 64, "{thumbprint}");
    assert!(thumbprint.chars().all(|c| c.is_ascii_hexdigit()));
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&cert)
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "agent",
                "run",
                "--connection-string",
                "HostName=h;DeviceId=d",
                "--ca",
                ca.to_str().unwrap(),
            ],
            "neither SharedAccessKey",
        ),
        (
            &[
                "agent",
                "run",
                "--connection-string",
                "HostName=h;DeviceId=d;SharedAccessKey=%%%",
                "--ca",
                ca.to_str().unwrap(),
            ],
            "base64",
        ),
        (
            &[
                "agent",
                "import-key",
                "--tpm",
                "swtpm:host=127.0.0.1,port=1",
                "--key-file",
                "/nonexistent/key",
            ],
            "/nonexistent/key",
        ),
    ];
    for (args, expected) in cases {
        let out = testudo(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
}
