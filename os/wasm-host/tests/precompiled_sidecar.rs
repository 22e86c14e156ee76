//! Promise: `testudo-wasm-host precompile` writes a `.cwasm` the host loads as the sidecar
//! of its module — only from a read-only filesystem — before its own cache; a sidecar that
//! is on a writable filesystem, built for another engine, or damaged is not used: the host
//! says so in one line and runs the app from its cache or by compiling.
//!
//! "Read-only filesystem" is real: the host runs in a private mount namespace in which the
//! app directory is bind-mounted read-only (`unshare -m` + `mount -o bind,ro`; root needed,
//! as in CI).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

fn host_binary() -> &'static str {
    env!("CARGO_BIN_EXE_testudo-wasm-host")
}

/// A plan with one component `hello` whose module is `<app-root>/apps/hello.wasm`; its
/// stdout reaches the host's (a `log` route).
fn write_plan(dir: &Path) -> PathBuf {
    let plan = json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION, "name": "sidecar", "version": "1.0.0", "compatible": "testudo-test",
        "board": {
            "name": "qemu-x86_64", "arch": "x86_64", "memory_bytes": 536870912, "kernel": "k",
            "bootloader": "grub", "console": "ttyS0",
            "partitions": { "esp_bytes": 1, "rootfs_bytes": 1, "data_bytes": 1 }
        },
        "components": {
            "hello": {
                "kind": "wasm",
                "role": "wasm_host",
                "run": { "type": "wasm", "module": "apps/hello.wasm" },
                "devices": { "nodes": [], "pci": [], "network": false },
                "provides": {},
                "uses": { "log": { "component": "log", "capability": "log", "interface": "log", "rights": "write", "allow": [] } },
                "limits": { "memory_bytes": 33554432, "cpu_percent": 20, "restart": "never", "max_tasks": 1, "cpu_time_ms": 1000 },
                "after": [], "env": { "GREETING": "precompiled hello" }, "args": []
            }
        },
        "app_slots": {},
        "update": { "boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity" },
        "cloud": { "hub": "hub.invalid", "device_id": "d", "identity": "sas" }
    });
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    path
}

/// A work dir with `root/apps/hello.wasm`, the plan, and an empty cache.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        Self::with_app(&common::build("hello", &[]))
    }

    /// With `app` (a module or a component) as `apps/hello.wasm`.
    fn with_app(app: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/apps")).unwrap();
        std::fs::copy(app, dir.path().join("root/apps/hello.wasm")).unwrap();
        write_plan(dir.path());
        Self { dir }
    }

    fn module(&self) -> PathBuf {
        self.dir.path().join("root/apps/hello.wasm")
    }

    fn sidecar(&self) -> PathBuf {
        self.dir.path().join("root/apps/hello.cwasm")
    }

    fn cache_entries(&self) -> usize {
        let cache = self.dir.path().join("cache");
        if !cache.exists() {
            return 0;
        }
        std::fs::read_dir(cache)
            .unwrap()
            .map(|key| std::fs::read_dir(key.unwrap().path()).unwrap().count())
            .sum()
    }

    /// Runs the host for `hello`, with `root/` mounted read-only when `read_only`.
    fn run_host(&self, read_only: bool) -> Output {
        let work = self.dir.path();
        let root = work.join("root");
        let mut host = vec![
            host_binary().to_owned(),
            "--plan".into(),
            work.join("plan.json").display().to_string(),
            "--component".into(),
            "hello".into(),
            "--app-root".into(),
            root.display().to_string(),
            "--storage-root".into(),
            work.join("storage").display().to_string(),
            "--cache".into(),
            work.join("cache").display().to_string(),
        ];
        if !read_only {
            return Command::new(&host[0]).args(&host[1..]).output().unwrap();
        }
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c"]);
        command.arg(r#"mount -o bind,ro "$0" "$0" && exec "$@""#);
        command.arg(&root);
        command.args(host.drain(..));
        command.output().unwrap_or_else(|error| {
            panic!("unshare (util-linux) is needed to mount the app dir read-only: {error}")
        })
    }
}

fn precompile(input: &Path, output: &Path) -> Output {
    Command::new(host_binary())
        .arg("precompile")
        .arg(input)
        .arg(output)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_read_only_sidecar_is_used_instead_of_compiling() {
    let work = Work::new();
    let made = precompile(&work.module(), &work.sidecar());
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(std::fs::read(work.sidecar())
        .unwrap()
        .starts_with(b"\x7fELF"));
    run_from_the_sidecar(&work);
}

/// Runs hello with its sidecar on a read-only filesystem: the host uses it, says so in one
/// line and compiles nothing (the cache stays empty).
fn run_from_the_sidecar(work: &Work) {
    let ran = work.run_host(true);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(stdout(&ran), "precompiled hello from testudo\n");
    assert_eq!(
        stderr(&ran),
        format!(
            "testudo-wasm-host: app hello: code precompiled {}; seccomp wasm_app_run\n",
            work.sidecar().display()
        ),
        "the sidecar was not used"
    );
    assert_eq!(
        work.cache_entries(),
        0,
        "compiled although a sidecar was there"
    );
}

#[test]
fn a_component_sidecar_is_used_too() {
    let work = Work::with_app(&common::build_component("hello"));
    assert!(precompile(&work.module(), &work.sidecar()).status.success());
    run_from_the_sidecar(&work);
}

#[test]
fn a_sidecar_on_a_writable_filesystem_is_not_trusted() {
    let work = Work::new();
    assert!(precompile(&work.module(), &work.sidecar()).status.success());
    let said = run_falling_back_to_the_cache(&work, false);
    assert!(
        said.contains("hello.cwasm not used (it is on a writable filesystem)"),
        "{said}"
    );
    assert_eq!(work.cache_entries(), 1);
}

/// Runs hello (its sidecar on a read-only filesystem or not) with a sidecar the host must
/// refuse: the app still runs (compiled into the cache) and the host says in exactly one line
/// why the sidecar was not used, then in a second that it compiled the app. Returns the first.
fn run_falling_back_to_the_cache(work: &Work, read_only: bool) -> String {
    let ran = work.run_host(read_only);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(stdout(&ran), "precompiled hello from testudo\n");
    let said = stderr(&ran);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(lines[0].contains("hello.cwasm not used ("), "{said}");
    assert!(
        lines[1].ends_with("app hello: code compiled now; seccomp wasm_app_run"),
        "{said}"
    );
    lines[0].to_owned()
}

#[test]
fn an_incompatible_or_damaged_sidecar_falls_back_and_says_so() {
    // Built by an engine with other settings (no epoch interruption): wasmtime refuses it.
    let work = Work::new();
    let engine = wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(false)).unwrap();
    let foreign = engine
        .precompile_module(&std::fs::read(work.module()).unwrap())
        .unwrap();
    std::fs::write(work.sidecar(), foreign).unwrap();
    let said = run_falling_back_to_the_cache(&work, true);
    assert!(said.contains("not loadable by this host"), "{said}");
    assert!(said.contains("epoch interruption"), "{said}");
    assert_eq!(work.cache_entries(), 1);

    // Damaged: an ELF header and garbage.
    let work = Work::new();
    let mut damaged = b"\x7fELF\x02\x01\x01".to_vec();
    damaged.resize(4096, 0xa5);
    std::fs::write(work.sidecar(), damaged).unwrap();
    let said = run_falling_back_to_the_cache(&work, true);
    assert!(said.contains("not loadable by this host"), "{said}");
}

#[test]
fn precompiling_a_bad_module_is_one_clear_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.wasm");
    let output = dir.path().join("bad.cwasm");
    std::fs::write(&input, b"\0asm\x01\0\0\0\x01\x05garbage").unwrap();
    let made = precompile(&input, &output);
    assert_eq!(made.status.code(), Some(76));
    let said = stderr(&made);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with("testudo-wasm-host: compiling app "),
        "{said}"
    );
    std::fs::write(&input, b"not wasm").unwrap();
    let made = precompile(&input, &output);
    assert_eq!(made.status.code(), Some(76));
    assert!(stderr(&made).contains("not a WebAssembly module or component"));
    let missing = precompile(&dir.path().join("missing.wasm"), &output);
    assert_eq!(missing.status.code(), Some(76));
    assert!(stderr(&missing).contains("reading app"));
    assert!(!output.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
