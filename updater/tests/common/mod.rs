//! Shared helpers for the updater integration tests: a throwaway PKI, small images, and
//! running the real `rauc`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testudo_updater::keys::{self, Issued, KeyKind, Validity};
use testudo_updater::signature::Signer;

/// A test PKI on disk: root CA (keyring), optional intermediate, signer.
pub struct Pki {
    pub dir: PathBuf,
    pub keyring: PathBuf,
    pub signer: Signer,
}

pub fn write_issued(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    keys::write_cert(&cert, &issued.cert).unwrap();
    keys::write_private_key(&key, &issued.key).unwrap();
    (cert, key)
}

/// Root CA -> (intermediate ->) signer, with the given key kind and signer validity.
pub fn pki(dir: &Path, kind: KeyKind, intermediate: bool, signer_validity: Validity) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let root = keys::issue("test root CA", kind, Validity::days(30), true, None).unwrap();
    let (keyring, _) = write_issued(dir, "root", &root);
    let mut intermediates = Vec::new();
    let parent = if intermediate {
        let inter = keys::issue(
            "test intermediate CA",
            kind,
            Validity::days(30),
            true,
            Some(&root),
        )
        .unwrap();
        let (cert, _) = write_issued(dir, "intermediate", &inter);
        intermediates.push(cert);
        inter
    } else {
        root
    };
    let signer = keys::issue("test signer", kind, signer_validity, false, Some(&parent)).unwrap();
    let (cert, key) = write_issued(dir, "signer", &signer);
    Pki {
        dir: dir.to_path_buf(),
        keyring,
        signer: Signer {
            cert,
            key,
            intermediates,
        },
    }
}

pub fn simple_pki(dir: &Path) -> Pki {
    pki(dir, KeyKind::EcP256, false, Validity::days(10))
}

/// A deterministic pseudo-random image of `size` bytes with a version-dependent seed.
pub fn image(path: &Path, size: usize, seed: u8) -> PathBuf {
    let mut data = Vec::with_capacity(size);
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x >> 24) as u8);
    }
    std::fs::write(path, data).unwrap();
    path.to_path_buf()
}

/// Runs a program, failing the test with a clear message if it is not installed.
pub fn run(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut command = Command::new(program);
    for arg in args {
        command.arg(arg);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("{program} is required for this test (Debian package providing it must be installed): {e}"))
}

pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An A/B device in a directory: slot files, grubenv, status file, system.conf.
pub struct Device {
    pub dir: PathBuf,
    pub conf_path: PathBuf,
    pub conf: testudo_updater::SystemConf,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    pub grubenv: PathBuf,
}

/// Slot A holds `image_a` (installed as version `version_a`, marked good), slot B junk;
/// GRUB env ORDER="A B" with both slots OK.
pub fn device(
    dir: &Path,
    keyring: &Path,
    compatible: &str,
    image_a: &Path,
    version_a: &str,
) -> Device {
    use testudo_updater::bootloader::grub::GrubEnv;
    use testudo_updater::status_file::{SlotStatus, StatusFile};
    std::fs::create_dir_all(dir).unwrap();
    let slot_a = dir.join("slot-a.img");
    let slot_b = dir.join("slot-b.img");
    std::fs::copy(image_a, &slot_a).unwrap();
    std::fs::write(&slot_b, vec![0x5au8; 70_000]).unwrap();
    let grubenv = dir.join("grubenv");
    std::fs::write(&grubenv, GrubEnv::initial(&["A", "B"]).render().unwrap()).unwrap();
    let conf = testudo_updater::SystemConf::grub_ab(
        compatible,
        keyring,
        &grubenv,
        &dir.join("data"),
        &slot_a,
        &slot_b,
    );
    let conf_path = dir.join("system.conf");
    std::fs::write(&conf_path, conf.render()).unwrap();
    let mut status = StatusFile::load(&conf.status_path().unwrap()).unwrap();
    let (sha, size) = testudo_updater::bundle::sha256_file(image_a).unwrap();
    status.set(
        "rootfs.0",
        SlotStatus {
            bundle_compatible: Some(compatible.to_string()),
            bundle_version: Some(version_a.to_string()),
            status: Some("ok".to_string()),
            sha256: Some(hex::encode(sha)),
            size: Some(size),
            installed_count: 1,
            ..SlotStatus::default()
        },
    );
    status.save().unwrap();
    Device {
        dir: dir.to_path_buf(),
        conf_path,
        conf,
        slot_a,
        slot_b,
        grubenv,
    }
}

impl Device {
    pub fn env(&self) -> testudo_updater::bootloader::grub::GrubEnv {
        testudo_updater::bootloader::grub::GrubEnv::parse(&std::fs::read(&self.grubenv).unwrap())
            .unwrap()
    }

    pub fn set_env(&self, env: &testudo_updater::bootloader::grub::GrubEnv) {
        std::fs::write(&self.grubenv, env.render().unwrap()).unwrap();
    }

    /// Power-on: GRUB picks a slot (and saves its env). Returns the bootname.
    pub fn boot(&self) -> Option<String> {
        let mut env = self.env();
        let booted = testudo_updater::bootloader::grub::simulate_boot(&mut env);
        self.set_env(&env);
        booted
    }

    pub fn slot_path(&self, bootname: &str) -> &Path {
        match bootname {
            "A" => &self.slot_a,
            "B" => &self.slot_b,
            other => panic!("no slot {other}"),
        }
    }

    pub fn booted_slot(&self, bootname: &str) -> &testudo_updater::system_conf::SlotConf {
        self.conf.slot_by_bootname(bootname).unwrap()
    }

    pub fn bootloader(&self) -> Box<dyn testudo_updater::bootloader::Bootloader> {
        testudo_updater::bootloader::open(&self.conf).unwrap()
    }

    /// Every file of the device, for "nothing was written" checks.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    files.push((path, bytes));
                }
            }
        }
        files.sort();
        files
    }
}

/// Verifies with a fresh keyring from `path`.
pub fn keyring(path: &Path) -> testudo_updater::Keyring {
    testudo_updater::Keyring::load(path, testudo_updater::signature::CheckPurpose::default())
        .unwrap()
}

/// Creates a verity bundle of `image` with version `version`.
pub fn make_bundle(
    pki: &Pki,
    image: &Path,
    compatible: &str,
    version: &str,
    out: &Path,
) -> PathBuf {
    let spec = testudo_updater::BundleSpec::new(
        compatible,
        version,
        vec![("rootfs".into(), image.to_path_buf())],
    );
    testudo_updater::bundle::create(&spec, &pki.signer, out).unwrap();
    out.to_path_buf()
}
