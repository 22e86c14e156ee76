//! OS runtime benchmarks that need the real binaries, in one run:
//!
//! 1. Time from starting the supervisor on the gateway example's plan to the `ready` event
//!    (every native component up in its sandbox), median of 20 runs, next to the anchor:
//!    spawning the same binaries as plain unsandboxed processes (fork+exec, no handles).
//!    The Nickel evaluation of the config happens once, before timing; WASM components are
//!    reported "not started" unless `testudo-wasm-host` is in the binary directory.
//!    `/dev/tpm0` is served by a swtpm `unixio` socket.
//! 2. Syscalls each gateway component's seccomp role allows, against the x86_64 table.
//!
//! Run: `cargo bench -p testudo-drivers --bench startup`. The plan comes from the `testudo`
//! CLI (`testudo plan`, found through `TESTUDO_BIN` or next to this bench's target
//! directory: `cargo build -p testudo` first), so the bench itself never compiles Nickel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testudo_init::{EventKind, InitOptions, RunningSystem};

const RUNS: usize = 20;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The gateway example's plan, from `testudo plan`.
fn gateway_plan(root: &Path) -> testudo_plan::plan::Plan {
    let exe = std::env::current_exe().expect("bench path");
    // target/<profile>/deps/startup-HASH -> target/<profile>/testudo, then the other profile.
    let target = exe.ancestors().nth(3).expect("target dir").to_owned();
    let testudo = std::env::var_os("TESTUDO_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            ["release", "debug"]
                .iter()
                .map(|profile| target.join(profile).join("testudo"))
                .find(|path| path.is_file())
        })
        .expect(
            "the testudo CLI is needed for the plan: `cargo build -p testudo` (or set TESTUDO_BIN)",
        );
    let output = Command::new(&testudo)
        .arg("plan")
        .arg(root.join("system-config/examples/gateway.ncl"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running testudo plan");
    assert!(output.status.success(), "{} plan failed", testudo.display());
    serde_json::from_slice(&output.stdout).expect("plan JSON")
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_testudo-log"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let plan = gateway_plan(&root);
    let work = tempfile::tempdir().expect("tempdir");

    // A private swtpm standing in for /dev/tpm0 (as `testudo run` does by default).
    let swtpm = testudo_init::SoftwareTpm::start(&work.path().join("swtpm"))
        .expect("swtpm (Debian package swtpm) must be installed");
    let tpm_socket = swtpm.socket().to_owned();

    let mut sandboxed = Vec::new();
    let mut one_by_one = Vec::new();
    let mut started_names = Vec::new();
    let mut reports = Vec::new();
    // Concurrent (the default) and one-after-another starts interleaved, so both see the
    // same machine load.
    for run in 0..RUNS * 2 {
        let concurrent = run % 2 == 0;
        let mut options = InitOptions::new(
            bin_dir.clone(),
            work.path().join(format!("state-{run}")),
            work.path().join(format!("data-{run}")),
            root.clone(),
        );
        options
            .devices
            .insert("/dev/tpm0".into(), tpm_socket.clone());
        options.stop_grace = Duration::from_millis(500);
        options.concurrent_start = concurrent;
        let begin = Instant::now();
        let system = RunningSystem::start(plan.clone(), options).expect("start");
        let ready = system
            .events
            .wait_for(Duration::from_secs(30), |e| {
                matches!(e.kind, EventKind::Ready { .. })
            })
            .expect("ready");
        if concurrent {
            sandboxed.push(begin.elapsed());
        } else {
            one_by_one.push(begin.elapsed());
        }
        if let EventKind::Ready { components } = ready.kind {
            started_names = components;
        }
        // Everything counted as up must still be running (not crash-looping).
        std::thread::sleep(Duration::from_millis(50));
        let status = system.status().expect("status");
        for name in &started_names {
            assert!(
                status.contains(&format!("{name} running 0")),
                "{name} is not running:\n{status}"
            );
        }
        if run == 0 {
            reports = system
                .events
                .snapshot()
                .into_iter()
                .filter_map(|e| match e.kind {
                    EventKind::Started { report, .. } => Some(*report),
                    EventKind::NotStarted { reason } => {
                        println!("note: {} not started: {reason}", e.component);
                        None
                    }
                    _ => None,
                })
                .collect();
        }
        system.stop().expect("stop");
    }

    // Anchor: the same binaries as plain processes, started one after another.
    let binaries: Vec<PathBuf> = started_names
        .iter()
        .filter_map(|name| match &plan.components[name].run {
            testudo_plan::plan::Run::Binary { name } => Some(bin_dir.join(name)),
            _ => None,
        })
        .collect();
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let begin = Instant::now();
        let mut children: Vec<_> = binaries
            .iter()
            .map(|binary| {
                Command::new(binary)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        plain.push(begin.elapsed());
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    drop(swtpm);

    let first = sandboxed[0];
    let sandboxed = median(sandboxed);
    let one_by_one = median(one_by_one);
    let plain = median(plain);
    println!(
        "startup/gateway_to_ready: median {:.1} ms over {RUNS} runs ({} components up: {})",
        sandboxed.as_secs_f64() * 1e3,
        started_names.len(),
        started_names.join(" ")
    );
    println!(
        "startup/gateway_to_ready_one_by_one: median {:.1} ms (independent components not started concurrently; concurrent/one-by-one = {:.2})",
        one_by_one.as_secs_f64() * 1e3,
        sandboxed.as_secs_f64() / one_by_one.as_secs_f64()
    );
    println!(
        "startup/gateway_to_ready_first_run: {:.1} ms (library lists and seccomp programs not cached yet)",
        first.as_secs_f64() * 1e3
    );
    println!(
        "startup/anchor_plain_spawn: median {:.1} ms (same binaries, no sandbox, no routing)",
        plain.as_secs_f64() * 1e3
    );
    println!(
        "startup/ratio: {:.1}x (goal: gateway to ready under 100 ms)",
        sandboxed.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "syscalls allowed per component (x86_64 table: {} syscalls):",
        testudo_sandbox::policy::X86_64_SYSCALLS
    );
    for report in reports {
        println!(
            "  {:<10} role {:<15} {:>3} allowed ({:.1}% of the table)",
            report.component,
            report.role,
            report.syscalls_allowed,
            100.0 * report.syscalls_allowed as f64 / report.syscalls_total as f64
        );
    }
}
