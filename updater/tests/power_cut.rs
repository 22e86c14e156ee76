//! Promise: an install interrupted before ANY of its write steps (as if power was cut there)
//! leaves a device that boots a slot holding a complete, good image, and re-running the
//! install then completes and the new slot boots. Every step is exercised; prints the count.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::ops::ControlFlow;

use testudo_updater::install::{InstallOptions, Step};
use testudo_updater::UpdaterError;

#[test]
fn every_interruption_point_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let v0 = common::image(&dir.path().join("v0.img"), 180_000, 9);
    let v1 = common::image(&dir.path().join("v1.img"), 200_000, 1);
    let v2 = common::image(&dir.path().join("v2.img"), 300_000, 2);
    let images = [
        std::fs::read(&v0).unwrap(),
        std::fs::read(&v1).unwrap(),
        std::fs::read(&v2).unwrap(),
    ];
    let bundle_path = common::make_bundle(&pki, &v2, "gw", "2.0", &dir.path().join("v2.raucb"));
    let options = InstallOptions {
        chunk_size: 64 * 1024,
        ..InstallOptions::default()
    };

    // Count the write steps of an uninterrupted install.
    let total = {
        let device = common::device(&dir.path().join("count"), &pki.keyring, "gw", &v1, "1.0");
        let bundle = common::open_bundle(&bundle_path, &pki);
        let mut kinds = Vec::new();
        let report = device
            .install_observed("A", &bundle, &options, &mut |_, step| {
                kinds.push(step.clone());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(kinds.iter().any(|s| matches!(s, Step::WriteChunk { .. })));
        report.steps
    };
    assert!(total >= 8, "expected several write steps, got {total}");

    let mut recovered = 0;
    for crash_at in 0..total {
        let device = common::device(
            &dir.path().join(format!("dev{crash_at}")),
            &pki.keyring,
            "gw",
            &v1,
            "1.0",
        );
        std::fs::copy(&v0, &device.slot_b).unwrap(); // B holds an older but complete image
        let bundle = common::open_bundle(&bundle_path, &pki);
        let result = device.install_observed("A", &bundle, &options, &mut |index, _| {
            if index == crash_at {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(result, Err(UpdaterError::Interrupted { step }) if step == crash_at));

        // Power-on after the cut: some slot boots and it holds a complete image.
        let booted = device
            .boot()
            .unwrap_or_else(|| panic!("crash at {crash_at}: nothing bootable"));
        let content = std::fs::read(device.slot_path(&booted)).unwrap();
        assert!(
            images.contains(&content),
            "crash at {crash_at}: booted {booted} holds a partial image"
        );
        assert_eq!(booted, "A", "crash at {crash_at}: the old slot must boot");
        device.mark_good(&booted);

        // Re-run to completion; the new slot boots and confirms.
        let bundle = common::open_bundle(&bundle_path, &pki);
        device.install_with(&booted, &bundle, &options).unwrap();
        assert_eq!(
            device.boot().as_deref(),
            Some("B"),
            "crash at {crash_at}: re-run did not activate B"
        );
        assert_eq!(std::fs::read(&device.slot_b).unwrap(), images[2]);
        device.mark_good("B");
        assert_eq!(device.boot().as_deref(), Some("B"));
        recovered += 1;
    }
    assert_eq!(recovered, total);
    println!("power-cut: {total} interruption points exercised, {recovered} recovered (100%)");
}
