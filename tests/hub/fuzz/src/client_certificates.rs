//! Fuzzes what the emulator does with the untrusted certificate a device presents in its TLS
//! handshake (X.509 enrollment groups and CA-signed devices): reading the leaf's common name
//! and checking its chain against a CA must never panic, and nothing that is not a certificate
//! the CA issued is accepted.

use testudo_hub::x509_ca::{common_name, PresentedCertificate};

/// The development CA (`tests/hub/dev-ca`), which issued none of the corpus.
const CA_PEM: &str = include_str!("../../dev-ca/ca.pem");

/// One fuzz input (a DER certificate): must return without panicking.
pub fn fuzz(data: &[u8]) {
    let name = common_name(data);
    if let Some(presented) = PresentedCertificate::from_chain(&[data]) {
        let id = name.as_deref().unwrap_or("anyone");
        assert!(
            !presented.is_issued_for(CA_PEM, id, 1_800_000_000),
            "a certificate the CA did not issue was accepted"
        );
    }
}
