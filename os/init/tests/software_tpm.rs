//! Promise: `SoftwareTpm` starts a real swtpm with fresh state (a leftover from an earlier
//! run is not reused), serves a unix socket, and when dropped stops the process and removes
//! its directory.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use testudo_init::SoftwareTpm;

#[test]
fn a_private_swtpm_starts_fresh_and_leaves_nothing_behind() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("tpm0");
    std::fs::create_dir_all(dir.join("state")).expect("leftover");
    std::fs::write(dir.join("state/tpm2-00.permall"), b"stale").expect("leftover");
    let tpm = SoftwareTpm::start(&dir).expect("swtpm (Debian package swtpm) must be installed");
    let socket = std::fs::metadata(tpm.socket()).expect("socket exists");
    assert!(socket.file_type().is_socket());
    assert_ne!(
        std::fs::read(tpm.state_dir().join("tpm2-00.permall"))
            .ok()
            .as_deref(),
        Some(&b"stale"[..]),
        "a leftover state must not be reused"
    );
    let pid = tpm.pid();
    drop(tpm);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "swtpm {pid} left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
