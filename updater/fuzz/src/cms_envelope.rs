//! A CMS EnvelopedData (the enveloped signature of an encrypted bundle: untrusted bytes, read
//! before anything is verified) through the step-by-step opener TPM-held keys use.

use std::sync::OnceLock;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

/// One EC P-256 and one RSA key, made once: the keys the envelope is opened with.
fn keys() -> &'static [PKey<Private>; 2] {
    static KEYS: OnceLock<[PKey<Private>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let ec = EcKey::generate(&group).and_then(PKey::from_ec_key);
        let rsa = Rsa::generate(2048).and_then(PKey::from_rsa);
        [ec.expect("EC key"), rsa.expect("RSA key")]
    })
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let parsed = testudo_updater::crypt::parse_envelope(data);
    for key in keys() {
        let opened = testudo_updater::crypt::open_envelope_with_key(data, key);
        // Nothing opens what does not parse.
        if parsed.is_err() {
            assert!(opened.is_err());
        }
    }
}
