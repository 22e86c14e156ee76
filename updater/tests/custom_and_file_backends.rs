//! Promise: the RAUC `custom` backend protocol drives an external handler (get-primary,
//! set-primary, get-state, set-state), and the signpost-model file backend rolls back an
//! unconfirmed slot after its try, through the same install code path.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::os::unix::fs::PermissionsExt;

use testudo_updater::bootloader::file::{self, FileBackend, SlotBits};
use testudo_updater::bootloader::{self as boot, BootState};
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

    let mut update = common::ab_update(90_000, 95_000);
    let device = &mut update.device;
    device.conf.bootloader = BootloaderKind::Custom;
    device.conf.custom_backend = Some(handler.clone());
    let text = device.conf.render();
    assert!(text.contains("[handlers]\nbootloader-custom-backend="));
    let parsed = SystemConf::parse(&text, None).unwrap();
    assert_eq!(parsed.bootloader, BootloaderKind::Custom);
    assert_eq!(parsed.custom_backend.as_deref(), Some(handler.as_path()));

    update.device.install("A", &update.open_bundle()).unwrap();
    let mut backend = boot::open(&update.device.conf).unwrap();
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    assert_eq!(log, "set-state B bad\nset-primary B\n");
    assert_eq!(backend.primary().unwrap().as_deref(), Some("B"));
    assert_eq!(backend.state("B").unwrap(), BootState::Bad);
}

#[test]
fn file_backend_rolls_back_an_unconfirmed_slot() {
    let mut update = common::ab_update(90_000, 95_000);
    let state_path = update.dir.path().join("boot-state.json");
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
    update.device.conf.bootloader = BootloaderKind::File;
    update.device.conf.bootloader_statefile = Some(state_path);

    update.device.install("A", &update.open_bundle()).unwrap();
    let mut state = backend.load().unwrap();
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("B"));
    // B never confirms: its one try is gone, A boots again.
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("A"));
    assert_eq!(file::simulate_boot(&mut state).as_deref(), Some("A"));
}
