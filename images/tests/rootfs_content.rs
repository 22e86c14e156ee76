//! Promise: rootfs.img is a squashfs holding the plan, the binaries with their libraries,
//! the WASM apps each with its precompiled `.cwasm`, kernel + initramfs (which hands over to testudo-init), kernel modules,
//! system.conf and keyrings.

mod common;

#[test]
fn rootfs_holds_everything_the_device_needs() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    testudo_images::build(&fx.request, &tools).expect("build");
    let rootfs = fx.request.out_dir.join("rootfs.img");
    let r = common::path_str(&rootfs);
    let listing = common::run("unsquashfs", &["-l", r]);
    for path in [
        "etc/testudo/plan.json",
        "usr/lib/testudo/testudo-init",
        "usr/lib/testudo/testudo-log",
        "usr/lib/testudo/testudo-net",
        "usr/lib/testudo/testudo-wasm-host",
        "squashfs-root/apps/apps/app.wasm",
        "squashfs-root/apps/apps/app.cwasm",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
        "boot/vmlinuz",
        "boot/initrd.img",
        "etc/rauc/system.conf",
        "etc/rauc/keyring.pem",
        "etc/testudo/keys/deploy.ed25519.pub",
        "drivers/net/virtio_net.ko",
        "data",
    ] {
        assert!(listing.contains(path), "{path} not in rootfs:\n{listing}");
    }
    let plan = common::run("unsquashfs", &["-cat", r, "etc/testudo/plan.json"]);
    assert_eq!(plan, fx.request.plan.to_canonical_json().unwrap());
    // The app layer is appended under its own top-level name (not renamed by mksquashfs),
    // `/apps`, testudo-init's default app root.
    assert!(!listing.contains("squashfs-root/apps_"), "{listing}");
    assert!(
        listing.contains("squashfs-root/apps/apps/app.wasm"),
        "{listing}"
    );
    // The precompiled sidecar is the image's WASM host's output for that very module.
    let cwasm = std::process::Command::new("unsquashfs")
        .args(["-cat", r, "apps/apps/app.cwasm"])
        .output()
        .unwrap()
        .stdout;
    let expected = fx.dir.path().join("expected.cwasm");
    let app = fx.request.source_root.join("apps/app.wasm");
    // ... compiled for the board's processor features, not this machine's.
    let cpu_features = format!(
        "--cpu-features={}",
        fx.request.plan.board.cpu_features.join(",")
    );
    common::run(
        common::path_str(&common::wasm_host()),
        &[
            "precompile",
            &cpu_features,
            common::path_str(&app),
            common::path_str(&expected),
        ],
    );
    assert!(
        cwasm.starts_with(b"\x7fELF"),
        "app.cwasm is not a compiled module"
    );
    assert!(
        cwasm == std::fs::read(&expected).unwrap(),
        "app.cwasm is not the host's precompile output of app.wasm for the board's CPU"
    );
    let conf = common::run("unsquashfs", &["-cat", r, "etc/rauc/system.conf"]);
    assert!(conf.contains("compatible=testudo-imgtest-qemu-x86_64"));
    assert!(conf.contains("bootloader=grub"));

    let work = fx.dir.path().join("initrd");
    std::fs::create_dir_all(&work).unwrap();
    let initrd = common::run("sh", &[
        "-c",
        &format!("unsquashfs -cat {r} boot/initrd.img | (cd {} && cpio -idm --quiet && find . | sort)", work.display()),
    ]);
    for path in [
        "./init",
        "./bin/busybox",
        "./lib/modules/squashfs.ko",
        "./dev/console",
    ] {
        assert!(
            initrd.lines().any(|l| l == path),
            "{path} not in initramfs:\n{initrd}"
        );
    }
    let init = std::fs::read_to_string(work.join("init")).unwrap();
    assert!(init.contains("switch_root /newroot /usr/lib/testudo/testudo-init"));
}
