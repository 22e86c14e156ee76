//! Promise: init's `power` capability reboots or powers off only on request through a route
//! to it: a write of `reboot` makes the supervisor stop every component in reverse start
//! order and end, reporting who asked; anything else written is refused and changes nothing;
//! a handle without write rights cannot ask.

mod common;

use common::*;
use testudo_init::{EventKind, PowerAction};
use testudo_plan::interfaces::POWER;
use testudo_plan::plan::{ComponentKind, RestartPolicy};
use testudo_scheme::{Errno, Rights, SchemeError};

fn system() -> (testudo_init::RunningSystem, tempfile::TempDir) {
    let sensor = component(ComponentKind::Driver, "testudo-sensor")
        .provides("temperature", "sensor")
        .uses("log", route("log", "log", "log", &[]))
        .restart(RestartPolicy::Always)
        .0;
    let (system, state) = start(plan(vec![("log", log_driver()), ("sensor", sensor)]), None);
    wait(&system, "ready", |e| {
        matches!(e.kind, EventKind::Ready { .. })
    });
    (system, state)
}

#[test]
fn reboot_stops_every_component_in_reverse_order_and_reports_who_asked() {
    let (system, _state) = system();
    let power = system
        .builtin_handle("agent", POWER, Rights::Write)
        .expect("power handle");
    assert_eq!(power.write(b"reboot\n").expect("acknowledged"), 7);
    wait(&system, "shutdown", |e| {
        e.kind == EventKind::ShutdownComplete
    });
    let lines: Vec<String> = system
        .events
        .snapshot()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::PowerRequested { .. }
                    | EventKind::Stopped { .. }
                    | EventKind::ShutdownComplete
            )
        })
        .map(|e| e.line())
        .collect();
    assert_eq!(
        lines,
        [
            "agent: power: reboot requested",
            "sensor: stopped",
            "log: stopped",
            "stopped: all components exited"
        ]
    );
    assert_eq!(
        system.power_request(),
        Some((PowerAction::Reboot, "agent".to_owned()))
    );
    system.wait().expect("the supervisor ended by itself");
}

#[test]
fn an_unknown_request_or_a_read_only_handle_changes_nothing() {
    let (system, _state) = system();
    let power = system
        .builtin_handle("agent", POWER, Rights::Write)
        .expect("power handle");
    let refused = power.write(b"halt").expect_err("not a request");
    assert!(
        matches!(refused, SchemeError::Refused { errno, .. } if errno == Errno::EINVAL),
        "{refused:?}"
    );
    let read_only = system
        .builtin_handle("app", POWER, Rights::Read)
        .expect("read-only power handle");
    assert!(read_only.write(b"poweroff").is_err());
    // A capability init does not have: the handle is refused when it is made or used.
    if let Ok(handle) = system.builtin_handle("app", "launch-missiles", Rights::Write) {
        assert!(handle.write(b"reboot").is_err());
    }
    assert_eq!(system.power_request(), None);
    let status = system.status().expect("status");
    assert!(status.contains("sensor running 0"), "{status}");
    assert!(system
        .events
        .snapshot()
        .iter()
        .any(|e| e.line() == "agent: power: refused \"halt\" (only reboot or poweroff)"));
    system.stop().expect("clean stop");
}
