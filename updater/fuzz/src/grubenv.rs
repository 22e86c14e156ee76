//! GRUB environment blocks (written by GRUB and grub-editenv, read by the updater).

use testudo_updater::bootloader::grub::{simulate_boot, GrubEnv};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(env) = GrubEnv::parse(data) {
        if let Ok(bytes) = env.render() {
            assert_eq!(GrubEnv::parse(&bytes).ok(), Some(env.clone()));
        }
        for boot_tries in [1, 3] {
            let _ = simulate_boot(&mut env.clone(), boot_tries);
        }
    }
}
