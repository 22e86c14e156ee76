//! OS runtime benchmarks that need the real binaries, in one run:
//!
//! 1. Time from starting the supervisor on the gateway example's plan until every native
//!    component that starts is up in its sandbox (its `started` event; "natives ready"), and
//!    until the `ready` event (every component up, WASM apps included when
//!    `testudo-wasm-host` is in the binary directory: they start after the natives they are
//!    routed to, in a wave of their own), median of 20 runs each with independent components
//!    set up concurrently (the default) and one after another, next to the anchor: spawning
//!    the same native binaries as plain unsandboxed processes (fork+exec, no handles). The
//!    Nickel evaluation of the config happens once, before timing. `/dev/tpm0` is served by
//!    a swtpm `unixio` socket.
//! 2. How far the kernel lets sandbox set-ups overlap: a child created into the namespaces a
//!    sandbox gets (fork, `unshare` of the same namespace flags, exit), 400 times on one
//!    thread and on two; the same with no namespaces as the anchor.
//! 3. Syscalls each gateway component's seccomp role allows, against the x86_64 table.
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

/// The namespaces a component's sandbox is cloned into (`testudo_sandbox`'s clone flags,
/// network included).
const SANDBOX_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWNET;

/// Wall time per child of `total` children, each forked, moved into new `namespaces` and
/// exited, made by `threads` threads at once.
fn namespace_children(namespaces: libc::c_int, threads: usize, total: usize) -> Duration {
    let begin = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..total / threads {
                    // SAFETY: the child calls only async-signal-safe functions (`unshare`,
                    // `_exit`) before exiting; the parent reaps it with `waitpid`.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0, "fork failed");
                    if pid == 0 {
                        // SAFETY: see above; the child is single-threaded, as a user
                        // namespace requires.
                        let code = unsafe { libc::unshare(namespaces) };
                        // SAFETY: ends the child without running the parent's destructors.
                        unsafe { libc::_exit(if code == 0 { 0 } else { 1 }) };
                    }
                    let mut status = 0;
                    // SAFETY: waits for the child just forked; `status` outlives the call.
                    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
                    assert!(
                        waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                        "a child could not unshare the sandbox's namespaces"
                    );
                }
            });
        }
    });
    begin.elapsed() / total as u32
}

fn main() {
    // First, while the bench process is small and single-threaded: each child is forked, and
    // a fork copies the parent's page tables under its memory-map lock, which serializes the
    // forks of a large process's threads whatever the namespaces.
    const CHILDREN: usize = 400;
    let plain_one = namespace_children(0, 1, CHILDREN);
    let plain_two = namespace_children(0, 2, CHILDREN);
    let sandbox_one = namespace_children(SANDBOX_NAMESPACES, 1, CHILDREN);
    let sandbox_two = namespace_children(SANDBOX_NAMESPACES, 2, CHILDREN);
    let network_one = namespace_children(libc::CLONE_NEWNET, 1, CHILDREN);
    let network_two = namespace_children(libc::CLONE_NEWNET, 2, CHILDREN);
    let namespace_figures = [
        ("no_namespaces (anchor)", plain_one, plain_two),
        ("sandbox_namespaces", sandbox_one, sandbox_two),
        ("network_namespace", network_one, network_two),
    ];

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

    // A native component's binary (WASM apps run in the host binary, not their own).
    let native_binary = |name: &str| match &plan.components.get(name)?.run {
        testudo_plan::plan::Run::Binary { name } => Some(name.clone()),
        _ => None,
    };
    let native = |name: &str| native_binary(name).is_some();
    let mut sandboxed = Vec::new();
    let mut one_by_one = Vec::new();
    let mut natives_concurrent = Vec::new();
    let mut natives_one_by_one = Vec::new();
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
        // The predicate sees every new event as it is recorded (and the earlier ones again):
        // the natives are ready when the last native's `started` event is first seen.
        let mut natives_seen = std::collections::BTreeSet::new();
        let mut natives_ready = Duration::ZERO;
        let ready = system
            .events
            .wait_for(Duration::from_secs(30), |e| {
                if matches!(e.kind, EventKind::Started { .. })
                    && native(&e.component)
                    && natives_seen.insert(e.component.clone())
                {
                    natives_ready = begin.elapsed();
                }
                matches!(e.kind, EventKind::Ready { .. })
            })
            .expect("ready");
        let all_ready = begin.elapsed();
        if concurrent {
            sandboxed.push(all_ready);
            natives_concurrent.push(natives_ready);
        } else {
            one_by_one.push(all_ready);
            natives_one_by_one.push(natives_ready);
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
        .filter_map(|name| native_binary(name))
        .map(|binary| bin_dir.join(binary))
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
    let natives_concurrent = median(natives_concurrent);
    let natives_one_by_one = median(natives_one_by_one);
    let plain = median(plain);
    println!(
        "startup/natives_ready: median {:.1} ms over {RUNS} runs ({} natives: {})",
        natives_concurrent.as_secs_f64() * 1e3,
        binaries.len(),
        started_names
            .iter()
            .filter(|name| native(name))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "startup/natives_ready_one_by_one: median {:.1} ms (concurrent/one-by-one = {:.2})",
        natives_one_by_one.as_secs_f64() * 1e3,
        natives_concurrent.as_secs_f64() / natives_one_by_one.as_secs_f64()
    );
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
        "startup/natives_ratio: {:.1}x plain spawn (natives ready / anchor)",
        natives_concurrent.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "startup/ratio: {:.1}x (gateway to ready / anchor; goal: gateway to ready under 100 ms)",
        sandboxed.as_secs_f64() / plain.as_secs_f64()
    );
    for (what, one, two) in namespace_figures {
        println!(
            "startup/children_{what}: {:.3} ms per child on one thread, {:.3} ms on two (two/one = {:.2})",
            one.as_secs_f64() * 1e3,
            two.as_secs_f64() * 1e3,
            two.as_secs_f64() / one.as_secs_f64()
        );
    }
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
