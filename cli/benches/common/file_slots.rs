//! A GRUB A/B device whose slots are files (as `updater/tests/common` sets one up): slot A
//! holds an installed image, recorded in the status file with its sha256 and version and
//! booted; an install from A writes slot B. Used to time how long a bundle takes to apply.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use testudo_updater::bootloader::grub::GrubEnv;
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::signature::CheckPurpose;
use testudo_updater::status_file::{SlotStatus, StatusFile};
use testudo_updater::{bundle, Keyring, SystemConf};

/// A device in a directory.
pub struct FileDevice {
    conf: SystemConf,
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileDevice {
    /// A device in `dir` (created) verifying with `keyring`, `compatible`, slot A holding
    /// `image_a` installed as `version`, slot B a small file of junk.
    pub fn new(
        dir: &Path,
        keyring: &Path,
        compatible: &str,
        image_a: &Path,
        version: &str,
    ) -> FileDevice {
        std::fs::create_dir_all(dir).unwrap();
        let slot_a = dir.join("slot-a.img");
        let slot_b = dir.join("slot-b.img");
        std::fs::copy(image_a, &slot_a).unwrap();
        std::fs::write(&slot_b, vec![0x5au8; 70_000]).unwrap();
        let grubenv = dir.join("grubenv");
        std::fs::write(&grubenv, GrubEnv::initial(&["A", "B"]).render().unwrap()).unwrap();
        let conf = SystemConf::grub_ab(
            compatible,
            keyring,
            &grubenv,
            &dir.join("data"),
            &slot_a,
            &slot_b,
        );
        std::fs::write(dir.join("system.conf"), conf.render()).unwrap();
        let mut status = StatusFile::load(&conf.status_path().unwrap()).unwrap();
        let (sha256, size) = bundle::sha256_file(image_a).unwrap();
        status.set(
            "rootfs.0",
            SlotStatus {
                bundle_compatible: Some(compatible.to_owned()),
                bundle_version: Some(version.to_owned()),
                status: Some("ok".to_owned()),
                sha256: Some(hex(&sha256)),
                size: Some(size),
                installed_count: 1,
                ..SlotStatus::default()
            },
        );
        status.save().unwrap();
        FileDevice { conf }
    }

    /// What `testudo update install BUNDLE` does on the device booted from A: opens (CMS
    /// signature, verity) and installs `bundle` with the default options (read-back
    /// included). How long each took.
    pub fn install(&self, bundle_path: &Path) -> (Duration, Duration) {
        let started = Instant::now();
        let keyring =
            Keyring::load(self.conf.keyring.as_ref().unwrap(), CheckPurpose::default()).unwrap();
        let opened = bundle::open(bundle_path, &keyring).unwrap();
        let verified = started.elapsed();
        let booted = self.conf.slot_by_bootname("A").unwrap();
        let mut bootloader = testudo_updater::bootloader::open(&self.conf).unwrap();
        install::install(
            &self.conf,
            booted,
            &opened,
            bootloader.as_mut(),
            &InstallOptions::default(),
            &mut |_, _| ControlFlow::Continue(()),
        )
        .unwrap();
        (verified, started.elapsed() - verified)
    }
}
