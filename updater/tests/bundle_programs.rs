//! Promise: on a system that allows bundle programs (`[bundle-programs] run=sandboxed`), the
//! install hooks and custom handler of bundles made by `rauc` 1.8 run with RAUC's argument and
//! variables, each in a real sandbox (namespaces, landlock, seccomp) that holds only its step's
//! slot, and the update installs. A program that reaches for the booted slot, the data
//! partition or the network fails, and the install with it, with nothing written to the running
//! slot; an install-check hook that rejects the bundle stops it before any write; a hook that
//! hangs is killed at the timeout together with what it started.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testudo_updater::keys::KeyKind;
use testudo_updater::programs::ProgramExit;
use testudo_updater::system_conf::ProgramsPolicy;
use testudo_updater::{UpdaterError, VerifiedBundle};

/// Size of the update's image (slot B starts smaller, filled with 0x5a).
const IMAGE_SIZE: usize = 300_000;

/// A device running slot A with v1 that lets bundle programs run (timeout `timeout`), a PKI
/// and a scratch directory.
struct Setup {
    dir: tempfile::TempDir,
    pki: common::Pki,
    device: common::Device,
}

fn setup(timeout: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::valid_pki(&dir.path().join("pki"), KeyKind::EcP256, false);
    let v1 = common::image(&dir.path().join("v1.img"), 150_000, 1);
    let mut device = common::device(&dir.path().join("device"), &pki.keyring, "gw", &v1, "1.0");
    device.conf.bundle_programs.policy = ProgramsPolicy::Sandboxed;
    device.conf.bundle_programs.timeout = timeout;
    Setup { dir, pki, device }
}

impl Setup {
    /// A bundle made by `rauc bundle` (verity) of version 2.0 with program `program` (the
    /// `[hooks]` file, or the handler when `handler`), whose manifest carries `sections` after
    /// `[update]`; the image is `rootfs.img`.
    fn bundle(&self, name: &str, program: &str, sections: &str) -> (PathBuf, VerifiedBundle) {
        let content = self.dir.path().join(format!("{name}-content"));
        std::fs::create_dir_all(&content).unwrap();
        common::image(&content.join("rootfs.img"), IMAGE_SIZE, 2);
        let script = content.join("program.sh");
        std::fs::write(&script, program).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible=gw\nversion=2.0\n\n[bundle]\nformat=verity\n\n{sections}"
            ),
        )
        .unwrap();
        let path = self.dir.path().join(format!("{name}.raucb"));
        common::rauc_bundle(&self.pki, &content, &path);
        let bundle = common::open_bundle(&path, &self.pki);
        (content.join("rootfs.img"), bundle)
    }

    /// A bundle whose rootfs image has `hook` run by `program`.
    fn hooked(&self, name: &str, hook: &str, program: &str) -> VerifiedBundle {
        let sections = format!(
            "[hooks]\nfilename=program.sh\n\n[image.rootfs]\nfilename=rootfs.img\nhooks={hook};\n"
        );
        self.bundle(name, program, &sections).1
    }

    /// Installs `bundle` from slot A and checks it failed in `program` without touching the
    /// booted slot or the boot order; returns the error.
    fn install_fails_in(&self, bundle: &VerifiedBundle, program: &str) -> UpdaterError {
        let slot_a = std::fs::read(&self.device.slot_a).unwrap();
        let err = self.device.install("A", bundle).unwrap_err();
        match &err {
            UpdaterError::BundleProgram {
                program: failed, ..
            } => {
                assert_eq!(failed, program, "{err}")
            }
            other => panic!("expected {program} to fail, got {other}"),
        }
        assert_eq!(
            std::fs::read(&self.device.slot_a).unwrap(),
            slot_a,
            "the running slot was written"
        );
        assert_eq!(
            self.device.boot().as_deref(),
            Some("A"),
            "boot order changed"
        );
        err
    }
}

/// Where a program writes its report line: `echo` lines on stdout become the test's evidence.
const PROTOCOL_HOOK: &str = r#"#!/bin/sh
set -eu
case "$1" in
install-check)
    test -r "$RAUC_BUNDLE_MOUNT_POINT/manifest.raucm"
    echo "check $RAUC_MF_COMPATIBLE $RAUC_MF_VERSION $RAUC_SYSTEM_COMPATIBLE $RAUC_BUNDLE_MOUNT_POINT"
    ;;
slot-pre-install)
    staged=streamed
    if test -e "$RAUC_IMAGE_NAME"; then staged=staged; fi
    echo "pre $RAUC_SLOT_NAME $RAUC_SLOT_BOOTNAME $RAUC_SLOT_CLASS $RAUC_CURRENT_BOOTNAME $staged"
    ;;
slot-install)
    dd if="$RAUC_IMAGE_NAME" of="$RAUC_SLOT_DEVICE" bs=65536 conv=fsync status=none
    echo "install $RAUC_IMAGE_CLASS $RAUC_IMAGE_SIZE $RAUC_IMAGE_DIGEST"
    ;;
slot-post-install)
    echo "post $(head -c "$RAUC_IMAGE_SIZE" "$RAUC_SLOT_DEVICE" | sha256sum | cut -d' ' -f1)"
    ;;
*)
    echo "unexpected $1" >&2
    exit 1
    ;;
esac
"#;

#[test]
fn hooks_run_with_raucs_protocol_and_the_update_installs() {
    let setup = setup(Duration::from_secs(60));
    let sections = "[hooks]\nfilename=program.sh\nhooks=install-check;\n\n\
        [image.rootfs]\nfilename=rootfs.img\nhooks=pre-install;install;post-install;\n";
    let (image, bundle) = setup.bundle("protocol", PROTOCOL_HOOK, sections);
    let report = setup.device.install("A", &bundle).unwrap();

    let digest = hex::encode(bundle.manifest.images[0].sha256);
    let ran: Vec<(&str, ProgramExit, &str)> = report
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.exit, p.stdout.trim()))
        .collect();
    assert_eq!(
        ran,
        [
            (
                "install-check hook",
                ProgramExit::Code(0),
                "check gw 2.0 gw /mnt/rauc/bundle"
            ),
            (
                "pre-install hook of [image.rootfs]",
                ProgramExit::Code(0),
                "pre rootfs.1 B rootfs A staged"
            ),
            (
                "install hook of [image.rootfs]",
                ProgramExit::Code(0),
                format!("install rootfs {IMAGE_SIZE} {digest}").as_str()
            ),
            (
                "post-install hook of [image.rootfs]",
                ProgramExit::Code(0),
                format!("post {digest}").as_str()
            ),
        ]
    );
    assert_eq!(report.bytes_written, 0, "the install hook wrote the slot");
    let slot_b = std::fs::read(&setup.device.slot_b).unwrap();
    assert_eq!(slot_b[..IMAGE_SIZE], std::fs::read(&image).unwrap()[..]);
    assert_eq!(setup.device.boot().as_deref(), Some("B"));
    // The staged copy of the bundle is gone.
    let data = std::fs::read_dir(setup.device.dir.join("data")).unwrap();
    let left: Vec<_> = data
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("bundle-programs-"))
        .collect();
    assert!(left.is_empty(), "staged bundle left behind: {left:?}");
}

#[test]
fn the_updater_writes_between_pre_and_post_install_hooks() {
    let setup = setup(Duration::from_secs(60));
    let (image, bundle) = setup.bundle(
        "around",
        PROTOCOL_HOOK,
        "[hooks]\nfilename=program.sh\n\n[image.rootfs]\nfilename=rootfs.img\nhooks=pre-install;post-install;\n",
    );
    let report = setup.device.install("A", &bundle).unwrap();
    assert_eq!(report.bytes_written, IMAGE_SIZE as u64);
    // Without an install hook the image is streamed by the updater, not staged for the hooks.
    assert_eq!(
        report.programs[0].stdout.trim(),
        "pre rootfs.1 B rootfs A streamed"
    );
    let digest = hex::encode(bundle.manifest.images[0].sha256);
    assert_eq!(report.programs[1].stdout.trim(), format!("post {digest}"));
    assert_eq!(
        std::fs::read(&setup.device.slot_b).unwrap(),
        std::fs::read(&image).unwrap()
    );
    assert_eq!(setup.device.boot().as_deref(), Some("B"));
}

#[test]
fn a_handler_writes_every_target_slot_and_the_updater_switches() {
    let setup = setup(Duration::from_secs(60));
    let handler = r#"#!/bin/sh
set -eu
test "$1" = "--flag value"
for n in $RAUC_TARGET_SLOTS; do
    eval image=\$RAUC_IMAGE_NAME_$n device=\$RAUC_SLOT_DEVICE_$n name=\$RAUC_SLOT_NAME_$n
    dd if="$image" of="$device" bs=65536 conv=fsync status=none
    echo "wrote $name"
done
echo "slots $RAUC_SLOTS targets $RAUC_TARGET_SLOTS"
"#;
    let (image, bundle) = setup.bundle(
        "handler",
        handler,
        "[handler]\nfilename=program.sh\nargs=--flag value\n\n[image.rootfs]\nfilename=rootfs.img\n",
    );
    let report = setup.device.install("A", &bundle).unwrap();
    assert_eq!(report.programs.len(), 1);
    assert_eq!(report.programs[0].name, "handler program.sh");
    assert_eq!(
        report.programs[0].stdout.trim(),
        "wrote rootfs.1\nslots 1 2 targets 2"
    );
    let slot_b = std::fs::read(&setup.device.slot_b).unwrap();
    assert_eq!(slot_b[..IMAGE_SIZE], std::fs::read(&image).unwrap()[..]);
    assert_eq!(setup.device.boot().as_deref(), Some("B"));
}

#[test]
fn a_rejecting_install_check_stops_the_install_before_any_write() {
    let setup = setup(Duration::from_secs(60));
    let hook =
        "#!/bin/sh\necho 'looking at the board' >&2\necho 'needs board revision 3' >&2\nexit 10\n";
    let (_, bundle) = setup.bundle(
        "rejected",
        hook,
        "[hooks]\nfilename=program.sh\nhooks=install-check;\n\n[image.rootfs]\nfilename=rootfs.img\n",
    );
    let before = setup.device.snapshot();
    let err = setup.device.install("A", &bundle).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bundle rejected by its install-check hook: needs board revision 3"
    );
    assert_eq!(
        setup.device.snapshot(),
        before,
        "the rejected install wrote"
    );
}

#[test]
fn a_hook_cannot_write_the_booted_slot() {
    let setup = setup(Duration::from_secs(60));
    let hook = format!(
        "#!/bin/sh\nset -e\nprintf owned | dd of={} conv=notrunc,nocreat status=none\n",
        setup.device.slot_a.display()
    );
    // Outside the sandbox the same command would write slot A (root owns the file).
    assert!(
        std::fs::metadata(&setup.device.slot_a)
            .unwrap()
            .permissions()
            .mode()
            & 0o200
            != 0
    );
    let bundle = setup.hooked("booted-slot", "pre-install", &hook);
    let err = setup.install_fails_in(&bundle, "pre-install hook of [image.rootfs]");
    assert!(matches!(
        err,
        UpdaterError::BundleProgram {
            exit: ProgramExit::Code(_),
            ..
        }
    ));
}

#[test]
fn a_hook_cannot_reach_the_data_partition() {
    let setup = setup(Duration::from_secs(60));
    let data = setup.device.dir.join("data");
    let status = data.join("central.raucs");
    let hook = format!(
        "#!/bin/sh\nset -e\ncat {} >/dev/null\necho x > {}/planted\n",
        status.display(),
        data.display()
    );
    let bundle = setup.hooked("data", "post-install", &hook);
    setup.install_fails_in(&bundle, "post-install hook of [image.rootfs]");
    assert!(!data.join("planted").exists());
}

#[test]
fn a_hook_has_no_network() {
    let setup = setup(Duration::from_secs(60));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    // The same connection from outside the sandbox reaches the listener.
    let outside = std::process::Command::new("/usr/bin/bash")
        .args(["-c", &connect])
        .status()
        .unwrap();
    assert!(outside.success());
    assert!(listener.accept().is_ok(), "control connection not seen");

    let hook = format!("#!/bin/sh\nset -e\n/usr/bin/bash -c '{connect}'\n");
    let bundle = setup.hooked("network", "pre-install", &hook);
    setup.install_fails_in(&bundle, "pre-install hook of [image.rootfs]");
    assert!(
        listener.accept().is_err(),
        "the hook connected to the host's network"
    );
}

/// Whether a process whose command line contains `marker` runs.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|entry| {
        let path = entry.unwrap().path().join("cmdline");
        std::fs::read(path)
            .map(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

#[test]
fn a_hanging_hook_is_killed_at_the_timeout_with_what_it_started() {
    let setup = setup(Duration::from_secs(2));
    let marker = format!("{}", 7_000 + std::process::id() % 1_000);
    let hook = format!("#!/bin/sh\nsleep {marker}.5 &\nsleep {marker}\n");
    let bundle = setup.hooked("hang", "pre-install", &hook);
    let started = Instant::now();
    let err = setup.install_fails_in(&bundle, "pre-install hook of [image.rootfs]");
    assert!(matches!(
        err,
        UpdaterError::BundleProgram {
            exit: ProgramExit::TimedOut,
            ..
        }
    ));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        !running(&format!("sleep {marker}")),
        "a hook's process outlived it"
    );
}

#[test]
fn programs_are_refused_where_the_system_does_not_allow_them() {
    let mut setup = setup(Duration::from_secs(60));
    setup.device.conf.bundle_programs.policy = ProgramsPolicy::Refuse;
    let bundle = setup.hooked("refused", "pre-install", "#!/bin/sh\nexit 0\n");
    let before = setup.device.snapshot();
    let err = setup.device.install("A", &bundle).unwrap_err();
    assert!(matches!(err, UpdaterError::BundlePrograms { .. }), "{err}");
    assert!(err.to_string().contains("run=sandboxed"), "{err}");
    assert_eq!(setup.device.snapshot(), before);
}
