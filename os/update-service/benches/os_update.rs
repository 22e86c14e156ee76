//! `cargo bench -p testudo-update-service`: what the updater component adds to an install.
//! A bundle of a `TESTUDO_BENCH_MIB` (default 64) MiB image, signed with development keys, its
//! ADU manifest signed under a root key. Side by side in one run, best of 5, files in the
//! page cache:
//! - `stage`: verifying a new workflow's manifest (signature chain, fit, free space) before
//!   any download; anchor: nothing to compare with, reported as is;
//! - the updater's install of the staged file (size + sha256 against the signed manifest, then
//!   CMS + verity, then the install with read-back) vs the anchor, what `testudo update
//!   install` does with the same local file (`bundle::open` then `install::install`).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testudo_os_update::manifest::{self, UpdateId};
use testudo_os_update::update_scheme::device_compatibility;
use testudo_os_update::{keys as update_keys, signature};
use testudo_update_service::{UpdateConfig, Updates};
use testudo_updater::bootloader::grub::{GrubBackend, GrubEnv};
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::{bundle, BundleSpec, Keyring, Signer, SystemConf};

const RUNS: usize = 5;
const COMPATIBLE: &str = "bench-gateway";

fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

/// One device: system.conf, file slots, a grubenv file, the updater's directory.
fn device(root: &Path, name: &str, keyring: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("device dir");
    let grubenv = dir.join("grubenv");
    std::fs::write(
        &grubenv,
        GrubEnv::initial(&["A", "B"]).render().expect("grubenv"),
    )
    .expect("grubenv");
    std::fs::write(dir.join("a.img"), b"running").expect("slot a");
    std::fs::write(dir.join("b.img"), b"").expect("slot b");
    let conf = SystemConf::grub_ab(
        COMPATIBLE,
        keyring,
        &grubenv,
        &dir.join("rauc"),
        &dir.join("a.img"),
        &dir.join("b.img"),
    );
    std::fs::write(dir.join("system.conf"), conf.render()).expect("system.conf");
    (dir, grubenv)
}

fn main() {
    let mib: usize = std::env::var("TESTUDO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let temp = tempfile::Builder::new()
        .prefix("testudo-bench-os-update-")
        .tempdir()
        .expect("temp dir");
    let root = temp.path();
    let keys = root.join("keys");
    let dev = testudo_updater::keys::init_dev_keys(&keys).expect("keys");
    update_keys::init_dev_update_keys(&keys).expect("update keys");
    let signer = Signer {
        cert: dev.signing_cert.clone(),
        key: dev.signing_key.clone(),
        intermediates: Vec::new(),
    };
    // 3/4 pseudo-random, 1/4 zeros: squashfs compresses part of it, as a rootfs.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let image: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| {
            if i % (4 << 20) >= 3 << 20 {
                return 0;
            }
            // xorshift64: incompressible bytes.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let image_path = root.join("rootfs.img");
    std::fs::write(&image_path, &image).expect("image");
    let bundle_path = root.join("update.raucb");
    bundle::create(
        &BundleSpec::new(COMPATIBLE, "2.0.0", vec![("rootfs".into(), image_path)]),
        &signer,
        &bundle_path,
    )
    .expect("bundle");
    let (sha256, size) = bundle::sha256_file(&bundle_path).expect("hash");
    let manifest = manifest::for_bundle(
        UpdateId {
            provider: "testudo".into(),
            name: "gateway".into(),
            version: "2.0.0".into(),
        },
        device_compatibility(COMPATIBLE),
        "update.raucb",
        size,
        sha256,
        "2.0.0",
        "2026-12-04T00:00:00Z",
    )
    .to_json();
    let chain = update_keys::load_signing_chain(&keys).expect("chain");
    let manifest_signature = signature::sign(&manifest, &chain).expect("sign");
    println!(
        "# testudo-update-service benchmark: {mib} MiB image, bundle {size} bytes, best of {RUNS}, page cache warm; MB/s of the image written"
    );

    let updates_for = |name: &str| {
        let (dir, grubenv) = device(root, name, &dev.ca_cert);
        let config = UpdateConfig {
            dir: dir.join("rauc"),
            system_conf: dir.join("system.conf"),
            root_keys: keys.join(update_keys::ROOT_JWKS),
            booted: "A".into(),
            system_version: "1.0.0".into(),
        };
        let grub = Arc::new(Mutex::new(GrubBackend::new(
            grubenv,
            vec!["A".into(), "B".into()],
        )));
        (Updates::open(config, grub).expect("updates"), dir)
    };

    // 1. stage: the manifest verified and fitted before any download.
    let (mut updates, _) = updates_for("stage");
    let mut workflow = 0;
    let t_stage = best(RUNS * 4, || {
        workflow += 1;
        let started = Instant::now();
        updates
            .stage(&format!("w{workflow}"), &manifest, &manifest_signature)
            .expect("stage");
        started.elapsed()
    });

    // 2. The updater's install of the staged file vs `testudo update install` of the same file.
    let t_updater = best(RUNS, || {
        let (mut updates, dir) = updates_for("updater");
        updates
            .stage("w", &manifest, &manifest_signature)
            .expect("stage");
        std::fs::copy(&bundle_path, dir.join("rauc").join("staged.raucb")).expect("staged");
        let job = updates.begin_install("w").expect("install");
        let started = Instant::now();
        job.run(&mut |_, _| {}).expect("installed");
        started.elapsed()
    });
    let t_anchor = best(RUNS, || {
        let (dir, grubenv) = device(root, "anchor", &dev.ca_cert);
        let conf = SystemConf::load(&dir.join("system.conf")).expect("conf");
        let booted = conf.slot_by_bootname("A").expect("A").clone();
        let mut grub = GrubBackend::new(grubenv, vec!["A".into(), "B".into()]);
        let started = Instant::now();
        let keyring = Keyring::load(&dev.ca_cert, conf.check_purpose).expect("keyring");
        let verified = bundle::open(&bundle_path, &keyring).expect("open");
        install::install(
            &conf,
            &booted,
            &verified,
            &mut grub,
            &InstallOptions::default(),
            &mut |_, _| ControlFlow::Continue(()),
        )
        .expect("install");
        started.elapsed()
    });
    // Throughput over the image written, as in the updater's own benchmark.
    let mb = image.len() as f64 / 1e6;
    println!("| step | updater | anchor | ratio (updater / anchor) |");
    println!("|---|---|---|---|");
    println!(
        "| stage (manifest signature chain, fit, free space) | {:.2} ms | — | — |",
        t_stage.as_secs_f64() * 1e3
    );
    println!(
        "| install of a staged bundle (sha256 vs manifest, CMS + verity, write, read back) | {:.3} s ({:.0} MB/s) | `testudo update install` of the same file: {:.3} s ({:.0} MB/s) | {:.2}x |",
        t_updater.as_secs_f64(),
        mb / t_updater.as_secs_f64(),
        t_anchor.as_secs_f64(),
        mb / t_anchor.as_secs_f64(),
        t_updater.as_secs_f64() / t_anchor.as_secs_f64()
    );
}
