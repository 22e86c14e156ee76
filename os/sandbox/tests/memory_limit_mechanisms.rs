//! Promise: a component's memory limit is enforced as cgroup `memory.max` where cgroup v2
//! applies and also as `RLIMIT_AS`, except for a process whose address space must stay
//! unbounded (the WASM host: wasmtime reserves large virtual ranges), which gets
//! `memory.max` only — and no memory limit at all without a cgroup, which its report says.

use std::os::fd::OwnedFd;
use std::path::Path;

use testudo_sandbox::{
    prepare, CgroupPlacement, Controllers, IdMapping, LimitsApplied, ResourceLimits, SandboxSpec,
    Step,
};

const MEMORY: u64 = 80 << 20;

fn spec(root: &Path, address_space_limit: bool, cgroup: bool) -> SandboxSpec {
    let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
    SandboxSpec {
        name: "limited".into(),
        program: "/usr/bin/true".into(),
        args: vec![],
        env: vec![],
        handles: vec![],
        extra_fds: vec![],
        stdio: [null(), null(), null()],
        role: testudo_plan::SandboxRole::Service,
        network: false,
        connect_ports: vec![],
        binds: vec![],
        limits: ResourceLimits {
            memory_bytes: MEMORY,
            address_space_limit,
            max_tasks: 4,
            cpu_percent: 0,
            max_fds: 64,
        },
        ids: IdMapping::Root { host_id: 200_000 },
        root_dir: root.to_owned(),
        cgroup: cgroup.then(|| CgroupPlacement {
            dir: root.join("cgroup/limited"),
            controllers: Controllers {
                memory: true,
                swap: true,
                pids: true,
                cpu: false,
            },
        }),
    }
}

fn rlimit_as(steps: &[Step]) -> Option<u64> {
    steps.iter().find_map(|step| match step {
        Step::SetRlimit { resource, value } if *resource == libc::RLIMIT_AS => Some(*value),
        _ => None,
    })
}

#[test]
fn memory_limits_by_mechanism_and_address_space_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory_max = format!("memory.max={MEMORY}");
    let rlimit = format!("RLIMIT_AS={MEMORY}");

    // A native component with a cgroup: memory.max, and RLIMIT_AS as well.
    let native = prepare(spec(dir.path(), true, true)).expect("prepare");
    assert_eq!(native.limits_applied, LimitsApplied::CgroupV2);
    assert!(
        native.limit_settings.contains(&memory_max),
        "{:?}",
        native.limit_settings
    );
    assert_eq!(rlimit_as(&native.steps), Some(MEMORY));

    // The WASM host with a cgroup: memory.max only.
    let wasm_host = prepare(spec(dir.path(), false, true)).expect("prepare");
    assert!(
        wasm_host.limit_settings.contains(&memory_max),
        "{:?}",
        wasm_host.limit_settings
    );
    assert!(wasm_host
        .limit_settings
        .contains(&"memory.swap.max=0".to_owned()));
    assert_eq!(
        rlimit_as(&wasm_host.steps),
        None,
        "RLIMIT_AS would break wasmtime"
    );

    // Without a cgroup: RLIMIT_AS for the native one, no memory limit for the WASM host, and
    // each report says what applied.
    let native = prepare(spec(dir.path(), true, false)).expect("prepare");
    assert_eq!(native.limits_applied, LimitsApplied::Rlimits);
    assert!(
        native.limit_settings.contains(&rlimit),
        "{:?}",
        native.limit_settings
    );
    assert_eq!(rlimit_as(&native.steps), Some(MEMORY));
    let wasm_host = prepare(spec(dir.path(), false, false)).expect("prepare");
    assert_eq!(rlimit_as(&wasm_host.steps), None);
    assert!(
        !wasm_host
            .limit_settings
            .iter()
            .any(|s| s.contains("RLIMIT_AS") || s.contains("memory")),
        "{:?}",
        wasm_host.limit_settings
    );
}
