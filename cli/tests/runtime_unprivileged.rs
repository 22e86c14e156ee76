#![cfg(feature = "runtime")]
//! Promise: `testudo run` works unprivileged where the kernel allows user namespaces. A
//! small config (log, storage, sensor, net) is run as uid/gid 65534 with no capabilities
//! (`setpriv`); it reaches `ready`, every component runs with seccomp mode 2, NoNewPrivs 1,
//! its own user and mount namespaces and (but the network owner) its own network namespace,
//! as the caller's uid; SIGTERM stops it with status 0 and leaves no process behind. If the
//! kernel forbids unprivileged user namespaces the test fails naming the sysctl.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod runtime_common;
use runtime_common::{repo_root, RunningTestudo};

const NOBODY: u32 = 65534;
const BINARIES: [&str; 5] = [
    "testudo",
    "testudo-log",
    "testudo-storage",
    "testudo-sensor",
    "testudo-net",
];

/// Fails naming the sysctl that forbids unprivileged user namespaces, if one does.
fn require_unprivileged_user_namespaces() {
    for (sysctl, allowed) in [
        ("kernel/unprivileged_userns_clone", "1"),
        ("user/max_user_namespaces", ""),
        ("kernel/apparmor_restrict_unprivileged_userns", "0"),
    ] {
        let Ok(value) = std::fs::read_to_string(Path::new("/proc/sys").join(sysctl)) else {
            continue;
        };
        let value = value.trim();
        let ok = if allowed.is_empty() {
            value.parse::<u64>().is_ok_and(|n| n > 0)
        } else {
            value == allowed
        };
        assert!(
            ok,
            "the kernel forbids unprivileged user namespaces: sysctl {} = {value} (set it to {})",
            sysctl.replace('/', "."),
            if allowed.is_empty() {
                "a positive number"
            } else {
                allowed
            }
        );
    }
}

fn small_config(dir: &Path) -> PathBuf {
    let root = repo_root();
    let text = format!(
        r#"let S = import "{schema}" in
let MiB = S.units.MiB in
let log_route = {{ from = "log.log", interface = "log", rights = 'write }} in
{{
  name = "unprivileged",
  version = "0.1.0",
  compatible = "testudo-test",
  board = import "{board}",
  components = {{
    log = {{
      kind = 'service,
      run = {{ binary = "testudo-log" }},
      provides.log = {{ interface = "log" }},
      limits = {{ memory_bytes = 16 * MiB, cpu_percent = 10, restart = 'always }},
    }},
    storage = {{
      kind = 'service,
      role = 'storage_driver,
      run = {{ binary = "testudo-storage" }},
      provides.storage = {{ interface = "storage" }},
      uses.log = log_route,
      limits = {{ memory_bytes = 32 * MiB, cpu_percent = 20, restart = 'always }},
    }},
    sensor = {{
      kind = 'driver,
      run = {{ binary = "testudo-sensor" }},
      provides.sensor = {{ interface = "sensor" }},
      uses.log = log_route,
      limits = {{ memory_bytes = 16 * MiB, cpu_percent = 10, restart = 'always }},
    }},
    net = {{
      kind = 'driver,
      run = {{ binary = "testudo-net" }},
      devices = {{ network = true }},
      provides.net = {{ interface = "net" }},
      uses.log = log_route,
      limits = {{ memory_bytes = 16 * MiB, cpu_percent = 20, restart = 'always }},
    }},
  }},
  update = {{ boot_tries = 3, allow_downgrade = false, bundle_format = 'verity }},
  cloud = {{ hub = "hub.invalid", device_id = "dev", identity = 'sas }},
}} | S.System
"#,
        schema = root.join("system-config/schema/system.ncl").display(),
        board = root.join("images/boards/qemu-x86_64.ncl").display(),
    );
    let config = dir.join("unprivileged.ncl");
    std::fs::write(&config, text).expect("config");
    config
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
}

fn status_field(pid: &str, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

#[test]
fn a_small_system_runs_sandboxed_as_an_unprivileged_user() {
    require_unprivileged_user_namespaces();
    // SAFETY: geteuid only reads this process's credentials.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test starts `testudo run` as uid {NOBODY} with setpriv, which needs root (CI runs as root)"
    );
    let testudo = Path::new(env!("CARGO_BIN_EXE_testudo"));
    let bin_dir = testudo.parent().expect("bin dir");
    // Everything the unprivileged run reads lives in a world-readable directory: the
    // binaries (hard links, or copies across filesystems) and the plan.
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bins = work.path().join("bin");
    std::fs::create_dir(&bins).expect("bin dir");
    for binary in BINARIES {
        let source = bin_dir.join(binary);
        assert!(
            source.is_file(),
            "{binary} is missing next to testudo: build it with `cargo build -p testudo-drivers` (cargo test --workspace does)"
        );
        let target = bins.join(binary);
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).expect("copy binary");
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary");
    }
    let (plan, _) = testudo_config::load_plan(&small_config(work.path())).expect("config");
    let plan_file = work.path().join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec(&plan).expect("json")).expect("plan");
    std::fs::set_permissions(&plan_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let mut setpriv = Command::new("setpriv");
    setpriv
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--inh-caps=-all", "--"])
        .arg(bins.join("testudo"))
        .arg("run")
        .arg(&plan_file)
        .arg("--report")
        .current_dir(work.path())
        .env("TMPDIR", "/tmp");
    let mut run = RunningTestudo::spawn(
        setpriv,
        "setpriv (Debian package util-linux) must be installed",
    );
    let ready = run.wait_for("out: ready:", Duration::from_secs(60));
    for component in ["log", "storage", "sensor", "net"] {
        assert!(
            ready.split_whitespace().any(|w| w == component),
            "{component} not up: {ready}\n{}",
            run.seen.join("\n")
        );
    }
    // The --report lines follow the ready line: one JSON object per component.
    let mut pids = Vec::new();
    while pids.len() < 4 {
        let line = run
            .next_line(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("missing report lines:\n{}", run.seen.join("\n")));
        let Some(json) = line.strip_prefix("out: {") else {
            continue;
        };
        let report: serde_json::Value =
            serde_json::from_str(&format!("{{{json}")).expect("report JSON");
        let name = report["component"].as_str().expect("component").to_owned();
        let pid = report["pid"].as_i64().expect("pid").to_string();
        pids.push((name, pid));
    }
    let me = "self";
    for (name, pid) in &pids {
        assert_eq!(
            status_field(pid, "Seccomp:"),
            "2",
            "{name}: seccomp filter mode"
        );
        assert_eq!(
            status_field(pid, "NoNewPrivs:"),
            "1",
            "{name}: no_new_privs"
        );
        let uid = status_field(pid, "Uid:");
        assert!(
            uid.split_whitespace().all(|u| u == NOBODY.to_string()),
            "{name} runs as host uid {uid}, not the caller's {NOBODY}"
        );
        assert_ne!(ns(pid, "user"), ns(me, "user"), "{name}: user namespace");
        assert_ne!(ns(pid, "mnt"), ns(me, "mnt"), "{name}: mount namespace");
        assert_ne!(ns(pid, "pid"), ns(me, "pid"), "{name}: pid namespace");
        if name == "net" {
            assert_eq!(ns(pid, "net"), ns(me, "net"), "net owns the host network");
        } else {
            assert_ne!(ns(pid, "net"), ns(me, "net"), "{name}: network namespace");
        }
    }
    // setpriv exec'd testudo: the signal reaches testudo itself.
    run.stop_cleanly();
    let seen = &run.seen;
    eprintln!("{}", seen.join("\n"));
    for (name, pid) in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) left behind"
        );
    }
}
