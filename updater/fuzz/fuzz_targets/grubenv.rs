//! GRUB environment blocks (written by GRUB and grub-editenv, read by the updater).
#![no_main]

use libfuzzer_sys::fuzz_target;
use testudo_updater::bootloader::grub::{simulate_boot, GrubEnv};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut env) = GrubEnv::parse(data) {
        if let Ok(bytes) = env.render() {
            assert_eq!(GrubEnv::parse(&bytes).ok(), Some(env.clone()));
        }
        let _ = simulate_boot(&mut env);
    }
});
