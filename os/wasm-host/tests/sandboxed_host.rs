//! Promise: the WASM host runs apps inside the real testudo sandbox — the spec
//! `testudo-init` builds for a `kind = wasm` component (its binds, the `wasm-host` seccomp
//! role, landlock, namespaces, its own uid) — and the `wasm-host` syscall policy lets it
//! compile (and write its cache), load from the cache and from a read-only precompiled
//! sidecar, run modules and components with files and limits, restart a failed app inside the
//! host (its pooled instance freed and made again), contain hostile file access, and report
//! traps and limits,
//! without being killed (a syscall outside the policy ends the host with SIGSYS).
//! Root is needed for the sandbox's id mapping, as in CI.
#![allow(clippy::unwrap_used)]

mod common;

use common::sandboxed::{plan, route, wasm_component, Device, Ended, SandboxedRun};
use testudo_plan::plan::{RestartPolicy, Rights};

fn assert_exit(run: &SandboxedRun, code: i32) {
    assert_eq!(
        run.ended,
        Ended::Exited(code),
        "(signal 31 = SIGSYS: a syscall outside os/sandbox/policies/wasm-host.json)\nlog: {}\nstderr: {}",
        run.log,
        run.stderr
    );
}

#[test]
fn apps_run_to_their_expected_output_inside_the_sandbox() {
    let log = || route("log", "log", "log", Rights::Write);
    let mut hello = wasm_component("apps/hello.wasm");
    hello.uses.insert("log".into(), log());
    hello
        .env
        .insert("GREETING".into(), "sandboxed hello".into());
    hello.args = vec!["one".into()];
    let mut component = wasm_component("apps/hello-component.wasm");
    component.uses.insert("log".into(), log());
    let mut writer = wasm_component("apps/probe.wasm");
    writer.uses.insert("log".into(), log());
    writer.uses.insert(
        "files".into(),
        route("storage", "storage", "storage", Rights::ReadWrite),
    );
    writer.args = ["write", "/files/note.txt", "kept"]
        .map(String::from)
        .to_vec();
    // Every WASI file operation on the app's storage, from a core module and a component,
    // under the run-phase filter with file operations (`wasm_app_files`).
    let filer = |module: &str| {
        let mut app = wasm_component(module);
        app.uses.insert("log".into(), log());
        app.uses.insert(
            "files".into(),
            route("storage", "storage", "storage", Rights::ReadWrite),
        );
        app.args = ["files", "/files"].map(String::from).to_vec();
        app
    };
    let mut spin = wasm_component("apps/spin.wasm");
    spin.limits.cpu_time_ms = 50;
    let mut hog = wasm_component("apps/memory.wasm");
    hog.limits.memory_bytes = 4 << 20;
    let hostile = |module: &str| {
        let mut app = wasm_component(module);
        app.uses.insert(
            "data".into(),
            route("storage", "storage", "storage", Rights::ReadWrite),
        );
        app
    };
    // Fails once, then is restarted inside the same host: the first instance's pool slots
    // are freed (decommitted with `madvise`, under the run-phase filter) and reused.
    let mut restarted = filer("apps/probe.wasm");
    restarted.args = ["once", "/files/started-before"].map(String::from).to_vec();
    restarted.limits.restart = RestartPolicy::OnFailure;
    let mut precompiled = wasm_component("apps/precompiled.wasm");
    precompiled.uses.insert("log".into(), log());
    let plan = plan(vec![
        ("hello", hello),
        ("hello-component", component),
        ("writer", writer),
        ("filer", filer("apps/probe.wasm")),
        ("filer-component", filer("apps/probe-component.wasm")),
        ("restarted", restarted),
        ("spin", spin),
        ("hog", hog),
        ("precompiled", precompiled),
        ("symlink", hostile("apps/symlink.wasm")),
        ("traversal", hostile("apps/traversal.wasm")),
        ("recursion", wasm_component("apps/recursion.wasm")),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let hello_wasm = common::build("hello", &[]);
    let device = Device::new(
        dir.path(),
        plan,
        &[
            ("apps/hello.wasm", &hello_wasm),
            (
                "apps/hello-component.wasm",
                &common::build_component("hello"),
            ),
            ("apps/probe.wasm", &common::build("probe", &[])),
            (
                "apps/probe-component.wasm",
                &common::build_component("probe"),
            ),
            ("apps/spin.wasm", &common::build("hostile/spin", &[])),
            ("apps/memory.wasm", &common::build("hostile/memory", &[])),
            ("apps/precompiled.wasm", &hello_wasm),
            ("apps/symlink.wasm", &common::build("hostile/symlink", &[])),
            (
                "apps/traversal.wasm",
                &common::build("hostile/traversal", &[]),
            ),
            (
                "apps/recursion.wasm",
                &common::build("hostile/recursion", &[]),
            ),
        ],
    );

    // First start compiles and fills the cache; the second loads from it.
    for _ in 0..2 {
        let run = device.run("hello");
        assert_exit(&run, 0);
        assert_eq!(run.log, "sandboxed hello from testudo\narg 1: one\n");
    }
    let caches = device.options.state_dir.join("wasm-cache");
    assert_eq!(count_files(&caches.join("hello")), 1, "one cached module");

    let run = device.run("hello-component");
    assert_exit(&run, 0);
    assert_eq!(run.log, "hello from testudo\n");

    // Storage: the app's `/files` is the directory init gives it on the data partition.
    let run = device.run("writer");
    assert_exit(&run, 0);
    let note = device.options.data_dir.join("writer/note.txt");
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "kept");
    for filer in ["filer", "filer-component"] {
        let run = device.run(filer);
        assert_exit(&run, 0);
        assert_eq!(run.log, "files ok\n", "{filer}");
        assert!(
            run.stderr
                .ends_with("; seccomp wasm_app_run+wasm_app_files\n"),
            "{}",
            run.stderr
        );
    }

    // A restart inside the host: the failed instance is freed and a new one runs.
    let run = device.run("restarted");
    assert_exit(&run, 0);
    assert_eq!(run.log, "once: first run fails\nonce: second run\n");

    // Limits end the app, not the host: the host reports and exits with its code.
    let run = device.run("spin");
    assert_exit(&run, 72);
    assert!(run.stderr.contains("CPU"), "{}", run.stderr);
    let run = device.run("hog");
    assert_exit(&run, 71);
    // A trap (stack exhausted: wasmtime's signal handler turns the fault into a trap).
    let run = device.run("recursion");
    assert_exit(&run, 70);

    // Escapes out of the storage directory (symlinks it plants, `..` paths) are refused by
    // WASI itself (openat2 with RESOLVE_BENEATH; links are refused by the host), so the host
    // reports the app's own exit 0 = contained.
    for hostile in ["symlink", "traversal"] {
        let run = device.run(hostile);
        assert_exit(&run, 0);
    }

    // A precompiled sidecar next to the module is bound read-only and used (no compile:
    // the cache gains no entry for it).
    let sidecar = device.options.app_root.join("apps/precompiled.cwasm");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_testudo-wasm-host"))
        .arg("precompile")
        .arg(device.options.app_root.join("apps/precompiled.wasm"))
        .arg(&sidecar)
        .output()
        .unwrap();
    assert!(made.status.success());
    let run = device.run("precompiled");
    assert_exit(&run, 0);
    assert_eq!(
        run.stderr,
        format!(
            "testudo-wasm-host: app precompiled: code precompiled {}/apps/precompiled.cwasm; seccomp wasm_app_run\n",
            testudo_plan::layout::wasm_sandbox::APPS
        ),
        "sidecar not used"
    );
    assert_eq!(
        count_files(&caches.join("precompiled")),
        0,
        "compiled anyway"
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                count_files(&path)
            } else {
                1
            }
        })
        .sum()
}
