//! Promise: `testudo-wasm-host --plan PLAN.json --component NAME` runs a plan's WASM
//! component with its routes and limits (instantiated from a pool sized for it), reuses the
//! `.cwasm` cache on the next start, and exits with the documented codes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use testudo_plan::plan::Plan;

fn limits(restart: &str) -> serde_json::Value {
    json!({ "memory_bytes": 33554432, "cpu_percent": 20, "restart": restart, "max_tasks": 1, "cpu_time_ms": 100 })
}

fn component(
    module: &str,
    uses: serde_json::Value,
    provides: serde_json::Value,
    env: serde_json::Value,
) -> serde_json::Value {
    json!({
        "kind": "wasm",
        "role": "wasm_host",
        "run": { "type": "wasm", "module": module },
        "devices": { "nodes": [], "pci": [], "network": false },
        "provides": provides,
        "uses": uses,
        "limits": limits("never"),
        "after": [],
        "env": env,
        "args": []
    })
}

/// A plan in the gateway example's shape: the sensor reader reads the `sensor` driver and
/// publishes into the telemetry capability it provides.
fn write_plan(dir: &Path, reader: &Path, hostile: &Path) -> std::path::PathBuf {
    let route = |component: &str, capability: &str, interface: &str, rights: &str| json!({ "component": component, "capability": capability, "interface": interface, "rights": rights, "allow": [] });
    let plan = json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION,
        "name": "gateway",
        "version": "1.0.0",
        "compatible": "testudo-test",
        "board": {
            "name": "qemu-x86_64", "arch": "x86_64", "memory_bytes": 536870912, "kernel": "k",
            "bootloader": "grub", "console": "ttyS0",
            "partitions": { "esp_bytes": 1, "rootfs_bytes": 1, "data_bytes": 1 }
        },
        "components": {
            "sensor-reader": component(
                &reader.display().to_string(),
                json!({
                    "sensor": route("sensor", "sensor", "sensor", "read"),
                    "log": route("log", "log", "log", "write"),
                }),
                json!({ "readings": { "interface": "telemetry" } }),
                json!({ "ROUNDS": "3", "INTERVAL_MS": "1" }),
            ),
            "intruder": component(&hostile.display().to_string(), json!({}), json!({}), json!({})),
            "slow-reader": component(
                &reader.display().to_string(),
                json!({ "sensor": route("sensor", "sensor", "sensor", "read") }),
                json!({}),
                json!({ "ROUNDS": "100", "INTERVAL_MS": "100" }),
            ),
        },
        "app_slots": {},
        "update": { "boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity" },
        "cloud": { "hub": "hub.invalid", "device_id": "d", "identity": "sas" }
    });
    // The plan must be a valid plan of this format.
    Plan::from_bytes(&serde_json::to_vec(&plan).unwrap()).unwrap();
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    path
}

/// A work directory whose local device has a temperature sensor, and the plan in it.
fn work_with_a_sensor() -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("device/sensors")).unwrap();
    std::fs::write(work.path().join("device/sensors/temperature"), "19.25\n").unwrap();
    let plan = write_plan(
        work.path(),
        &common::build("sensor-reader", &[]),
        &common::build("hostile/imports", &[]),
    );
    (work, plan)
}

fn host(plan: &Path, component: &str, work: &Path) -> std::process::Output {
    host_command(plan, component, work).output().unwrap()
}

fn host_command(plan: &Path, component: &str, work: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_testudo-wasm-host"));
    command
        .arg("--plan")
        .arg(plan)
        .args(["--component", component])
        .arg("--app-root")
        .arg("/")
        .arg("--storage-root")
        .arg(work.join("storage"))
        .arg("--cache")
        .arg(work.join("cache"))
        .arg("--device-dir")
        .arg(work.join("device"));
    command
}

#[test]
fn a_plan_component_runs_with_its_routes_and_starts_from_the_cache_next_time() {
    let (work, plan) = work_with_a_sensor();
    let first = host(&plan, "sensor-reader", work.path());
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let telemetry = std::fs::read_to_string(work.path().join("device/telemetry.jsonl")).unwrap();
    let lines: Vec<&str> = telemetry.lines().collect();
    assert_eq!(lines.len(), 3, "{telemetry}");
    assert!(lines[0].contains(r#"\"value\":19.250"#), "{}", lines[0]);
    let cached: Vec<_> = walk(&work.path().join("cache"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    let modified = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    let second = host(&plan, "sensor-reader", work.path());
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        modified,
        "recompiled"
    );
}

#[test]
fn exit_codes_name_what_went_wrong() {
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &common::build("sensor-reader", &[]),
        &common::build("hostile/imports", &[]),
    );
    let denied = host(&plan, "intruder", work.path());
    assert_eq!(denied.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("testudo:device/admin@0.1.0#reboot is not granted"),
        "{stderr}"
    );
    let unknown = host(&plan, "nobody", work.path());
    assert_eq!(unknown.status.code(), Some(76));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("component nobody is not in the plan")
    );
}

/// A host running the slow sensor reader, once it has said which filter its app runs under
/// (its first stderr line, returned); the work directory lives as long as the tuple.
fn slow_reader_started() -> (tempfile::TempDir, std::process::Child, String) {
    use std::io::BufRead;
    let (work, plan) = work_with_a_sensor();
    let mut child = host_command(&plan, "slow-reader", work.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    (work, child, said)
}

/// Every thread of a running host is under the run-phase filter by the time the host says
/// which one it entered (and before the app's code runs): `TSYNC` reached the threads started
/// during start-up, and the threads started later inherit it.
#[test]
fn every_thread_runs_the_app_under_the_run_phase_filter() {
    let (_work, mut child, said) = slow_reader_started();
    // The local device of --device-dir is file-backed, so file operations stay.
    assert!(
        said.ends_with("; seccomp wasm_app_run+wasm_app_files\n"),
        "{said}"
    );
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .map(|task| task.unwrap().path())
        .collect();
    let mut statuses = Vec::new();
    for task in &tasks {
        statuses.push(std::fs::read_to_string(task.join("status")).unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(tasks.len() > 1, "the host runs more than one thread");
    for status in statuses {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(field("Seccomp:"), "2", "not in filter mode:\n{status}");
        assert_eq!(field("Seccomp_filters:"), "1", "{status}");
    }
}

/// The host instantiates its app from wasmtime's pool sized for one app
/// (`EngineOptions::one_app`): by the time the app runs, the address space holds the pool's
/// memory slots, each reserved whole (on demand, only the app's own memory would be).
#[test]
fn the_host_runs_its_app_from_a_pool_sized_for_it() {
    use testudo_wasm_host::{AppLimits, EngineOptions};
    let (_work, mut child, said) = slow_reader_started();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let reserved_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    // Each memory slot reserves at least 4 GiB of address space.
    let slots = u64::from(EngineOptions::ONE_APP_INSTANCES * AppLimits::MAX_MEMORIES);
    assert!(
        reserved_kib >= slots * (4 << 20),
        "{reserved_kib} KiB reserved, fewer than {slots} memory slots ({said})"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_plan_of_another_format_is_refused_before_anything_runs() {
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.json");
    std::fs::write(&plan, br#"{"format": 1, "name": "old", "components": {}}"#).unwrap();
    let output = host(&plan, "sensor-reader", work.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(testudo_wasm_host::EXIT_SETUP_FAILED)),
        "{stderr}"
    );
    let expected = format!(
        "plan format 1, this build reads format {}",
        testudo_plan::PLAN_FORMAT_VERSION
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!work.path().join("cache").exists(), "nothing was prepared");
}
