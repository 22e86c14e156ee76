//! Shared helpers for the updater integration tests: a throwaway PKI, small images, an A/B
//! device in a directory, bundles, and running the real tools (`rauc`, squashfs-tools, ...)
//! with a clear failure naming the tool when one is missing.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testudo_updater::bundle::VerifiedBundle;
use testudo_updater::install::{self, InstallOptions, InstallReport};
use testudo_updater::keys::{self, Issued, KeyKind, Validity};
use testudo_updater::mark::{self, Mark, MarkTarget};
use testudo_updater::signature::Signer;
use testudo_updater::{BundleSpec, CreatedBundle, UpdaterError};

/// The Debian package providing each external program the tests run (all listed in
/// `xtask/src/deps.rs`, which `cargo xtask deps` installs).
const TOOL_PACKAGES: &[(&str, &str)] = &[
    ("casync", "casync"),
    ("fsck.fat", "dosfstools"),
    ("grub-editenv", "grub-common"),
    ("grub-script-check", "grub-common"),
    ("losetup", "mount"),
    ("mcopy", "mtools"),
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mshowfat", "mtools"),
    ("mtype", "mtools"),
    ("mksquashfs", "squashfs-tools"),
    ("rauc", "rauc"),
    ("unsquashfs", "squashfs-tools"),
    ("veritysetup", "cryptsetup-bin"),
    ("bspatch", "bsdiff"),
    ("openssl", "openssl"),
    ("swtpm", "swtpm"),
];

/// Fails the test with a message naming `program` (and its Debian package) unless it is an
/// executable on PATH. Tests never skip: a missing tool is a failure.
pub fn require(program: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    });
    if !found {
        let package = TOOL_PACKAGES
            .iter()
            .find(|(tool, _)| *tool == program)
            .map_or("?", |(_, package)| package);
        panic!(
            "`{program}` is required by this test but is not on PATH: install Debian package \
             `{package}` (`cargo xtask deps` installs every test dependency)"
        );
    }
}

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

/// Root CA -> (intermediate ->) signer, all valid now, with the given key kind.
pub fn valid_pki(dir: &Path, kind: KeyKind, intermediate: bool) -> Pki {
    pki(dir, kind, intermediate, Validity::days(5))
}

/// Root CA -> ECDSA P-256 signer, valid now.
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
    require(program);
    let mut command = Command::new(program);
    for arg in args {
        command.arg(arg);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"))
}

/// `(payload length, signature length)` of a bundle's bytes, from the u64 BE trailer.
/// `rauc bundle` of the content directory `content` into `out`, signed by `pki`'s signer with
/// its intermediates embedded.
pub fn rauc_bundle(pki: &Pki, content: &Path, out: &Path) {
    let intermediates: Vec<String> = pki
        .signer
        .intermediates
        .iter()
        .map(|p| format!("--intermediate={}", p.display()))
        .collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"bundle",
        &"--cert",
        &pki.signer.cert,
        &"--key",
        &pki.signer.key,
    ];
    for arg in &intermediates {
        args.push(arg);
    }
    args.push(&content);
    args.push(&out);
    let output = run("rauc", &args);
    assert_success("rauc bundle", &output);
}

pub fn bundle_layout(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len() as u64;
    let sig = u64::from_be_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
    (len - 8 - sig, sig)
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

/// Boots a slot gets in the simulated devices: RAUC's default of one.
pub const BOOT_TRIES: u32 = 1;

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
        let booted = testudo_updater::bootloader::grub::simulate_boot(&mut env, BOOT_TRIES);
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

    /// Installs `bundle` from the running slot `booted` with `options`, uninterrupted.
    /// (Every backend keeps its state on disk, so a fresh bootloader handle is equivalent.)
    pub fn install_with(
        &self,
        booted: &str,
        bundle: &VerifiedBundle,
        options: &InstallOptions,
    ) -> Result<InstallReport, UpdaterError> {
        self.install_observed(booted, bundle, options, &mut |_, _| {
            ControlFlow::Continue(())
        })
    }

    /// As [`Self::install_with`], `observer` seeing each write step before it is performed
    /// (and able to stop the install there, like a power cut).
    pub fn install_observed(
        &self,
        booted: &str,
        bundle: &VerifiedBundle,
        options: &InstallOptions,
        observer: &mut dyn FnMut(usize, &install::Step) -> ControlFlow<()>,
    ) -> Result<InstallReport, UpdaterError> {
        install::install(
            &self.conf,
            self.booted_slot(booted),
            bundle,
            self.bootloader().as_mut(),
            options,
            observer,
        )
    }

    /// Installs `bundle` from the running slot `booted` with default options, uninterrupted.
    pub fn install(
        &self,
        booted: &str,
        bundle: &VerifiedBundle,
    ) -> Result<InstallReport, UpdaterError> {
        self.install_with(booted, bundle, &InstallOptions::default())
    }

    /// `mark-<mark> <target>` as run on the slot `booted`; panics on failure.
    pub fn mark(&self, booted: &str, mark: Mark, target: &MarkTarget) {
        mark::mark(
            &self.conf,
            self.booted_slot(booted),
            self.bootloader().as_mut(),
            mark,
            target,
        )
        .unwrap();
    }

    /// The running slot `booted` confirms itself (`mark-good booted`).
    pub fn mark_good(&self, booted: &str) {
        self.mark(booted, Mark::Good, &MarkTarget::Booted);
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

/// Creates the bundle `spec` signed by `pki`'s signer at `out` (needs `mksquashfs`).
pub fn create_bundle(spec: &BundleSpec, pki: &Pki, out: &Path) -> CreatedBundle {
    require("mksquashfs");
    testudo_updater::bundle::create(spec, &pki.signer, out).unwrap()
}

/// Creates a verity bundle of `image` with version `version`.
pub fn make_bundle(
    pki: &Pki,
    image: &Path,
    compatible: &str,
    version: &str,
    out: &Path,
) -> PathBuf {
    let spec = BundleSpec::new(
        compatible,
        version,
        vec![("rootfs".into(), image.to_path_buf())],
    );
    create_bundle(&spec, pki, out);
    out.to_path_buf()
}

/// Opens and verifies `bundle` against `pki`'s keyring.
pub fn open_bundle(bundle: &Path, pki: &Pki) -> VerifiedBundle {
    testudo_updater::bundle::open(bundle, &keyring(&pki.keyring)).unwrap()
}

/// The set-up most install tests share: a test PKI, image `v1` installed in slot A of a GRUB
/// A/B device (compatible `gw`, version 1.0, marked good), and a verity bundle of image `v2`
/// (version 2.0).
pub struct AbUpdate {
    /// Owns every file below; removed on drop.
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub v1: PathBuf,
    pub v2: PathBuf,
    pub device: Device,
    pub bundle: PathBuf,
}

/// Builds an [`AbUpdate`] with images of `v1_size` and `v2_size` bytes.
pub fn ab_update(v1_size: usize, v2_size: usize) -> AbUpdate {
    let dir = tempfile::tempdir().unwrap();
    let pki = simple_pki(&dir.path().join("pki"));
    let v1 = image(&dir.path().join("v1.img"), v1_size, 1);
    let v2 = image(&dir.path().join("v2.img"), v2_size, 2);
    let device = device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    let bundle = make_bundle(&pki, &v2, "gw", "2.0", &dir.path().join("v2.raucb"));
    AbUpdate {
        dir,
        pki,
        v1,
        v2,
        device,
        bundle,
    }
}

impl AbUpdate {
    /// The bundle of `v2`, opened and verified.
    pub fn open_bundle(&self) -> VerifiedBundle {
        open_bundle(&self.bundle, &self.pki)
    }
}

/// A crypt bundle `rauc bundle` makes under `dir` (version 2.0 for `gw`, a 300,000-byte
/// `rootfs.img`), then `rauc encrypt --to` each certificate of `recipients`:
/// `(image bytes, signed bundle, encrypted bundle)`.
pub fn rauc_encrypted_bundle(
    dir: &Path,
    pki: &Pki,
    recipients: &[&Path],
) -> (Vec<u8>, PathBuf, PathBuf) {
    let content = dir.join("content");
    std::fs::create_dir(&content).unwrap();
    let image = std::fs::read(self::image(&content.join("rootfs.img"), 300_000, 3)).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=gw\nversion=2.0\n\n[bundle]\nformat=crypt\n\n[image.rootfs]\nfilename=rootfs.img\n",
    )
    .unwrap();
    let signed = dir.join("crypt.raucb");
    rauc_bundle(pki, &content, &signed);
    let encrypted = dir.join("encrypted.raucb");
    let keyring = format!("--keyring={}", pki.keyring.display());
    let to: Vec<String> = recipients
        .iter()
        .map(|cert| format!("--to={}", cert.display()))
        .collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&keyring, &"encrypt"];
    for arg in &to {
        args.push(arg);
    }
    args.push(&signed);
    args.push(&encrypted);
    let output = run("rauc", &args);
    assert_success("rauc encrypt", &output);
    (image, signed, encrypted)
}
