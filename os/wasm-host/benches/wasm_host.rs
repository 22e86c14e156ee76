//! WASM host benchmarks, in one run with their anchors:
//! - `instantiate/*`: app instantiation from a cached `.cwasm` (WASI context, limits, device
//!   interfaces, instance), on-demand, a pool for 16 apps, and the pool a device's one-app
//!   host runs with (`EngineOptions::one_app`); anchor: wasmtime's published
//!   5 us and the PyPI `wasmtime` package instantiating the same module.
//! - `host_call/sensor.read`: wasm -> host -> wasm round trip through `testudo:device`
//!   (local backend); `host_call/sensor.read-via-scheme` the same forwarded over a scheme
//!   handle to a provider thread (the device path: one `SOCK_SEQPACKET` request/response);
//!   anchor: the same module calling a Python host function under PyPI `wasmtime`.
//! - `start/process`: a full `testudo-wasm-host` process running the hello app from a warm
//!   cache (exec, plan, cache load, run, exit); `start/sandboxed` the same started exactly as
//!   `testudo-init` starts a `kind = wasm` component: `testudo_init::launch::spec_for`, then
//!   the real `testudo_sandbox::{prepare, spawn}` (namespaces, binds, landlock, the
//!   `wasm-host` seccomp role), until the process is reaped.
//! - idle memory: per idle app in one host (RSS delta / apps), and a whole idle host process
//!   (RSS and private memory), each beyond the app's linear memory (printed and written to
//!   target/bench/wasm-idle.json).
//!
//! Run with `cargo bench -p testudo-wasm-host`; the anchor figures are printed first.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use testudo_plan::plan::RestartPolicy;
use testudo_wasm_host::grants::{SensorGrant, TelemetryGrant};
use testudo_wasm_host::supervise::Supervisor;
use testudo_wasm_host::{
    compile_app, AppLimits, EngineOptions, Grants, HostEngine, LocalDevice, ModuleCache, Outcome,
    OutputSink, PreparedApp, RunContext, StopSignal,
};

fn context(device: Arc<LocalDevice>) -> RunContext {
    RunContext {
        limits: AppLimits::default(),
        backend: device,
        stdout: OutputSink::Discard,
        stderr: OutputSink::Discard,
        stop: StopSignal::new(),
    }
}

/// Compiles through a fresh cache twice so the prepared app comes from the `.cwasm`.
fn cached_app(engine: &HostEngine, path: &Path, cache_dir: &Path, grants: Grants) -> PreparedApp {
    let cache = ModuleCache::new(cache_dir);
    let bytes = std::fs::read(path).unwrap();
    compile_app(engine.engine(), Some(&cache), "app", &bytes).unwrap();
    let compiled = compile_app(engine.engine(), Some(&cache), "app", &bytes).unwrap();
    assert_eq!(compiled.origin, testudo_wasm_host::CodeOrigin::Cache);
    PreparedApp::prepare(engine.engine(), &compiled, Arc::new(grants)).unwrap()
}

fn sensor_grants() -> Grants {
    Grants {
        sensor: Some(SensorGrant {
            route: "s".into(),
            channels: Default::default(),
        }),
        ..Grants::default()
    }
}

fn python_anchor(hello: &Path) -> Option<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let output = testudo_testkit::python::command()
        .arg(dir.join("pywasmtime_anchor.py"))
        .arg(hello)
        .arg(dir.join("hostcall.wat"))
        .arg("2000")
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "PyPI wasmtime anchor failed (`cargo xtask deps` installs it into the project's Python environment): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn benches(c: &mut Criterion) {
    let hello = common::build("hello", &[]);
    let cache_dir = tempfile::tempdir().unwrap();
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 21.5));

    if let Some(anchor) = python_anchor(&hello) {
        println!(
            "anchor: PyPI wasmtime {}: instantiate {:.1} us, host call {:.0} ns; wasmtime published: 5 us instantiate",
            anchor["wasmtime_version"], anchor["instantiate_us"].as_f64().unwrap_or(f64::NAN),
            anchor["host_call_ns"].as_f64().unwrap_or(f64::NAN)
        );
    }

    let mut group = c.benchmark_group("instantiate");
    for (label, options) in [
        ("cached-cwasm/on-demand", EngineOptions::default()),
        (
            "cached-cwasm/pooling",
            EngineOptions {
                pooling: true,
                ..EngineOptions::default()
            },
        ),
        (
            "cached-cwasm/one-app-host",
            EngineOptions::one_app(AppLimits::default().memory_bytes),
        ),
    ] {
        let engine = HostEngine::new(&options).unwrap();
        let app = cached_app(
            &engine,
            &hello,
            &cache_dir.path().join(label),
            Grants::default(),
        );
        let ctx = context(Arc::clone(&device));
        group.bench_function(label, |b| {
            b.iter(|| assert_eq!(app.instantiate_only(&ctx).unwrap(), Outcome::Exited(0)))
        });
    }
    group.finish();

    let engine = HostEngine::new(&EngineOptions::default()).unwrap();
    let hostcall = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/hostcall.wat");
    let app = cached_app(
        &engine,
        &hostcall,
        &cache_dir.path().join("hostcall"),
        sensor_grants(),
    );
    let local = context(Arc::clone(&device));
    let (scheme_device, provider) = scheme_sensor();
    let via_scheme = context_with(scheme_device);
    for (label, ctx) in [
        ("host_call/sensor.read", &local),
        ("host_call/sensor.read-via-scheme", &via_scheme),
    ] {
        c.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                let calls = i32::try_from(iterations).unwrap_or(i32::MAX);
                let start = Instant::now();
                assert_eq!(
                    app.call_export(ctx, "run", calls).unwrap(),
                    Outcome::Exited(0)
                );
                start.elapsed()
            })
        });
    }
    drop((via_scheme, app));
    provider.join().unwrap();

    let plan_dir = tempfile::tempdir().unwrap();
    let plan = write_hello_plan(plan_dir.path(), &hello);
    let host = |wrap: &[&str]| {
        let mut command = if wrap.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_testudo-wasm-host"))
        } else {
            let mut command = Command::new(wrap[0]);
            command
                .args(&wrap[1..])
                .arg(env!("CARGO_BIN_EXE_testudo-wasm-host"));
            command
        };
        command
            .arg("--plan")
            .arg(&plan)
            .args(["--component", "hello", "--app-root", "/"])
            .arg("--cache")
            .arg(plan_dir.path().join("cache"))
            .arg("--storage-root")
            .arg(plan_dir.path().join("storage"));
        let status = command.status().unwrap();
        assert!(status.success(), "{command:?}");
    };
    host(&[]); // warm the cache
    let sandbox_dir = tempfile::tempdir().unwrap();
    let mut sandboxed_hello = common::sandboxed::wasm_component("apps/hello.wasm");
    sandboxed_hello.limits.restart = RestartPolicy::Never;
    let sandboxed = common::sandboxed::Device::new(
        sandbox_dir.path(),
        common::sandboxed::plan(vec![("hello", sandboxed_hello)]),
        &[("apps/hello.wasm", &hello)],
    );
    let start_sandboxed = || {
        let (spec, _stdout, _stderr) = sandboxed.spec("hello");
        let prepared = testudo_sandbox::prepare(spec).unwrap();
        let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).unwrap();
        assert_eq!(
            common::sandboxed::wait(&child.pidfd),
            common::sandboxed::Ended::Exited(0)
        );
    };
    start_sandboxed(); // warm the cache
    let mut group = c.benchmark_group("start");
    group.sample_size(30);
    group.bench_function("process", |b| b.iter(|| host(&[])));
    group.bench_function("sandboxed", |b| b.iter(start_sandboxed));
    group.finish();

    idle_memory();
}

fn context_with(backend: Arc<dyn testudo_wasm_host::DeviceBackend>) -> RunContext {
    RunContext {
        limits: AppLimits::default(),
        backend,
        stdout: OutputSink::Discard,
        stderr: OutputSink::Discard,
        stop: StopSignal::new(),
    }
}

/// A sensor provider served on its own thread (as a driver process serves it) and the
/// device backend reading it through a scheme handle, as the host does under init.
fn scheme_sensor() -> (
    Arc<dyn testudo_wasm_host::DeviceBackend>,
    std::thread::JoinHandle<()>,
) {
    struct Fixed;
    impl testudo_scheme::SchemeProvider for Fixed {
        type Node = ();
        fn root(&mut self, _: &testudo_scheme::Grant) -> Result<(), testudo_scheme::Errno> {
            Ok(())
        }
        fn open(
            &mut self,
            _: &(),
            _: &str,
            _: testudo_scheme::Rights,
        ) -> Result<testudo_scheme::Opened<()>, testudo_scheme::Errno> {
            Err(testudo_scheme::Errno::ENOENT)
        }
        fn read(&mut self, _: &mut (), buf: &mut [u8]) -> Result<usize, testudo_scheme::Errno> {
            let line = b"temperature 21.5 C\n";
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
        fn fstat(
            &mut self,
            _: &(),
        ) -> Result<(testudo_scheme::NodeKind, u64), testudo_scheme::Errno> {
            Ok((testudo_scheme::NodeKind::Stream, 0))
        }
    }
    let mut server = testudo_scheme::Server::new(Fixed);
    let handle = server
        .grant(&testudo_scheme::Grant {
            consumer: "bench".into(),
            capability: "sensor".into(),
            rights: testudo_scheme::Rights::Read,
            allow: Vec::new(),
        })
        .unwrap();
    let serving = std::thread::spawn(move || server.run().unwrap());
    let device = testudo_wasm_host::scheme_device::SchemeDevice::new(
        [("s".to_owned(), handle)].into(),
        Vec::new(),
    );
    (Arc::new(device), serving)
}

/// A plan with one component, the hello app, as `testudo-init` would hand it over.
fn write_hello_plan(dir: &Path, hello: &Path) -> PathBuf {
    let plan = serde_json::json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION, "name": "bench", "version": "1.0.0", "compatible": "bench",
        "board": { "name": "b", "arch": "x86_64", "memory_bytes": 1, "kernel": "k", "bootloader": "grub",
                   "console": "ttyS0", "partitions": { "esp_bytes": 1, "rootfs_bytes": 1, "data_bytes": 1 } },
        "components": { "hello": {
            "kind": "wasm", "role": "wasm_host", "run": { "type": "wasm", "module": hello.display().to_string() },
            "devices": { "nodes": [], "pci": [], "network": false }, "provides": {}, "uses": {},
            "limits": { "memory_bytes": 16777216, "cpu_percent": 10, "restart": "never", "max_tasks": 1, "cpu_time_ms": 100 },
            "after": [], "env": {}, "args": [] } },
        "app_slots": {},
        "update": { "boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity" },
        "cloud": { "hub": "h", "device_id": "d", "identity": "sas" }
    });
    let path = dir.join("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    path
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// Starts idle sensor readers (each sleeping between readings) and reports the RSS each
/// adds beyond its linear memory.
fn idle_memory() {
    const APPS: usize = 40;
    let reader = common::build("sensor-reader", &[]);
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 21.5));
    let grants = Grants {
        env: vec![("INTERVAL_MS".into(), "1000".into())],
        telemetry: Some(TelemetryGrant {
            publish: Some("t".into()),
            receive: None,
        }),
        ..sensor_grants()
    };
    let compiled = common::compile(&reader);
    let before = rss_kib();
    let mut supervisors = Vec::new();
    for _ in 0..APPS {
        let prepared = PreparedApp::prepare(
            common::engine().engine(),
            &compiled,
            Arc::new(grants.clone()),
        )
        .unwrap();
        let mut ctx = context(Arc::clone(&device));
        ctx.limits.restart = RestartPolicy::Never;
        supervisors.push(Supervisor::start(prepared, ctx).unwrap());
    }
    // Every app has published once and is asleep.
    let deadline = Instant::now() + Duration::from_secs(20);
    while device.published().len() < APPS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib();
    // The sensor reader's linear memory: 2 pages of data+stack plus heap pages it touched.
    let linear_kib = linear_memory_kib(&reader);
    let per_app = after.saturating_sub(before) as f64 / APPS as f64;
    let beyond = per_app - linear_kib as f64;
    println!(
        "idle app: {per_app:.0} KiB RSS per app ({APPS} apps), linear memory {linear_kib} KiB, beyond linear memory {beyond:.0} KiB (goal < 2048 KiB)"
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    for mut supervisor in supervisors {
        supervisor.stop();
    }
    let process = idle_host_process(&reader, linear_kib);
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(
            out.join("wasm-idle.json"),
            serde_json::json!({
                "apps": APPS, "rss_kib_per_app": per_app, "linear_kib": linear_kib,
                "beyond_linear_kib": beyond, "host_process": process,
            })
            .to_string(),
        );
    }
}

/// `testudo-wasm-host` processes each running one sensor reader that sleeps between
/// readings (as on a device: one host process per app), side by side: per process its RSS,
/// PSS and private memory (pages no other process maps: heap, stacks, the app's memory,
/// relocated data; not the binary's text and libc, which all host processes share).
fn idle_host_process(reader: &Path, linear_kib: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("device")).unwrap();
    let plan = serde_json::json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION, "name": "bench", "version": "1.0.0", "compatible": "bench",
        "board": { "name": "b", "arch": "x86_64", "memory_bytes": 1, "kernel": "k", "bootloader": "grub",
                   "console": "ttyS0", "partitions": { "esp_bytes": 1, "rootfs_bytes": 1, "data_bytes": 1 } },
        "components": { "reader": {
            "kind": "wasm", "role": "wasm_host", "run": { "type": "wasm", "module": reader.display().to_string() },
            "devices": { "nodes": [], "pci": [], "network": false },
            "provides": { "readings": { "interface": "telemetry" } },
            "uses": { "sensor": { "component": "sensor", "capability": "sensor", "interface": "sensor", "rights": "read", "allow": [] } },
            "limits": { "memory_bytes": 16777216, "cpu_percent": 10, "restart": "never", "max_tasks": 4, "cpu_time_ms": 100 },
            "after": [], "env": { "INTERVAL_MS": "600000" }, "args": [] } },
        "app_slots": {},
        "update": { "boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity" },
        "cloud": { "hub": "h", "device_id": "d", "identity": "sas" }
    });
    std::fs::write(dir.path().join("plan.json"), plan.to_string()).unwrap();
    let start = |cache: &str, telemetry: &Path| {
        let device = telemetry.with_extension("dir");
        std::fs::create_dir_all(device.join("sensors")).unwrap();
        std::fs::write(device.join("sensors/temperature"), "21.5\n").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_testudo-wasm-host"))
            .arg("--plan")
            .arg(dir.path().join("plan.json"))
            .args(["--component", "reader", "--app-root", "/"])
            .arg("--cache")
            .arg(dir.path().join(cache))
            .arg("--storage-root")
            .arg(dir.path().join("storage"))
            .arg("--device-dir")
            .arg(&device)
            .spawn()
            .unwrap();
        // The local device writes telemetry to <device dir>/telemetry.jsonl.
        let _ = std::fs::remove_file(telemetry);
        let _ = std::os::unix::fs::symlink(device.join("telemetry.jsonl"), telemetry);
        child
    };
    // Warm the cache, then start HOSTS readers side by side (as on a device: one host per
    // app), so pages the host processes share (the binary's text, libc) count as shared
    // and "private" is what one more app costs.
    const HOSTS: usize = 4;
    let telemetry = |index: usize| dir.path().join(format!("device/telemetry-{index}.jsonl"));
    let wait_published = |path: &Path| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut warm = start("cache", &telemetry(99));
    wait_published(&telemetry(99));
    let _ = warm.kill();
    let _ = warm.wait();
    let mut children: Vec<_> = (0..HOSTS)
        .map(|index| start("cache", &telemetry(index)))
        .collect();
    for index in 0..HOSTS {
        wait_published(&telemetry(index));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut totals = [0u64; 4];
    for child in &children {
        let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", child.id())).unwrap();
        let field = |name: &str| -> u64 {
            rollup
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        for (total, value) in totals.iter_mut().zip([
            field("Rss:"),
            field("Pss:"),
            field("Private_Clean:") + field("Private_Dirty:"),
            field("Anonymous:"),
        ]) {
            *total += value;
        }
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let [rss, pss, private, anonymous] = totals.map(|total| total / HOSTS as u64);
    println!(
        "idle host process ({HOSTS} side by side, from cache), per process: RSS {rss} KiB, PSS {pss} KiB, private {private} KiB, anonymous {anonymous} KiB; private beyond linear memory ({linear_kib} KiB): {} KiB (goal < 2048 KiB)",
        private.saturating_sub(linear_kib)
    );
    let mut figures = serde_json::Map::new();
    figures.insert(
        "per_process".to_owned(),
        serde_json::json!({ "hosts": HOSTS, "rss_kib": rss, "pss_kib": pss, "private_kib": private, "anonymous_kib": anonymous }),
    );
    serde_json::Value::Object(figures)
}

/// Initial linear memory of a module, in KiB (what instantiation commits at most).
fn linear_memory_kib(path: &Path) -> u64 {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::from_file(&engine, path).unwrap();
    let kib = module
        .exports()
        .find_map(|export| export.ty().memory().map(|memory| memory.minimum() * 64))
        .unwrap_or(0);
    kib
}

criterion_group! {
    name = wasm_host;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(wasm_host);
