//! Promise: init owns the app slots and verifies every deployment before anything changes.
//! Driven through init's `deployment` capability exactly as the agent relays tokens (a
//! session: the token, then — only when init asks — the module's bytes and `fsync`), with
//! real sandboxed WASM hosts: a signed deployment runs its app, under a health check, and
//! is reported; the same token again changes nothing (and a rolled-back one gets the same
//! answer again); an app that crashes at start or does
//! not validate is rolled back to the previous app; a bad signature, an unknown key,
//! another system, a replayed serial, routes beyond the slot, an oversized token, a module of
//! another size or hash, a slot that does not exist are refused with the reason and change nothing; after
//! a restart the deployed app runs again, verified from the data partition; a signed
//! removal empties the slot.
#![allow(clippy::unwrap_used)] // a test: a failed step is a failed test

mod common {
    #[allow(dead_code)] // shared with other tests
    pub mod sandboxed;
    pub mod slots;
}

use std::collections::BTreeMap;

use common::slots::*;
use testudo_deployment::twin::RuntimeStatus;
use testudo_deployment::{Action, Deployment, SessionState, SigningKey};
use testudo_plan::Route;
use testudo_scheme::Rights;

fn refused(states: &[SessionState], reason: &str) {
    match states.last().unwrap() {
        SessionState::Refused { code, description } => {
            assert_eq!(*code, 400);
            assert!(
                description.contains(reason),
                "{description:?} lacks {reason:?}"
            );
        }
        other => panic!("not refused: {states:?} ({other:?})"),
    }
}

#[test]
fn deployments_are_verified_applied_rolled_back_and_survive_a_restart() {
    let mut rig = Rig::new();
    let (v1, v2, crash) = build_apps(rig.dir.path());
    let (v1, v2, crash) = (
        std::fs::read(v1).unwrap(),
        std::fs::read(v2).unwrap(),
        std::fs::read(crash).unwrap(),
    );
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);

    // A signed deployment: the module is asked for, then the app runs under its check.
    let first = rig.sign(&deployment(1, &v1, BTreeMap::new()));
    let states = rig.relay(SLOT, &first, &v1);
    assert!(
        matches!(states[0], SessionState::WantsModule { size, .. } if size == v1.len() as u64),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .any(|s| matches!(s, SessionState::Started { serial: 1, .. })),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&SessionState::Applied { serial: 1 }));
    rig.wait_running(1, &v1);
    assert_eq!(rig.starts(), 1);

    // The same token again (a redelivered twin): nothing happens.
    assert_eq!(
        rig.relay(SLOT, &first, &v1),
        vec![SessionState::Unchanged { serial: 1 }]
    );

    // Bad documents: each refused, with its reason, and version 1 keeps running.
    let other_key = SigningKey::from_bytes(&[9; 32]);
    let unknown =
        testudo_deployment::sign(&deployment(2, &v2, BTreeMap::new()), &other_key).unwrap();
    refused(&rig.relay(SLOT, &unknown, &v2), "key");
    let mut tampered = rig.sign(&deployment(2, &v2, BTreeMap::new()));
    tampered.pop();
    tampered.push('A');
    refused(&rig.relay(SLOT, &tampered, &v2), "signature");
    let mut elsewhere = deployment(2, &v2, BTreeMap::new());
    elsewhere.compatible = "another-system".into();
    refused(
        &rig.relay(SLOT, &rig.sign(&elsewhere), &v2),
        "another-system",
    );
    refused(
        &rig.relay(SLOT, &rig.sign(&deployment(1, &v2, BTreeMap::new())), &v2),
        "serial 1",
    );
    let wider: BTreeMap<String, Route> = [("log".to_owned(), log_route())].into();
    refused(
        &rig.relay(SLOT, &rig.sign(&deployment(2, &v2, wider)), &v2),
        "route `log`",
    );
    let oversized = "a".repeat(testudo_deployment::MAX_TOKEN_BYTES + 1);
    refused(&rig.relay(SLOT, &oversized, &v2), "more than");
    let mut other_slot = deployment(2, &v2, BTreeMap::new());
    other_slot.slot = "no-such-slot".into();
    refused(
        &rig.relay(SLOT, &rig.sign(&other_slot), &v2),
        "no-such-slot",
    );
    assert!(rig.route().open("no-such-slot", Rights::ReadWrite).is_err());
    let mut same_size = v2.clone();
    *same_size.last_mut().unwrap() ^= 1;
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(2, &v2, BTreeMap::new())),
            &same_size,
        ),
        "sha256",
    );
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(3, &v2, BTreeMap::new())),
            &v2[..v2.len() - 10],
        ),
        "the deployment says",
    );
    let mut longer = v2.clone();
    longer.extend_from_slice(b"trailing");
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(4, &v2, BTreeMap::new())),
            &longer,
        ),
        "longer",
    );
    rig.wait_running(1, &v1);
    assert_eq!(rig.starts(), 1, "a refused deployment restarted the app");

    // An app that traps at start, and bytes that are no WebAssembly: both rolled back.
    let crash_token = rig.sign(&deployment(5, &crash, BTreeMap::new()));
    let states = rig.relay(SLOT, &crash_token, &crash);
    match states.last().unwrap() {
        SessionState::RolledBack {
            code: 500,
            description,
        } => {
            assert!(
                description.contains("rolled back to slot-app 1.0.1"),
                "{description}"
            )
        }
        other => panic!("not rolled back: {other:?}"),
    }
    rig.wait_running(1, &v1);
    // Its token again (an agent restarted): the same answer, not a replay, and no restart.
    match &rig.relay(SLOT, &crash_token, &crash)[..] {
        [SessionState::RolledBack {
            code: 500,
            description,
        }] => assert!(
            description.contains("serial 5")
                && description.contains("rolled back to the previous app"),
            "{description}"
        ),
        other => panic!("not the rollback again: {other:?}"),
    }
    let junk = b"\0asm but not really a module".to_vec();
    let states = rig.relay(
        SLOT,
        &rig.sign(&deployment(6, &junk, BTreeMap::new())),
        &junk,
    );
    assert!(
        matches!(
            states.last(),
            Some(SessionState::RolledBack { code: 500, .. })
        ),
        "{states:?}"
    );
    rig.wait_running(1, &v1);
    // Version 1, the crashing app, version 1 again, the junk, version 1 again.
    assert_eq!(rig.starts(), 5);
    let report = &rig.reports()[SLOT];
    assert_eq!(report.last_result.as_ref().unwrap().code, 500, "{report:?}");

    // Version 2 replaces version 1; after a restart it runs again, verified from /data.
    let states = rig.relay(SLOT, &rig.sign(&deployment(7, &v2, BTreeMap::new())), &v2);
    assert_eq!(states.last(), Some(&SessionState::Applied { serial: 7 }));
    rig.wait_running(7, &v2);
    rig.restart();
    rig.wait_running(7, &v2);

    // A signed removal empties the slot, for good.
    let removal = Deployment {
        slot: SLOT.into(),
        compatible: SYSTEM.into(),
        serial: 8,
        action: Action::Remove,
    };
    let states = rig.relay(SLOT, &rig.sign(&removal), &[]);
    assert_eq!(
        states.last(),
        Some(&SessionState::Applied { serial: 8 }),
        "{states:?}"
    );
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);
    rig.restart();
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);
    assert_eq!(
        rig.relay(SLOT, &rig.sign(&removal), &[]),
        vec![SessionState::Unchanged { serial: 8 }]
    );
}
