//! The `update` capability end to end on this host: a real RAUC bundle (CMS signature, verity
//! tree) signed with development keys, its Azure Device Update manifest signed under a root
//! key, served by the updater's provider over the real scheme wire, staged through the raw
//! descriptor the relay gets, installed into file-backed slots with a grubenv file — and what
//! a reboot leaves behind read back as a new boot would.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testudo_os_update::manifest::{self, UpdateId};
use testudo_os_update::update_scheme::{
    device_compatibility, UpdatePhase, UpdateRequest, UpdateStatus, STAGED,
};
use testudo_os_update::{keys as update_keys, signature};
use testudo_scheme::{Grant, Handle, Rights, Server};
use testudo_update_service::record::{DeviceRecord, Stage, UpdateDir, WorkflowRecord};
use testudo_update_service::scheme::{PowerControl, UpdateProvider};
use testudo_update_service::workflow::SharedGrub;
use testudo_update_service::{UpdateConfig, UpdateServiceError, Updates};
use testudo_updater::bootloader::grub::{GrubBackend, GrubEnv, TRIAL};
use testudo_updater::{bundle, BundleSpec, Signer, SystemConf};

const COMPATIBLE: &str = "testudo-test-gateway";
const RUNNING: &str = "1.0.0";
const NEW: &str = "1.1.0";
const IMAGE_BYTES: usize = 3 * 1024 * 1024 + 517;

/// A device on this host: keys, system.conf, file slots, a grubenv file, the updater's
/// directory.
struct TestDevice {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    keys: PathBuf,
    signer: Signer,
    conf: PathBuf,
    grubenv: PathBuf,
    slot_a: PathBuf,
    slot_b: PathBuf,
}

impl TestDevice {
    fn new() -> TestDevice {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_owned();
        let keys = dir.join("keys");
        let dev = testudo_updater::keys::init_dev_keys(&keys).unwrap();
        update_keys::init_dev_update_keys(&keys).unwrap();
        let grubenv = dir.join("grubenv");
        std::fs::write(&grubenv, GrubEnv::initial(&["A", "B"]).render().unwrap()).unwrap();
        let slot_a = dir.join("rootfs-a.img");
        let slot_b = dir.join("rootfs-b.img");
        std::fs::write(&slot_a, b"the running system").unwrap();
        std::fs::write(&slot_b, vec![0x5a; 4096]).unwrap();
        let mut system = SystemConf::grub_ab(
            COMPATIBLE,
            &dev.ca_cert,
            &grubenv,
            &dir.join("rauc"),
            &slot_a,
            &slot_b,
        );
        // As the image builder writes it when the config does not allow downgrades.
        system.min_bundle_version = Some(RUNNING.to_owned());
        let conf = dir.join("system.conf");
        std::fs::write(&conf, system.render()).unwrap();
        TestDevice {
            _temp: temp,
            signer: Signer {
                cert: dev.signing_cert,
                key: dev.signing_key,
                intermediates: Vec::new(),
            },
            keys,
            conf,
            grubenv,
            slot_a,
            slot_b,
            dir,
        }
    }

    fn config(&self, booted: &str) -> UpdateConfig {
        UpdateConfig {
            dir: self.dir.join("rauc"),
            system_conf: self.conf.clone(),
            root_keys: self.keys.join(update_keys::ROOT_JWKS),
            booted: booted.to_owned(),
            system_version: RUNNING.to_owned(),
        }
    }

    fn grub(&self) -> SharedGrub {
        Arc::new(Mutex::new(GrubBackend::new(
            self.grubenv.clone(),
            vec!["A".into(), "B".into()],
        )))
    }

    fn env(&self) -> GrubEnv {
        GrubEnv::parse(&std::fs::read(&self.grubenv).unwrap()).unwrap()
    }

    /// A bundle of `version` for `compatible` holding a rootfs image (seeded by `seed`).
    fn bundle(&self, name: &str, compatible: &str, version: &str, seed: u8) -> (PathBuf, Vec<u8>) {
        let image: Vec<u8> = (0..IMAGE_BYTES)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
            .collect();
        let image_path = self.dir.join(format!("{name}.img"));
        std::fs::write(&image_path, &image).unwrap();
        let out = self.dir.join(format!("{name}.raucb"));
        bundle::create(
            &BundleSpec::new(compatible, version, vec![("rootfs".into(), image_path)]),
            &self.signer,
            &out,
        )
        .unwrap();
        (out, image)
    }

    /// The manifest for `bundle` installing `version` on `model`, and its signature.
    fn manifest(&self, bundle: &Path, version: &str, model: &str) -> (String, String) {
        self.manifest_with_delta(bundle, version, model, None)
    }

    /// As [`Self::manifest`], offering `delta` (file id, path, source image sha256) too.
    fn manifest_with_delta(
        &self,
        bundle: &Path,
        version: &str,
        model: &str,
        delta: Option<(&str, &Path, [u8; 32])>,
    ) -> (String, String) {
        let (sha256, size) = bundle::sha256_file(bundle).unwrap();
        let manifest = manifest::for_bundle(
            UpdateId {
                provider: "testudo".into(),
                name: "gateway".into(),
                version: version.into(),
            },
            device_compatibility(model),
            "update.raucb",
            size,
            sha256,
            version,
            "2026-12-04T00:00:00Z",
        );
        let mut manifest = manifest;
        if let Some((id, path, source)) = delta {
            let (sha256, size) = bundle::sha256_file(path).unwrap();
            assert!(manifest.add_delta(
                id,
                manifest::RelatedFile {
                    file_name: "delta.raucb".into(),
                    size_in_bytes: size,
                    sha256,
                    source_sha256: Some(source),
                },
            ));
        }
        let manifest = manifest.to_json();
        let chain = update_keys::load_signing_chain(&self.keys).unwrap();
        let signature = signature::sign(&manifest, &chain).unwrap();
        (manifest, signature)
    }
}

/// Counts reboot requests.
#[derive(Default)]
struct FakePower {
    reboots: AtomicUsize,
}

impl PowerControl for FakePower {
    fn reboot(&self) -> Result<(), UpdateServiceError> {
        self.reboots.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The relay's end of the capability, served by the updater's provider on a thread.
struct Relay {
    handle: Handle,
    power: Arc<FakePower>,
    connected: Arc<AtomicBool>,
}

impl Relay {
    fn serve(updates: Updates) -> Relay {
        let power = Arc::new(FakePower::default());
        let connected = Arc::new(AtomicBool::new(false));
        let provider = UpdateProvider::new(
            Arc::new(Mutex::new(updates)),
            Arc::clone(&power) as Arc<dyn PowerControl>,
            Arc::clone(&connected),
            Arc::new(|line: &str| eprintln!("updater: {line}")),
        );
        let mut server = Server::new(provider);
        let handle = server
            .grant(&Grant {
                consumer: "agent".into(),
                capability: "update".into(),
                rights: Rights::ReadWrite,
                allow: Vec::new(),
            })
            .unwrap();
        std::thread::spawn(move || server.run());
        Relay {
            handle,
            power,
            connected,
        }
    }

    fn request(&self, request: &UpdateRequest) -> Result<(), testudo_scheme::SchemeError> {
        self.handle.write(&request.to_bytes()).map(drop)
    }

    fn status(&self) -> UpdateStatus {
        let mut buf = vec![0u8; 16 * 1024];
        let n = self.handle.read(&mut buf).unwrap();
        UpdateStatus::parse(&buf[..n]).unwrap()
    }

    fn stage(&self, workflow: &str, manifest: &str, signature: &str) {
        self.request(&UpdateRequest::Stage {
            workflow: workflow.into(),
            manifest: manifest.into(),
            signature: signature.into(),
        })
        .unwrap();
    }

    /// Writes `bytes` at `offset` of the staging file through the raw descriptor.
    fn write_staged(&self, offset: u64, bytes: &[u8]) {
        let fd = self.handle.open_raw(STAGED, Rights::Write).unwrap();
        std::fs::File::from(fd).write_all_at(bytes, offset).unwrap();
    }

    /// Asks to install and waits until the install ended.
    fn install(&self, workflow: &str) -> UpdateStatus {
        self.request(&UpdateRequest::Install {
            workflow: workflow.into(),
        })
        .unwrap();
        let started = Instant::now();
        loop {
            let status = self.status();
            if !matches!(status.phase, UpdatePhase::Installing { .. }) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the install did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Images of whole 4 KiB blocks, as deltas need: the running one (`base`) and the update
/// (`new`: `base` with bytes inserted and changed), their full bundles and the delta between
/// them, all in `device`'s directory.
struct DeltaUpdate {
    base: Vec<u8>,
    new: Vec<u8>,
    full: PathBuf,
    delta: PathBuf,
}

fn delta_update(device: &TestDevice) -> DeltaUpdate {
    let blocks = 768;
    let base: Vec<u8> = (0..blocks * 4096)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut new = base.clone();
    new.splice(5000..5000, b"a rebuilt file".repeat(40));
    new.truncate(base.len());
    let write = |name: &str, version: &str, image: &[u8]| {
        let dir = device.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rootfs.img");
        std::fs::write(&path, image).unwrap();
        let out = device.dir.join(format!("{name}.raucb"));
        bundle::create(
            &BundleSpec::new(COMPATIBLE, version, vec![("rootfs".into(), path)]),
            &device.signer,
            &out,
        )
        .unwrap();
        out
    };
    let base_bundle = write("base", RUNNING, &base);
    let full = write("full", NEW, &new);
    let keyring = testudo_updater::Keyring::load(
        &device.keys.join("ca.pem"),
        testudo_updater::signature::CheckPurpose::default(),
    )
    .unwrap();
    let delta = device.dir.join("delta.raucb");
    testudo_updater::delta::create(
        &bundle::open(&base_bundle, &keyring).unwrap(),
        &bundle::open(&full, &keyring).unwrap(),
        &device.signer,
        &delta,
    )
    .unwrap();
    DeltaUpdate {
        base,
        new,
        full,
        delta,
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// A relay to `device` (booted from A) that staged workflow `w1`: `update`'s full bundle,
/// offering its delta as `delta-1` for the base image.
fn stage_with_delta(device: &TestDevice, update: &DeltaUpdate) -> Relay {
    let (manifest, signature) = device.manifest_with_delta(
        &update.full,
        NEW,
        COMPATIBLE,
        Some(("delta-1", &update.delta, sha256(&update.base))),
    );
    let relay = Relay::serve(Updates::open(device.config("A"), device.grub()).unwrap());
    relay.stage("w1", &manifest, &signature);
    relay
}

#[test]
fn a_delta_for_the_running_image_is_downloaded_instead_of_the_full_bundle() {
    let device = TestDevice::new();
    let update = delta_update(&device);
    std::fs::write(&device.slot_a, &update.base).unwrap();
    let relay = stage_with_delta(&device, &update);
    let delta_bytes = std::fs::read(&update.delta).unwrap();
    assert_eq!(
        relay.status().phase,
        UpdatePhase::Downloading {
            file_id: "delta-1".into(),
            size: delta_bytes.len() as u64,
            staged: 0
        }
    );
    relay.write_staged(0, &delta_bytes);
    let status = relay.install("w1");
    assert_eq!(status.phase, UpdatePhase::Installed { slot: "B".into() });
    assert_eq!(
        &std::fs::read(&device.slot_b).unwrap()[..update.new.len()],
        &update.new[..]
    );
}

#[test]
fn a_delta_that_does_not_fit_the_running_slot_falls_back_to_the_full_bundle() {
    let device = TestDevice::new();
    let update = delta_update(&device);
    // The running slot holds something else than the delta's base, and has no record: the
    // delta is tried, its base check fails before anything is written, and the full bundle
    // is wanted next.
    let running: Vec<u8> = update.base.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&device.slot_a, &running).unwrap();
    let relay = stage_with_delta(&device, &update);
    relay.write_staged(0, &std::fs::read(&update.delta).unwrap());
    let full_bytes = std::fs::read(&update.full).unwrap();
    assert_eq!(
        relay.install("w1").phase,
        UpdatePhase::Downloading {
            file_id: "bundle".into(),
            size: full_bytes.len() as u64,
            staged: 0
        },
        "after a delta that does not fit, the full bundle is wanted"
    );
    relay.write_staged(0, &full_bytes);
    assert_eq!(
        relay.install("w1").phase,
        UpdatePhase::Installed { slot: "B".into() }
    );
    assert_eq!(
        &std::fs::read(&device.slot_b).unwrap()[..update.new.len()],
        &update.new[..]
    );
    assert_eq!(std::fs::read(&device.slot_a).unwrap(), running);

    // A device whose status file records another image in its running slot downloads the
    // full bundle at once.
    let device = TestDevice::new();
    let update = delta_update(&device);
    std::fs::write(&device.slot_a, &update.base).unwrap();
    let conf = SystemConf::load(&device.conf).unwrap();
    let mut status =
        testudo_updater::status_file::StatusFile::load(&conf.status_path().unwrap()).unwrap();
    status.set(
        "rootfs.0",
        testudo_updater::status_file::SlotStatus {
            sha256: Some(hex::encode([7u8; 32])),
            size: Some(update.base.len() as u64),
            ..Default::default()
        },
    );
    status.save().unwrap();
    let relay = stage_with_delta(&device, &update);
    let UpdatePhase::Downloading { file_id, .. } = relay.status().phase else {
        panic!("downloading expected")
    };
    assert_eq!(file_id, "bundle");
}

fn failed_step(status: &UpdateStatus) -> &str {
    match &status.phase {
        UpdatePhase::Failed { step, .. } => step,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_signed_update_is_staged_resumed_verified_installed_and_applied_once_its_boot_confirms() {
    let device = TestDevice::new();
    let (bundle_path, image) = device.bundle("new", COMPATIBLE, NEW, 1);
    let bundle_bytes = std::fs::read(&bundle_path).unwrap();
    let (manifest, signature) = device.manifest(&bundle_path, NEW, COMPATIBLE);
    let relay = Relay::serve(Updates::open(device.config("A"), device.grub()).unwrap());

    relay.stage("w1", &manifest, &signature);
    let status = relay.status();
    assert_eq!(status.workflow.as_deref(), Some("w1"));
    assert_eq!(
        status.update_id.as_ref().map(|id| id.version.as_str()),
        Some(NEW)
    );
    assert_eq!(
        status.phase,
        UpdatePhase::Downloading {
            file_id: "bundle".into(),
            size: bundle_bytes.len() as u64,
            staged: 0
        }
    );

    // A download cut off half way, then the same workflow delivered again: the staged bytes
    // are kept and the relay resumes where they end.
    let half = bundle_bytes.len() / 2;
    relay.write_staged(0, &bundle_bytes[..half]);
    relay.stage("w1", &manifest, &signature);
    let UpdatePhase::Downloading { staged, .. } = relay.status().phase else {
        panic!("still downloading")
    };
    assert_eq!(staged, half as u64);
    relay.write_staged(staged, &bundle_bytes[half..]);

    let status = relay.install("w1");
    assert_eq!(status.phase, UpdatePhase::Installed { slot: "B".into() });
    assert_eq!(
        &std::fs::read(&device.slot_b).unwrap()[..IMAGE_BYTES],
        &image[..]
    );
    let env = device.env();
    assert_eq!(env.order().first().map(String::as_str), Some("B"));
    assert_eq!(env.get(TRIAL), Some("B"));
    assert!(
        !device.dir.join("rauc").join("staged.raucb").exists(),
        "the staged copy is removed once the slot holds it"
    );

    relay
        .request(&UpdateRequest::Reboot {
            workflow: "w1".into(),
        })
        .unwrap();
    assert_eq!(relay.power.reboots.load(Ordering::SeqCst), 1);

    // The next boot: GRUB boots B on trial; the updater reads the record back.
    let mut after_boot = Updates::open(device.config("B"), device.grub()).unwrap();
    assert_eq!(
        after_boot.status().phase,
        UpdatePhase::Confirming { slot: "B".into() }
    );
    after_boot.confirmed("B").unwrap();
    let status = after_boot.status();
    assert_eq!(status.phase, UpdatePhase::Applied);
    assert_eq!(
        status.installed_update_id.map(|id| id.version),
        Some(NEW.to_owned())
    );
    // Redelivered after it was applied: nothing happens again.
    after_boot.stage("w1", &manifest, &signature).unwrap();
    assert_eq!(after_boot.status().phase, UpdatePhase::Applied);
    assert!(!relay.connected.load(Ordering::SeqCst));
}

#[test]
fn nothing_is_downloaded_for_a_manifest_that_does_not_verify_or_fit() {
    let device = TestDevice::new();
    let (bundle_path, _) = device.bundle("new", COMPATIBLE, NEW, 1);
    let (manifest, signature) = device.manifest(&bundle_path, NEW, COMPATIBLE);
    let relay = Relay::serve(Updates::open(device.config("A"), device.grub()).unwrap());

    let tampered = manifest.replacen(NEW, "9.9.9", 1);
    relay.stage("tampered", &tampered, &signature);
    let status = relay.status();
    assert_eq!(failed_step(&status), "manifest_signature");
    assert!(
        relay.handle.open_raw(STAGED, Rights::Write).is_err(),
        "no staging file for a refused workflow"
    );

    let other_keys = tempfile::tempdir().unwrap();
    update_keys::init_dev_update_keys(other_keys.path()).unwrap();
    let foreign = signature::sign(
        &manifest,
        &update_keys::load_signing_chain(other_keys.path()).unwrap(),
    )
    .unwrap();
    relay.stage("unknown-root", &manifest, &foreign);
    assert_eq!(failed_step(&relay.status()), "manifest_signature");

    let (other_model, other_signature) = device.manifest(&bundle_path, NEW, "another-board");
    relay.stage("incompatible", &other_model, &other_signature);
    assert_eq!(failed_step(&relay.status()), "incompatible");

    let (older, older_signature) = device.manifest(&bundle_path, "0.9.0", COMPATIBLE);
    relay.stage("downgrade", &older, &older_signature);
    let status = relay.status();
    assert_eq!(failed_step(&status), "downgrade");

    let (same, same_signature) = device.manifest(&bundle_path, RUNNING, COMPATIBLE);
    relay.stage("installed-already", &same, &same_signature);
    assert_eq!(
        relay.status().phase,
        UpdatePhase::Applied,
        "the running version is the installed criteria: applied without a download"
    );
    assert_eq!(device.env(), GrubEnv::initial(&["A", "B"]));
}

#[test]
fn a_staged_file_other_than_the_signed_one_never_reaches_the_slot() {
    let device = TestDevice::new();
    let slot_b_before = std::fs::read(&device.slot_b).unwrap();
    let env_before = device.env();
    let (bundle_path, _) = device.bundle("new", COMPATIBLE, NEW, 1);
    let bundle_bytes = std::fs::read(&bundle_path).unwrap();
    let (manifest, signature) = device.manifest(&bundle_path, NEW, COMPATIBLE);
    let relay = Relay::serve(Updates::open(device.config("A"), device.grub()).unwrap());

    // A truncated download.
    relay.stage("truncated", &manifest, &signature);
    relay.write_staged(0, &bundle_bytes[..bundle_bytes.len() - 1]);
    assert_eq!(failed_step(&relay.install("truncated")), "file_hash");

    // One flipped byte.
    relay.stage("flipped", &manifest, &signature);
    let mut flipped = bundle_bytes.clone();
    flipped[1000] ^= 1;
    relay.write_staged(0, &flipped);
    assert_eq!(failed_step(&relay.install("flipped")), "file_hash");

    // A bundle whose manifest entry verifies but whose CMS signature is by a key the device's
    // keyring does not trust: the second, independent check refuses it.
    let foreign = TestDevice::new();
    let (foreign_bundle, _) = foreign.bundle("foreign", COMPATIBLE, NEW, 2);
    let (foreign_manifest, foreign_signature) = device.manifest(&foreign_bundle, NEW, COMPATIBLE);
    relay.stage("foreign-cms", &foreign_manifest, &foreign_signature);
    relay.write_staged(0, &std::fs::read(&foreign_bundle).unwrap());
    assert_eq!(
        failed_step(&relay.install("foreign-cms")),
        "bundle_signature"
    );

    // A bundle for another system, though the manifest claims this one.
    let (other_bundle, _) = device.bundle("other", "another-system", NEW, 3);
    let (other_manifest, other_signature) = device.manifest(&other_bundle, NEW, COMPATIBLE);
    relay.stage("other-system", &other_manifest, &other_signature);
    relay.write_staged(0, &std::fs::read(&other_bundle).unwrap());
    assert_eq!(failed_step(&relay.install("other-system")), "incompatible");

    assert_eq!(std::fs::read(&device.slot_b).unwrap(), slot_b_before);
    assert_eq!(device.env(), env_before, "nothing was made bootable");
}

#[test]
fn a_workflow_cancelled_before_install_leaves_nothing_and_a_new_one_replaces_an_older_one() {
    let device = TestDevice::new();
    let (bundle_path, _) = device.bundle("new", COMPATIBLE, NEW, 1);
    let (manifest, signature) = device.manifest(&bundle_path, NEW, COMPATIBLE);
    let relay = Relay::serve(Updates::open(device.config("A"), device.grub()).unwrap());
    let staged = device.dir.join("rauc").join("staged.raucb");

    relay.stage("w1", &manifest, &signature);
    relay.write_staged(0, b"partial");
    relay
        .request(&UpdateRequest::Cancel {
            workflow: "w1".into(),
        })
        .unwrap();
    assert_eq!(relay.status().phase, UpdatePhase::Cancelled);
    assert!(!staged.exists());
    let error = relay
        .request(&UpdateRequest::Install {
            workflow: "w1".into(),
        })
        .unwrap_err();
    assert!(error.to_string().contains("EAGAIN") || format!("{error:?}").contains("EAGAIN"));

    relay.stage("w2", &manifest, &signature);
    relay.write_staged(0, b"old bytes");
    relay.stage("w3", &manifest, &signature);
    let status = relay.status();
    assert_eq!(status.workflow.as_deref(), Some("w3"));
    assert!(
        matches!(status.phase, UpdatePhase::Downloading { staged: 0, .. }),
        "a new workflow starts from an empty staging file: {status:?}"
    );
    let refused = relay.request(&UpdateRequest::Install {
        workflow: "w2".into(),
    });
    assert!(refused.is_err(), "the replaced workflow is not current");
    relay.request(&UpdateRequest::Connected).unwrap();
    assert!(relay.connected.load(Ordering::SeqCst));
}

#[test]
fn what_a_reboot_interrupted_is_settled_from_the_record_and_the_boot_state() {
    let device = TestDevice::new();
    let (bundle_path, _) = device.bundle("new", COMPATIBLE, NEW, 1);
    let (manifest, signature) = device.manifest(&bundle_path, NEW, COMPATIBLE);
    let dir = UpdateDir::new(&device.dir.join("rauc")).unwrap();
    let record = |stage: Stage| DeviceRecord {
        current: Some(WorkflowRecord {
            workflow: "w1".into(),
            manifest: manifest.clone(),
            signature: signature.clone(),
            update_id: Some(UpdateId {
                provider: "testudo".into(),
                name: "gateway".into(),
                version: NEW.into(),
            }),
            delta: None,
            stage,
        }),
        installed: Default::default(),
    };

    // Power cut during the install: verified again from the staged file.
    dir.save(&record(Stage::Installing { slot: "B".into() }))
        .unwrap();
    let status = Updates::open(device.config("A"), device.grub())
        .unwrap()
        .status();
    assert!(
        matches!(status.phase, UpdatePhase::Downloading { .. }),
        "{status:?}"
    );

    // Installed and not yet rebooted (the updater restarted): still pending.
    let mut env = device.env();
    env.set("ORDER", "B A");
    env.set(TRIAL, "B");
    std::fs::write(&device.grubenv, env.render().unwrap()).unwrap();
    dir.save(&record(Stage::Installed { slot: "B".into() }))
        .unwrap();
    let status = Updates::open(device.config("A"), device.grub())
        .unwrap()
        .status();
    assert_eq!(status.phase, UpdatePhase::Installed { slot: "B".into() });

    // GRUB gave up on B (tries used up, abandoned) and A runs again: rolled back.
    env.set("ORDER", "A B");
    env.set("B_OK", "0");
    std::fs::write(&device.grubenv, env.render().unwrap()).unwrap();
    let status = Updates::open(device.config("A"), device.grub())
        .unwrap()
        .status();
    assert_eq!(failed_step(&status), "rolled_back");
    assert_eq!(status.installed_update_id, None);
}
