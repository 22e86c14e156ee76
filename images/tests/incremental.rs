//! Promise: the build cache is content-addressed: an unchanged rebuild reuses every cached
//! step and gives identical outputs; changing one WASM app rebuilds the rootfs's app layer
//! and the bundle (and that app's `.cwasm`) but reuses the rootfs's system layer, initramfs,
//! binaries, ESP and data partition; and the incremental result is bit-identical to a full
//! build of the same inputs.

mod common;

use testudo_images::{Reuse, StepReport};

fn reuse(steps: &[StepReport], name: &str) -> Option<Reuse> {
    steps.iter().find(|s| s.name == name).and_then(|s| s.reuse)
}

#[test]
fn changing_one_app_rebuilds_only_what_depends_on_it() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    let first = testudo_images::build(&fx.request, &tools).expect("first build");
    assert_eq!(reuse(&first.steps, "rootfs"), Some(Reuse::Built));
    let rootfs1 = std::fs::read(fx.request.out_dir.join("rootfs.img")).unwrap();
    let disk1 = std::fs::read(fx.request.out_dir.join("disk.img")).unwrap();

    let again = testudo_images::build(&fx.request, &tools).expect("unchanged rebuild");
    for step in [
        "initramfs",
        "binaries",
        "wasm apps",
        "rootfs system layer",
        "rootfs",
        "esp",
        "data partition",
        "update bundle",
    ] {
        assert_eq!(reuse(&again.steps, step), Some(Reuse::Hit), "{step}");
    }
    assert!(std::fs::read(fx.request.out_dir.join("disk.img")).unwrap() == disk1);

    std::fs::write(
        fx.request.source_root.join("apps/app.wasm"),
        common::wasm_module("v2"),
    )
    .unwrap();
    let changed = testudo_images::build(&fx.request, &tools).expect("build after app change");
    for step in ["wasm apps", "rootfs", "update bundle"] {
        assert_eq!(reuse(&changed.steps, step), Some(Reuse::Built), "{step}");
    }
    for step in [
        "initramfs",
        "binaries",
        "rootfs system layer",
        "esp",
        "data partition",
    ] {
        assert_eq!(reuse(&changed.steps, step), Some(Reuse::Hit), "{step}");
    }
    assert!(std::fs::read(fx.request.out_dir.join("rootfs.img")).unwrap() != rootfs1);

    // The incremental result is exactly what a full build of the same inputs gives.
    let mut full = fx.request.clone();
    full.cache_dir = fx.dir.path().join("fresh-cache");
    full.out_dir = fx.dir.path().join("full-out");
    let report = testudo_images::build(&full, &tools).expect("full build");
    assert_eq!(reuse(&report.steps, "rootfs"), Some(Reuse::Built));
    assert_eq!(
        reuse(&report.steps, "rootfs system layer"),
        Some(Reuse::Built)
    );
    for name in ["rootfs.img", "disk.img", "update.raucb", "manifest.json"] {
        let incremental = std::fs::read(fx.request.out_dir.join(name)).unwrap();
        let fresh = std::fs::read(full.out_dir.join(name)).unwrap();
        assert!(
            incremental == fresh,
            "{name}: incremental build differs from a full build"
        );
    }
}
