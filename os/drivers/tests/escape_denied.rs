//! Promise: escapes tried by a real process inside the sandbox are all denied, each denial is
//! logged (by the component's log handle, the net driver, or init for seccomp kills), and
//! the rest of the system keeps running.

mod common;

use std::net::TcpListener;

use common::*;
use testudo_init::EventKind;
use testudo_plan::plan::ComponentKind;

/// (component name, probe args, how the denial shows: `Some(text)` = the probe logs
/// `denied` with this text via the log driver, `None` = init logs a seccomp kill).
fn attempts(listener_port: u16) -> Vec<(String, Vec<String>, Option<&'static str>)> {
    let mut list: Vec<(String, Vec<String>, Option<&'static str>)> = vec![
        (
            "open-shadow".into(),
            vec!["open-path".into(), "/etc/shadow".into()],
            Some("open /etc/shadow"),
        ),
        (
            "open-host-root".into(),
            vec!["open-path".into(), "/.old/etc/passwd".into()],
            Some("open /.old/etc/passwd"),
        ),
        (
            "connect-unrouted".into(),
            vec![
                "connect-via-net".into(),
                format!("127.0.0.1:{listener_port}"),
            ],
            Some("net refused"),
        ),
        (
            "connect-direct".into(),
            vec![
                "connect-direct".into(),
                format!("127.0.0.1:{listener_port}"),
            ],
            None,
        ),
        ("signal".into(), vec!["signal".into()], None),
        (
            "read-memory".into(),
            vec!["read-memory".into()],
            Some("/proc/1/mem"),
        ),
        ("fork-bomb".into(), vec!["fork-bomb".into()], None),
        (
            "memory".into(),
            vec!["memory".into()],
            Some("allocation refused"),
        ),
    ];
    for syscall in [
        "ptrace",
        "mount",
        "kexec_load",
        "bpf",
        "init_module",
        "finit_module",
    ] {
        list.push((
            format!("syscall-{}", syscall.replace('_', "-")),
            vec!["syscall".into(), syscall.into()],
            None,
        ));
    }
    list
}

#[test]
fn every_escape_is_denied_logged_and_harmless() {
    // A real listener the probes try to reach: only "127.0.0.1:9" is routed, never this one.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let attempts = attempts(port);
    let mut components = vec![
        ("log", log_driver()),
        (
            "net",
            component(ComponentKind::Driver, "testudo-net")
                .provides("egress", "net")
                .network()
                .restart(testudo_plan::plan::RestartPolicy::Always)
                .0,
        ),
        (
            "sensor",
            component(ComponentKind::Driver, "testudo-sensor")
                .provides("temperature", "sensor")
                .restart(testudo_plan::plan::RestartPolicy::Always)
                .0,
        ),
    ];
    for (name, args, _) in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let probe = component(ComponentKind::Service, "testudo-escape-probe")
            .args(&args)
            .uses("log", route("log", "log", "log", &[]))
            .uses("net", route("net", "egress", "net", &["127.0.0.1:9"]))
            .memory(64 << 20)
            .0;
        components.push((name.as_str(), probe));
    }
    let (system, _state) = start(plan(components), None);
    wait(&system, "ready", |e| {
        matches!(e.kind, EventKind::Ready { .. })
    });

    for (name, _, logged) in &attempts {
        match logged {
            Some(text) => {
                let line = output_line(&system, "log", &format!("[{name}] escape-probe"));
                assert!(
                    line.contains("denied") && line.contains(text),
                    "{name}: {line}"
                );
            }
            None => {
                let event = wait(&system, &format!("{name} killed by seccomp"), |e| {
                    e.component == *name && matches!(e.kind, EventKind::SeccompDenied { .. })
                });
                assert!(
                    event.line().contains("denied: killed by seccomp"),
                    "{}",
                    event.line()
                );
            }
        }
    }
    // The net driver logged the refused egress itself.
    let refusal = output_line(&system, "net", "denied:");
    assert!(
        refusal.contains(&format!(
            "connect-unrouted may not connect to 127.0.0.1:{port}"
        )),
        "{refusal}"
    );
    // Nothing escaped, the listener saw no connection, and the drivers kept running.
    let events = system.events.snapshot();
    assert!(
        !events.iter().any(|e| e.line().contains("ESCAPED")),
        "an escape succeeded"
    );
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(
        listener.accept().is_err(),
        "something connected to the listener"
    );
    let status = system.status().expect("status scheme");
    for driver in ["log", "net", "sensor"] {
        assert!(
            status.contains(&format!("{driver} running 0")),
            "{driver} not running untouched:\n{status}"
        );
    }
    system.stop().expect("clean stop");
}

#[test]
fn a_component_holds_exactly_its_routed_handles() {
    let probe = component(ComponentKind::Service, "testudo-escape-probe")
        .args(&["list-fds"])
        .uses("log", route("log", "log", "log", &[]))
        .0;
    let (system, _state) = start(plan(vec![("log", log_driver()), ("probe", probe)]), None);
    let line = output_line(&system, "log", "[probe] escape-probe list-fds");
    assert!(line.ends_with("list-fds: 0,1,2,3"), "{line}");
    system.stop().expect("clean stop");
}
