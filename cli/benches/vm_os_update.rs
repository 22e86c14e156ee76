//! Benchmark: an OS update through the twin under QEMU (TCG), stage by stage. The
//! development gateway (`gateway-dev.ncl`, 0.1.0, the example's health policy) provisions
//! itself; then three updates follow one another (0.2.0 into B, 0.3.0 into A, 0.4.0 into
//! B), each published with `testudo deploy os` (the clock starts when it returned: the
//! desired properties are set) and timed until the hub holds ADU's success (700 and the new
//! `installedUpdateId`). Stages are read off the device's console as its lines arrive:
//! acknowledge + stage (manifest signature, compatibility, downgrade), download (the agent's
//! first and last lines), verify (the updater's staged-file sha256, CMS signature and verity
//! tree), install (slot written and read back), reboot (shutdown, then boot to ready),
//! confirm (the health window of the updater), reported (read from the hub's service API).
//! A fourth update (0.5.0, into A) is published with a delta bundle from 0.4.0 beside the
//! full one: the device downloads the delta and applies it from its running slot; its
//! stages are shown beside the full updates' medians (goal: applying within 2x of writing
//! the full image).
//!
//! Anchors, in the same run, in a guest like the device's (`common/guest_anchor.rs`): the
//! same bundle downloaded from the same server with `curl` and hashed with `sha256sum`, and
//! installed from the local file with `testudo update install`. One boot is the device's own
//! boot to ready after each update.
//!
//! The example gives the agent and the updater half the CPU (`cpu_percent = 50`);
//! `TESTUDO_BENCH_UNTHROTTLED=1` lifts both to 100% for the whole run;
//! `TESTUDO_BENCH_CONSOLE=1` prints each update's console, every line timed.
//!
//! `cargo bench -p testudo --bench vm_os_update` (release binaries: build the workspace
//! first with `cargo build --release --workspace`; needs Microsoft's service SDK in the
//! project's Python environment, like the VM tests).

#![allow(clippy::unwrap_used)] // a benchmark: a failed set-up step is a failed run

#[path = "common/guest_anchor.rs"]
mod guest_anchor;
#[path = "common/timing.rs"]
mod timing;
#[path = "../tests/vm_device/mod.rs"]
mod vm_device;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use testudo_hub_service::ServiceClient;
use timing::{median, seconds};
use vm_device::*;

const BOOT: Duration = Duration::from_secs(900);
/// The versions installed one after another (each newer: downgrades are refused).
const UPDATES: [&str; 3] = ["0.2.0", "0.3.0", "0.4.0"];
/// The version a delta bundle from the last of [`UPDATES`] installs, after them.
const DELTA_VERSION: &str = "0.5.0";
/// The device's memory (`testudo vm run`'s default), given to the anchor guest too.
const MEMORY_MIB: u64 = 512;
/// Set (to anything) to print the console of each update, every line timed from the
/// relay's first line about it: where the time goes.
const CONSOLE_VAR: &str = "TESTUDO_BENCH_CONSOLE";
/// Set (to anything) to lift the example's CPU limits (50%) of the two components an
/// update runs in, the agent (download) and the updater (verify, install), to 100%.
const UNTHROTTLED_VAR: &str = "TESTUDO_BENCH_UNTHROTTLED";
/// The configuration that lifts them (Nickel, merged into every build of the run).
const UNTHROTTLED: &str = "components.agent.limits.cpu_percent | force = 100,\ncomponents.updater.limits.cpu_percent | force = 100,";

/// One update's stages.
#[derive(Debug, Clone, Copy)]
struct Stages {
    stage: Duration,
    download: Duration,
    verify: Duration,
    install: Duration,
    reboot: Duration,
    confirm: Duration,
    reported: Duration,
    /// The boot in the reboot: QEMU start to init's ready line.
    boot: Duration,
}

impl Stages {
    fn whole(&self) -> Duration {
        self.stage
            + self.download
            + self.verify
            + self.install
            + self.reboot
            + self.confirm
            + self.reported
    }
}

/// When the first line containing `needle` arrived, among `lines`.
fn seen(lines: &[(Instant, String)], needle: &str) -> Instant {
    lines
        .iter()
        .find(|(_, line)| line.contains(needle))
        .unwrap_or_else(|| {
            let console: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
            panic!("no {needle:?} on the console:\n{}", console.join("\n"))
        })
        .0
}

/// Polls the twin until the device reports `version` installed with ADU's success.
fn wait_reported(client: &ServiceClient, version: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let twin = client.twin(DEVICE).unwrap();
        let agent = &twin["properties"]["reported"]["deviceUpdate"]["agent"];
        let installed: Value = agent["installedUpdateId"]
            .as_str()
            .and_then(|id| serde_json::from_str(id).ok())
            .unwrap_or_default();
        if agent["state"] == 0
            && agent["lastInstallResult"]["resultCode"] == 700
            && installed["version"] == version
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the device did not report {version} installed: {agent}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One update of the running `vm` to the bundle in `out` (or, given `delta`, to the delta
/// bundle offered beside it, which the device downloads instead), into slot `target`: its
/// stages, and the VM now running the update.
fn update(
    rig: &DeviceRig,
    client: &ServiceClient,
    mut vm: RunningVm,
    out: &Path,
    delta: Option<&Path>,
    version: &str,
    target: &str,
) -> (Stages, RunningVm) {
    let bundle = out.join("update.raucb");
    let downloaded_file = delta.unwrap_or(&bundle);
    let size = std::fs::metadata(downloaded_file).unwrap().len();
    let deltas: Vec<&Path> = delta.into_iter().collect();
    rig.deploy_os_with_deltas(&bundle, &deltas);
    let set = Instant::now();
    let exit = vm.wait_exit(BOOT);
    assert!(exit.success(), "QEMU ended with {exit}: {}", vm.console());
    if std::env::var_os(CONSOLE_VAR).is_some() {
        println!(
            "update to {version}, console timed from the acknowledgement:\n{}",
            vm.timed_console("os updates: workflow")
        );
    }
    let lines = vm.lines_since(set);
    let file_id = if delta.is_some() { "delta-" } else { "bundle " };
    let downloading = seen(&lines, &format!(": downloading {file_id}"));
    let downloaded = seen(
        &lines,
        &format!("os updates: {size} of {size} bytes staged"),
    );
    let verified = seen(&lines, "bundle verified");
    let installed = seen(
        &lines,
        &format!("installed into slot {target}, reboot pending"),
    );
    let off = lines.last().unwrap().0;

    let mut next = rig.boot();
    next.wait_line(&format!("updater: slot {target} confirmed good"), BOOT);
    let reported = wait_reported(client, version, BOOT);
    let started = next.started;
    let ready = next.seen("testudo-init: ready:").unwrap();
    let confirmed = next
        .seen(&format!("updater: slot {target} confirmed good"))
        .unwrap();
    let console = next.console();
    assert!(
        console.contains(&format!("testudo: booting slot {target}")),
        "{console}"
    );
    assert!(!console.contains("killed by seccomp"), "{console}");
    let stages = Stages {
        stage: downloading - set,
        download: downloaded - downloading,
        verify: verified - downloaded,
        install: installed - verified,
        reboot: (off - installed) + (ready - started),
        confirm: confirmed - ready,
        reported: reported - confirmed,
        boot: ready - started,
    };
    (stages, next)
}

fn row(name: &str, samples: Vec<Duration>) -> Duration {
    let each: Vec<String> = samples.iter().map(|d| seconds(*d)).collect();
    let middle = median(samples);
    println!("  {name:<44} {}   {}", each.join(" "), seconds(middle));
    middle
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("vm_os_update: bench");
        return;
    }
    require_service_sdk();
    let _ports = lock_hub_ports();
    let limits = if std::env::var_os(UNTHROTTLED_VAR).is_some() {
        UNTHROTTLED
    } else {
        ""
    };
    let rig = DeviceRig::build_with(limits);
    let work = tempfile::tempdir().unwrap();
    let anchor_disk = work.path().join("anchor-disk.img");
    run(
        "cp",
        &[
            "--sparse=always",
            rig.disk.to_str().unwrap(),
            anchor_disk.to_str().unwrap(),
        ],
    );
    let rootfs = rig.disk.with_file_name("rootfs.img");
    let outs: Vec<_> = UPDATES
        .iter()
        .map(|version| {
            rig.build_variant(
                &format!("v{version}"),
                &format!("version | force = \"{version}\",\n{limits}"),
            )
        })
        .collect();
    let _hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);
    let client = rig.service_client();

    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);
    vm.wait_line("updater: slot A confirmed good", BOOT);
    let mut stages = Vec::new();
    let mut slot = "A";
    for (version, out) in UPDATES.iter().zip(&outs) {
        let target = if slot == "A" { "B" } else { "A" };
        let (times, next) = update(&rig, &client, vm, out, None, version, target);
        println!("update to {version} (slot {target}): {times:?}");
        stages.push(times);
        vm = next;
        slot = target;
    }
    // The delta update: from the last full one (running now) to DELTA_VERSION.
    let delta_out = rig.build_variant(
        &format!("v{DELTA_VERSION}"),
        &format!("version | force = \"{DELTA_VERSION}\",\n{limits}"),
    );
    let delta_path = work.path().join("delta.raucb");
    rig.bundle_delta(
        &outs[UPDATES.len() - 1].join("update.raucb"),
        &delta_out.join("update.raucb"),
        &delta_path,
    );
    let target = if slot == "A" { "B" } else { "A" };
    let (delta_stages, next) = update(
        &rig,
        &client,
        vm,
        &delta_out,
        Some(&delta_path),
        DELTA_VERSION,
        target,
    );
    println!("update to {DELTA_VERSION} by delta (slot {target}): {delta_stages:?}");
    vm = next;
    vm.kill();

    let bundle = outs[0].join("update.raucb");
    let bytes = std::fs::read(&bundle).unwrap();
    let url = format!(
        "https://{HUB_HOST}/testudo/artifacts/{}",
        hex::encode(Sha256::digest(&bytes))
    );
    let anchor = guest_anchor::run(&guest_anchor::AnchorInputs {
        work: work.path(),
        disk: &anchor_disk,
        rootfs: &rootfs,
        ca: &rig.hub_state.join("ca.pem"),
        url: &url,
        host: HUB_HOST,
        runs: UPDATES.len(),
        memory_mib: MEMORY_MIB,
    });

    println!(
        "OS update under TCG: {} updates of the development gateway ({} byte bundle; agent and updater CPU limits: {}), then the anchors",
        UPDATES.len(),
        bytes.len(),
        if limits.is_empty() { "the example's" } else { "100%" }
    );
    println!("  stage                                        each                          median");
    let pick = |f: fn(&Stages) -> Duration| stages.iter().map(f).collect::<Vec<_>>();
    row("acknowledge + stage (manifest checks)", pick(|s| s.stage));
    let download = row("download", pick(|s| s.download));
    let verify = row("verify (sha256, CMS, verity)", pick(|s| s.verify));
    let full_install = row("install (write + read back)", pick(|s| s.install));
    let reboot = row("reboot (shutdown + boot to ready)", pick(|s| s.reboot));
    let boot = row("  of which the boot to ready", pick(|s| s.boot));
    row("confirm (health window)", pick(|s| s.confirm));
    row("reported (700 in the twin)", pick(|s| s.reported));
    let download_verify = row("download + verify", pick(|s| s.download + s.verify));
    let whole = row("whole update", pick(Stages::whole));
    let delta_size = std::fs::metadata(&delta_path).unwrap().len();
    println!(
        "  the delta update to {DELTA_VERSION} ({delta_size} byte delta bundle, {:.2}% of the full bundle)",
        delta_size as f64 * 100.0 / bytes.len() as f64
    );
    row("  download", vec![delta_stages.download]);
    row("  verify (sha256, CMS, verity)", vec![delta_stages.verify]);
    let delta_install = row(
        "  install (patch from the running slot + read back)",
        vec![delta_stages.install],
    );
    row("  whole update", vec![delta_stages.whole()]);
    println!(
        "delta install {:.2}x the full install's write (goal <= 2x); delta whole update {:.2}x the full's",
        delta_install.as_secs_f64() / full_install.as_secs_f64(),
        delta_stages.whole().as_secs_f64() / whole.as_secs_f64(),
    );
    println!("  anchors in a guest like the device's");
    let curl = row("curl", anchor.download.clone());
    let sha = row("sha256sum", anchor.hash.clone());
    let curl_sha = row(
        "curl + sha256sum",
        anchor
            .download
            .iter()
            .zip(&anchor.hash)
            .map(|(d, h)| *d + *h)
            .collect(),
    );
    let install = row(
        "testudo update install (local file)",
        anchor.install.clone(),
    );
    println!(
        "download {:.2}x curl; verify {:.2}x sha256sum; download + verify {:.2}x curl + sha256sum (goal <= 1.2x)",
        download.as_secs_f64() / curl.as_secs_f64(),
        verify.as_secs_f64() / sha.as_secs_f64(),
        download_verify.as_secs_f64() / curl_sha.as_secs_f64(),
    );
    let base = install + reboot;
    println!(
        "whole update {} = install + reboot ({}) + {} = {:.2} boots of {} (goal <= 1); with the download anchor (curl + sha256sum) counted in the base: {:.2} boots",
        seconds(whole),
        seconds(base),
        seconds(whole.saturating_sub(base)),
        whole.saturating_sub(base).as_secs_f64() / boot.as_secs_f64(),
        seconds(boot),
        whole.saturating_sub(base + curl_sha).as_secs_f64() / boot.as_secs_f64(),
    );
}
