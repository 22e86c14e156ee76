//! Promise: every component process runs with a seccomp filter, no_new_privs and its own
//! user, mount, pid, ipc, uts and net namespaces — except the network-owning driver, which
//! keeps the host net namespace — as the kernel shows in /proc/PID/status and /proc/PID/ns;
//! native components allow fewer than 40 syscalls; the runtime report says what it holds.

mod common;

use common::*;
use testudo_init::EventKind;
use testudo_plan::plan::{ComponentKind, RestartPolicy};
use testudo_plan::SandboxRole;
use testudo_sandbox::proc_enforcement;

#[test]
fn enforcement_is_visible_in_proc() {
    let components = vec![
        ("log", log_driver()),
        (
            "net",
            component(ComponentKind::Driver, "testudo-net")
                .provides("egress", "net")
                .network()
                .restart(RestartPolicy::Always)
                .0,
        ),
        (
            "storage",
            component(ComponentKind::Driver, "testudo-storage")
                .role(SandboxRole::StorageDriver)
                .provides("files", "storage")
                .restart(RestartPolicy::Always)
                .0,
        ),
        (
            "sensor",
            component(ComponentKind::Driver, "testudo-sensor")
                .provides("temperature", "sensor")
                .restart(RestartPolicy::Always)
                .0,
        ),
        (
            "app",
            component(ComponentKind::Service, "testudo-escape-probe")
                .args(&["hold"])
                .uses("log", route("log", "log", "log", &[]))
                .uses("files", route("storage", "files", "storage", &[]))
                .uses("egress", route("net", "egress", "net", &["127.0.0.1:8883"]))
                .restart(RestartPolicy::Always)
                .0,
        ),
    ];
    let (system, _state) = start(plan(components), None);
    wait(&system, "ready", |e| {
        matches!(e.kind, EventKind::Ready { .. })
    });
    output_line(&system, "log", "[app] escape-probe hold: up");
    for name in ["log", "net", "storage", "sensor", "app"] {
        let event = wait(&system, name, |e| {
            e.component == name && matches!(e.kind, EventKind::Started { .. })
        });
        let EventKind::Started { pid, report } = event.kind else {
            unreachable!()
        };
        let seen = proc_enforcement(pid).expect("read /proc/PID");
        assert_eq!(seen.seccomp_mode, 2, "{name}: seccomp filter mode");
        assert!(seen.no_new_privs, "{name}: no_new_privs");
        assert!(
            seen.own_user_ns && seen.own_mount_ns && seen.own_pid_ns,
            "{name}: {seen:?}"
        );
        assert!(seen.own_ipc_ns && seen.own_uts_ns, "{name}: {seen:?}");
        assert_eq!(
            seen.own_net_ns,
            name != "net",
            "{name}: only the net driver shares the host network"
        );
        assert!(
            report.syscalls_allowed < 42,
            "{name} allows {} syscalls",
            report.syscalls_allowed
        );
        assert!(report.syscalls_allowed < report.syscalls_total);
        assert_eq!(
            report.enforcement,
            Some(seen),
            "{name}: init's report matches /proc"
        );
        assert!(
            report
                .paths_visible
                .iter()
                .any(|p| p.starts_with("/bin/testudo-")),
            "{name}: {:?}",
            report.paths_visible
        );
        assert!(
            !report
                .paths_visible
                .iter()
                .any(|p| p.starts_with("/etc") || p.starts_with("/home")),
            "{name}: {:?}",
            report.paths_visible
        );
        if name == "app" {
            assert_eq!(report.handles, ["egress", "files", "log"]);
        }
        if name == "storage" {
            assert!(
                report.paths_visible.contains(&"/data (rw)".to_owned()),
                "{:?}",
                report.paths_visible
            );
        }
    }
    let pids: Vec<i32> = system
        .events
        .snapshot()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Started { pid, .. } => Some(pid),
            _ => None,
        })
        .collect();
    system.stop().expect("clean stop");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left behind"
        );
    }
}
