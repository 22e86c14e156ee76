//! Promise: bad input gives a clear error naming what is wrong, and never a panic.

mod common;

use testudo_images::ImageError;

#[test]
fn missing_binary_is_named_with_who_needs_it() {
    let fx = common::fixture();
    std::fs::remove_file(fx.request.bin_dirs[0].join("testudo-log")).unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(
        matches!(err, ImageError::BinaryMissing { ref name, .. } if name == "testudo-log"),
        "{err}"
    );
    assert!(err.to_string().contains("component `log`"), "{err}");
}

#[test]
fn a_module_that_is_not_wasm_is_refused() {
    let fx = common::fixture();
    std::fs::write(fx.request.source_root.join("apps/app.wasm"), "#!/bin/sh\n").unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(matches!(err, ImageError::WasmModule { .. }), "{err}");
    assert!(err.to_string().contains("apps/app.wasm"), "{err}");
}

#[test]
fn a_rootfs_partition_too_small_is_reported_with_sizes() {
    let mut fx = common::fixture();
    fx.request.plan.board.partitions.rootfs_bytes = 1 << 20;
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(
        matches!(err, ImageError::PartitionTooSmall { ref partition, .. } if partition == "rootfs-a"),
        "{err}"
    );
}

#[test]
fn a_missing_kernel_names_the_package() {
    let mut fx = common::fixture();
    fx.request.plan.board.kernel = "/nonexistent/vmlinuz-1.0".into();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(err.to_string().contains("linux-image-cloud-amd64"), "{err}");
}

#[test]
fn a_wasm_host_without_precompile_is_named() {
    let fx = common::fixture();
    let host = fx.request.bin_dirs[0].join("testudo-wasm-host");
    // Replace the link to the real host (never write through it).
    std::fs::remove_file(&host).unwrap();
    std::fs::copy("/usr/bin/busybox", &host).unwrap();
    let err = testudo_images::build(&fx.request, &testudo_images::HostTools::new()).unwrap_err();
    assert!(matches!(err, ImageError::Precompile { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&host.display().to_string()), "{text}");
    assert!(text.contains("no `precompile` subcommand"), "{text}");
}
