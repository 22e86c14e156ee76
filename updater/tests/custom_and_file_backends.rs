//! Promise: the RAUC `custom` backend protocol drives an external handler (get-primary,
//! set-primary, get-state, set-state), and the signpost-model file backend rolls back an
//! unconfirmed slot after its try, through the same install code path.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;

use testudo_updater::bootloader::file::{self, FileBackend, SlotBits};
use testudo_updater::bootloader::{self as boot, BootState};
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::system_conf::{BootloaderKind, SystemConf};

#[test]
fn custom_handler_gets_rauc_protocol_calls() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let handler = dir.path().join("handler.sh");
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\nS={}\necho \"$@\" >> $S/log\ncase \"$1\" in\n  get-primary) cat $S/primary 2>/dev/null || echo A ;;\n  set-primary) echo \"$2\" > $S/primary ;;\n  get-state) cat $S/state-$2 2>/dev/null || echo good ;;\n  set-state) echo \"$3\" > $S/state-$2 ;;\n  get-current) echo A ;;\n  *) exit 2 ;;\nesac\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();

    let pki = common::simple_pki(&dir.path().join("pki"));
    let v1 = common::image(&dir.path().join("v1.img"), 90_000, 1);
    let v2 = common::image(&dir.path().join("v2.img"), 95_000, 2);
    let mut device = common::device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    device.conf.bootloader = BootloaderKind::Custom;
    device.conf.custom_backend = Some(handler.clone());
    let text = device.conf.render();
    assert!(text.contains("[handlers]\nbootloader-custom-backend="));
    let parsed = SystemConf::parse(&text, None).unwrap();
    assert_eq!(parsed.bootloader, BootloaderKind::Custom);
    assert_eq!(parsed.custom_backend.as_deref(), Some(handler.as_path()));

    let bundle_path = common::make_bundle(&pki, &v2, "gw", "2.0", &dir.path().join("v2.raucb"));
    let bundle =
        testudo_updater::bundle::open(&bundle_path, &common::keyring(&pki.keyring)).unwrap();
    let mut backend = boot::open(&device.conf).unwrap();
    install::install(
        &device.conf,
        device.booted_slot("A"),
        &bundle,
        backend.as_mut(),
        &InstallOptions::default(),
        &mut |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    assert_eq!(log, "set-state B bad\nset-primary B\n");
    assert_eq!(backend.primary().unwrap().as_deref(), Some("B"));
    assert_eq!(backend.state("B").unwrap(), BootState::Bad);
}

#[test]
fn file_backend_rolls_back_an_unconfirmed_slot() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let v1 = common::image(&dir.path().join("v1.img"), 90_000, 1);
    let v2 = common::image(&dir.path().join("v2.img"), 95_000, 2);
    let mut device = common::device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    let state_path = dir.path().join("boot-state.json");
    let initial: file::State = [
        (
            "A".to_string(),
            SlotBits {
                priority: 2,
                tries_left: 0,
                successful: true,
            },
        ),
        (
            "B".to_string(),
            SlotBits {
                priority: 1,
                tries_left: 0,
                successful: true,
            },
        ),
    ]
    .into_iter()
    .collect();
    let backend = FileBackend::new(state_path.clone());
    backend.store(&initial).unwrap();
    device.conf.bootloader = BootloaderKind::File;
    device.conf.bootloader_statefile = Some(state_path);

    let bundle_path = common::make_bundle(&pki, &v2, "gw", "2.0", &dir.path().join("v2.raucb"));
    let bundle =
        testudo_updater::bundle::open(&bundle_path, &common::keyring(&pki.keyring)).unwrap();
    let mut dyn_backend = boot::open(&device.conf).unwrap();
    install::install(
        &device.conf,
        device.booted_slot("A"),
        &bundle,
        dyn_backend.as_mut(),
        &InstallOptions::default(),
        &mut |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    let mut state = backend.load().unwrap();
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("B"));
    // B never confirms: its one try is gone, A boots again.
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("A"));
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("A"));
}
