//! Promise: bad input gives a clear error naming what is wrong, and never a panic.

mod common;

use testudo_images::builder::BuildStep;
use testudo_images::ImageError;

#[test]
fn missing_binary_is_named_with_who_needs_it() {
    let fx = common::fixture();
    std::fs::remove_file(fx.request.bin_dirs[0].join("testudo-log")).unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(
        matches!(err.cause(), ImageError::BinaryMissing { name, .. } if name == "testudo-log"),
        "{err}"
    );
    assert!(err.cause().to_string().contains("component `log`"), "{err}");
}

#[test]
fn a_failing_step_is_named_in_the_error() {
    let mut fx = common::fixture();
    fx.request.host.busybox = fx.request.source_root.join("no-such-busybox");
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert_eq!(err.step(), Some(BuildStep::Initramfs), "{err}");
    assert_eq!(err.to_string(), "build step `initramfs` failed");
    let cause = std::error::Error::source(&err).expect("the cause is the source");
    assert!(
        cause.to_string().contains("no-such-busybox"),
        "the cause names the missing file: {cause}"
    );
}

#[test]
fn a_step_failing_beside_the_rootfs_is_named_and_no_disk_image_is_made() {
    let mut fx = common::fixture();
    fx.request.host.grub_modules = fx.request.source_root.join("no-such-grub-modules");
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert_eq!(err.step(), Some(BuildStep::Esp), "{err}");
    assert_eq!(err.to_string(), "build step `esp` failed");
    let cause = std::error::Error::source(&err).expect("the cause is the source");
    assert!(
        cause.to_string().contains("no-such-grub-modules"),
        "the cause names the missing directory: {cause}"
    );
    // The in-order steps ran up to the one that needs the ESP, and stopped there.
    assert!(fx.request.out_dir.join("rootfs.img").exists());
    for never in ["disk.img", "update.raucb", "manifest.json"] {
        assert!(!fx.request.out_dir.join(never).exists(), "{never} was made");
    }
}

#[test]
fn when_both_lanes_fail_the_in_order_step_is_named() {
    let mut fx = common::fixture();
    fx.request.host.busybox = fx.request.source_root.join("no-such-busybox");
    fx.request.host.grub_modules = fx.request.source_root.join("no-such-grub-modules");
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert_eq!(err.step(), Some(BuildStep::Initramfs), "{err}");
}

#[test]
fn a_module_that_is_not_wasm_is_refused() {
    let fx = common::fixture();
    std::fs::write(fx.request.source_root.join("apps/app.wasm"), "#!/bin/sh\n").unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert_eq!(err.step(), Some(BuildStep::WasmApps), "{err}");
    assert!(
        matches!(err.cause(), ImageError::WasmModule { .. }),
        "{err}"
    );
    assert!(err.cause().to_string().contains("apps/app.wasm"), "{err}");
}

#[test]
fn a_rootfs_partition_too_small_is_reported_with_sizes() {
    let mut fx = common::fixture();
    fx.request.plan.board.partitions.rootfs_bytes = 1 << 20;
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(
        matches!(err.cause(), ImageError::PartitionTooSmall { partition, .. } if partition == "rootfs-a"),
        "{err}"
    );
}

#[test]
fn a_missing_kernel_names_the_package() {
    let mut fx = common::fixture();
    fx.request.plan.board.kernel = "/nonexistent/vmlinuz-1.0".into();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert_eq!(err.step(), Some(BuildStep::KernelAndModules), "{err}");
    assert!(
        err.cause().to_string().contains("linux-image-cloud-amd64"),
        "{err}"
    );
}

#[test]
fn a_wasm_host_without_precompile_is_named() {
    let fx = common::fixture();
    let host = fx.request.bin_dirs[0].join("testudo-wasm-host");
    // Replace the link to the real host (never write through it).
    std::fs::remove_file(&host).unwrap();
    std::fs::copy("/usr/bin/busybox", &host).unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(
        matches!(err.cause(), ImageError::Precompile { .. }),
        "{err}"
    );
    let text = err.cause().to_string();
    assert!(text.contains(&host.display().to_string()), "{text}");
    assert!(text.contains("no `precompile` subcommand"), "{text}");
}
