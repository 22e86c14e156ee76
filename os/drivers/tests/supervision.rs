//! Promise: a crashing component is restarted with growing backoff; a crash loop marks it
//! failed (reported in events and the status scheme); when a dependency dies, its dependents
//! are stopped and started again after it, in dependency order.

mod common;

use std::time::Duration;

use common::*;
use testudo_init::{Backoff, EventKind};
use testudo_plan::plan::{ComponentKind, RestartPolicy};

#[test]
fn crash_restarts_with_backoff_then_crash_loop_fails() {
    let crasher = component(ComponentKind::Service, "testudo-escape-probe")
        .args(&["crash", "3"])
        .uses("log", route("log", "log", "log", &[]))
        .restart(RestartPolicy::OnFailure)
        .0;
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_secs(1),
        window: Duration::from_secs(30),
        max_restarts: 3,
    };
    let (system, _state) = start(
        plan(vec![("log", log_driver()), ("crasher", crasher)]),
        Some(backoff),
    );
    let failed = wait(&system, "crash loop", |e| {
        e.component == "crasher" && matches!(e.kind, EventKind::Failed { .. })
    });
    assert!(
        failed.line().contains("crash loop: 4 restarts"),
        "{}",
        failed.line()
    );
    let events = system.events.snapshot();
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Restarting { delay_ms, .. } if e.component == "crasher" => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [20, 40, 80], "backoff doubles");
    let exits = events
        .iter()
        .filter(|e| e.component == "crasher" && e.kind == EventKind::Exited { code: 3 })
        .count();
    assert_eq!(exits, 4, "started 1 + 3 restarts, each exited with 3");
    let status = system.status().expect("status");
    assert!(status.contains("crasher failed 3"), "{status}");
    assert!(status.contains("log running 0"), "{status}");
    system.stop().expect("clean stop");
}

#[test]
fn dependents_restart_after_their_dependency_in_order() {
    let sensor = component(ComponentKind::Driver, "testudo-sensor")
        .provides("temperature", "sensor")
        .uses("log", route("log", "log", "log", &[]))
        .restart(RestartPolicy::Always)
        .0;
    let app = component(ComponentKind::Service, "testudo-escape-probe")
        .args(&["hold"])
        .uses("log", route("log", "log", "log", &[]))
        .uses("sensor", route("sensor", "temperature", "sensor", &[]))
        .restart(RestartPolicy::Always)
        .0;
    let (system, _state) = start(
        plan(vec![
            ("log", log_driver()),
            ("sensor", sensor),
            ("app", app),
        ]),
        None,
    );
    wait(&system, "ready", |e| {
        matches!(e.kind, EventKind::Ready { .. })
    });
    let log_pid = started_pid(&system, "log");
    let before = system.events.snapshot().len();
    // SAFETY: kills the log driver process this test's supervisor started.
    assert_eq!(unsafe { libc::kill(log_pid, libc::SIGKILL) }, 0);
    wait_count(&system, "app started a second time", 2, |e| {
        e.component == "app" && matches!(e.kind, EventKind::Started { .. })
    });
    let after: Vec<String> = system.events.snapshot()[before..]
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Output { .. }))
        .map(|e| e.line())
        .collect();
    let position = |needle: &str| {
        after
            .iter()
            .position(|line| line.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{}", after.join("\n")))
    };
    let killed = position("log: killed by signal 9");
    let app_stopped = position("app: stopped while its dependency log restarts");
    let sensor_stopped = position("sensor: stopped while its dependency log restarts");
    let log_started = position("log: started");
    let sensor_started = position("sensor: started");
    let app_started = position("app: started");
    assert!(
        killed < app_stopped && app_stopped < sensor_stopped,
        "dependents stop, last first:\n{}",
        after.join("\n")
    );
    assert!(sensor_stopped < log_started, "{}", after.join("\n"));
    assert!(
        log_started < sensor_started && sensor_started < app_started,
        "restart in dependency order:\n{}",
        after.join("\n")
    );
    system.stop().expect("clean stop");
}
