//! Promise: a device key imported into the TPM signs SAS tokens exactly like the software key,
//! survives a new TPM session (persistent), and cannot be read back out.

use base64::Engine as _;
use testudo_agent::sas::{build_token, SoftwareKey};
use testudo_agent::tpm::{self, TpmHmacSigner, DEFAULT_KEY_HANDLE};
use testudo_testkit::swtpm;
use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::session_handles::AuthSession;

const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[test]
fn tpm_key_signs_like_the_software_key_and_stays_inside() {
    let swtpm = swtpm::start();
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY_B64)
        .unwrap();
    tpm::import_hmac_key(&swtpm.tcti, DEFAULT_KEY_HANDLE, &key).unwrap();

    // A fresh signer (new context, new thread) finds the persisted key.
    let signer = TpmHmacSigner::open(&swtpm.tcti, DEFAULT_KEY_HANDLE).unwrap();
    let software = SoftwareKey::from_base64(KEY_B64, "dev").unwrap();
    let uri = "myhub.azure-devices.net/devices/device-01";
    let from_tpm = build_token(uri, None, 1_700_000_000, &signer).unwrap();
    let from_software = build_token(uri, None, 1_700_000_000, &software).unwrap();
    assert_eq!(from_tpm, from_software);
    // The vector from Microsoft's Python SDK.
    assert!(from_tpm
        .token
        .contains("sig=1gLIiv7O5oZoFOMdYk5vfd2QzHOYiYrRYJ3pqzyCkq0%3D"));
    drop(signer);

    // Re-importing replaces the key at the handle (rotation).
    let other = vec![7u8; 32];
    tpm::import_hmac_key(&swtpm.tcti, DEFAULT_KEY_HANDLE, &other).unwrap();
    let rotated = TpmHmacSigner::open(&swtpm.tcti, DEFAULT_KEY_HANDLE).unwrap();
    let expected = build_token(uri, None, 1_700_000_000, &SoftwareKey::from_bytes(other)).unwrap();
    assert_eq!(
        build_token(uri, None, 1_700_000_000, &rotated).unwrap(),
        expected
    );
    drop(rotated);

    // The TPM refuses to hand the key out: TPM2_Unseal on an HMAC (sign) object fails.
    let mut context = tpm::open_context(&swtpm.tcti).unwrap();
    let handle = context
        .tr_from_tpm_public(TpmHandle::Persistent(
            PersistentTpmHandle::new(DEFAULT_KEY_HANDLE).unwrap(),
        ))
        .unwrap();
    let unsealed =
        context.execute_with_session(Some(AuthSession::Password), |ctx| ctx.unseal(handle));
    assert!(unsealed.is_err(), "the TPM released the key");
    let (public, _, _) = context.read_public(handle.into()).unwrap();
    let attributes = public.object_attributes();
    assert!(attributes.fixed_tpm() && attributes.fixed_parent() && attributes.sign_encrypt());
}

#[test]
fn missing_key_is_a_clear_error() {
    let swtpm = swtpm::start();
    let err = TpmHmacSigner::open(&swtpm.tcti, DEFAULT_KEY_HANDLE + 5).unwrap_err();
    assert!(err.to_string().contains("0x81000105"), "{err}");
    let err = TpmHmacSigner::open("swtpm:host=127.0.0.1,port=1", DEFAULT_KEY_HANDLE).unwrap_err();
    assert!(err.to_string().contains("TPM"), "{err}");
}
