//! Fuzzes the parser of the untrusted `TPM2B_PUBLIC`s a device sends DPS (EK, SRK): it must
//! never panic, and whatever it accepts must be usable to build an `authenticationKey` blob.

use testudo_hub::tpm_wire::{authentication_key_blob, parse_rsa_storage_key};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(key) = parse_rsa_storage_key(data) {
        assert_eq!(key.modulus.len(), 256);
        assert_eq!(key.name.len(), 34);
        // An accepted key may still be unusable RSA (e.g. even modulus): an error, not a panic.
        let _ = authentication_key_blob(&key, &key, &[1u8; 32]);
    }
}
