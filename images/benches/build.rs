//! Image build and boot benchmarks (a bench binary: `cargo bench -p testudo-images`).
//!
//! On the gateway example, side by side in one run:
//! - full build (empty cache) vs. `cp` of the same output bytes (the I/O floor),
//! - incremental build after changing one WASM app (goal: under 20% of the full build),
//! - boot to testudo-init's ready line under TCG (skipped with `--no-boot`).
//!
//! Native binaries come from `TESTUDO_IMAGE_BIN_DIRS` (colon-separated), else from the
//! workspace target directory's `debug/` (build them first: `cargo build --workspace`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testudo_images::{
    build, BuildRequest, HostPaths, HostTools, ProgressMode, VmOptions, VmOutcome,
};

const RUNS: usize = 3;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn bin_dirs(repo: &Path) -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("TESTUDO_IMAGE_BIN_DIRS") {
        return list.split(':').map(PathBuf::from).collect();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    vec![target.join("debug")]
}

fn compile_apps(repo: &Path, src: &Path) {
    let apps = src.join("wasm-apps");
    std::fs::create_dir_all(&apps).unwrap();
    for app in ["sensor-reader", "forwarder"] {
        let source = repo.join(format!("wasm-apps/{app}.c"));
        let output = apps.join(format!("{app}.wasm"));
        if let Err(error) = testudo_testkit::wasm::compile_c_app(&source, &output, &[]) {
            panic!("{error}");
        }
    }
}

fn main() {
    let no_boot = std::env::args().any(|a| a == "--no-boot");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let (plan, _) = testudo_config::load_plan(&repo.join("system-config/examples/gateway.ncl"))
        .unwrap_or_else(|e| panic!("gateway example: {e:?}"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    compile_apps(&repo, &src);
    // The trust anchors the config names, where the source root has them.
    if let Some(anchors) = &plan.cloud.trust_anchors {
        let target = src.join(anchors);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(repo.join(anchors), &target).unwrap();
    }
    let keys = testudo_images::keys::ensure_dev_keys(&tmp.path().join("keys")).unwrap();
    let tools = HostTools::new();
    let request = |run: usize, cache: &Path| BuildRequest {
        plan: plan.clone(),
        source_root: src.clone(),
        out_dir: tmp.path().join(format!("out-{run}")),
        keys: keys.clone(),
        bin_dirs: bin_dirs(&repo),
        cache_dir: cache.to_path_buf(),
        source_date_epoch: Some("1700000000".into()),
        config_file: None,
        progress: ProgressMode::Quiet,
        host: HostPaths::default(),
    };

    let (mut full, mut incremental) = (Vec::new(), Vec::new());
    let (mut copy, mut copy_dense) = (Vec::new(), Vec::new());
    let mut out_bytes = 0u64;
    let (mut full_steps, mut incremental_steps) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let cache = tmp.path().join(format!("cache-{run}"));
        let req = request(run, &cache);
        let started = Instant::now();
        let report = build(&req, &tools).unwrap_or_else(|e| panic!("full build: {e}"));
        full.push(started.elapsed());

        // The I/O anchor: copying the same output bytes.
        let files = ["rootfs.img", "disk.img", "update.raucb", "manifest.json"];
        out_bytes = files
            .iter()
            .map(|f| std::fs::metadata(req.out_dir.join(f)).unwrap().len())
            .sum();
        for (sparse, samples) in [
            ("--sparse=auto", &mut copy),
            ("--sparse=never", &mut copy_dense),
        ] {
            let copy_dir = tmp.path().join(format!("copy-{run}"));
            std::fs::create_dir_all(&copy_dir).unwrap();
            let started = Instant::now();
            let status = Command::new("cp")
                .arg(sparse)
                .args(files.iter().map(|f| req.out_dir.join(f)))
                .arg(&copy_dir)
                .status()
                .unwrap();
            assert!(status.success());
            samples.push(started.elapsed());
            std::fs::remove_dir_all(&copy_dir).unwrap();
        }
        full_steps = report.steps;

        // Change one app (a custom section appended), rebuild with the same cache.
        let app = src.join("wasm-apps/forwarder.wasm");
        let mut bytes = std::fs::read(&app).unwrap();
        // Custom section 0, 5 bytes: name length 3, "run", one digit.
        bytes.extend_from_slice(&[0, 5, 3, b'r', b'u', b'n', b'0' + run as u8]);
        std::fs::write(&app, bytes).unwrap();
        let started = Instant::now();
        let report = build(&req, &tools).unwrap_or_else(|e| panic!("incremental build: {e}"));
        incremental.push(started.elapsed());
        incremental_steps = report.steps;
    }
    let (full, incremental) = (median(full), median(incremental));
    let (copy, copy_dense) = (median(copy), median(copy_dense));
    println!("images: gateway example, median of {RUNS} runs");
    println!("  full build            {:>8.2} s", full.as_secs_f64());
    println!(
        "  cp of the outputs     {:>8.2} s   ({:.1} MiB apparent; full build = {:.1}x cp)",
        copy.as_secs_f64(),
        out_bytes as f64 / (1 << 20) as f64,
        full.as_secs_f64() / copy.as_secs_f64()
    );
    println!(
        "  cp --sparse=never     {:>8.2} s   (every byte written; full build = {:.1}x cp)",
        copy_dense.as_secs_f64(),
        full.as_secs_f64() / copy_dense.as_secs_f64()
    );
    println!(
        "  incremental (1 app)   {:>8.2} s   ({:.0}% of full; goal < 20%)",
        incremental.as_secs_f64(),
        100.0 * incremental.as_secs_f64() / full.as_secs_f64()
    );
    println!("  steps (last run)        full   incremental");
    for (full_step, incremental_step) in full_steps.iter().zip(&incremental_steps) {
        println!(
            "    {:<20} {:>6.2} s {:>8.2} s {}",
            full_step.name,
            full_step.seconds,
            incremental_step.seconds,
            match incremental_step.reuse {
                Some(testudo_images::Reuse::Hit) => "(cached)",
                Some(testudo_images::Reuse::Built) => "(rebuilt)",
                None => "",
            }
        );
    }
    if no_boot {
        return;
    }
    let mut options = VmOptions::new(&tmp.path().join("out-0/disk.img"));
    options.expect = Some("testudo-init: ready:".into());
    options.timeout = Some(Duration::from_secs(300));
    options.snapshot = true;
    options.echo = false;
    match testudo_images::run_vm(&options) {
        Ok(VmOutcome::Matched { elapsed, .. }) => {
            println!(
                "  boot to ready (TCG)   {:>8.2} s   (QEMU start to the ready line)",
                elapsed.as_secs_f64()
            )
        }
        other => panic!("boot: {other:?}"),
    }
}
