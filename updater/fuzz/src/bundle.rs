//! Whole bundle files: framing, CMS parsing and verification, manifest, hash tree. The
//! keyring is a fixed throwaway CA, so almost every input must be rejected cleanly.

use std::sync::OnceLock;

use testudo_updater::keys::{self, KeyKind, Validity};
use testudo_updater::signature::CheckPurpose;
use testudo_updater::Keyring;

struct Fixture {
    dir: tempfile::TempDir,
    keyring: Keyring,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca =
            keys::issue("fuzz CA", KeyKind::EcP256, Validity::days(365), true, None).expect("CA");
        let path = dir.path().join("ca.pem");
        keys::write_cert(&path, &ca.cert).expect("write CA");
        let keyring = Keyring::load(&path, CheckPurpose::default()).expect("keyring");
        Fixture { dir, keyring }
    })
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let fixture = fixture();
    let path = fixture.dir.path().join("input.raucb");
    if std::fs::write(&path, data).is_ok() {
        let _ = testudo_updater::bundle::open(&path, &fixture.keyring);
    }
}
