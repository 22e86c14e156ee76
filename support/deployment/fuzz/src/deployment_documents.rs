//! Untrusted deployment tokens, as the agent relays them from the twin: every token must be
//! verified or refused without panicking, and whatever verifies must sign again to a token
//! that verifies to the same document, and go through the device checks.
//!
//! Random bytes never carry a valid signature, so the input says which part it is:
//! - `P` then bytes: the payload (the document), in a token correctly signed with the fuzz
//!   key and header, so the document parser is reached;
//! - `H` then bytes: the protected header, over a valid document, signed with the fuzz key;
//! - anything else: the whole token.

use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use testudo_deployment::jws::compact;
use testudo_deployment::{check_against_device, key_id, sign, verify};
use testudo_plan::{AppSlot, Limits, RestartPolicy, Rights, Route};

/// The fuzz key's seed: the corpus's tokens are signed with it.
pub const SEED: [u8; 32] = [0x42; 32];

/// The system the fuzz device is (corpus documents are for it).
pub const COMPATIBLE: &str = "testudo-fuzz";

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let key = SigningKey::from_bytes(&SEED);
    let trusted = [key.verifying_key()];
    let header = format!(
        r#"{{"alg":"EdDSA","kid":"{}","typ":"testudo-deployment+jws"}}"#,
        key_id(&key.verifying_key())
    );
    let token = match data.split_first() {
        Some((b'P', payload)) => compact(header.as_bytes(), payload, &key),
        Some((b'H', header)) => compact(header, VALID_PAYLOAD.as_bytes(), &key),
        _ => match std::str::from_utf8(data) {
            Ok(token) => token.to_owned(),
            Err(_) => return,
        },
    };
    let Ok(verified) = verify(&token, &trusted) else {
        return;
    };
    // What verified is a valid document: it signs, and reads back the same.
    let again = sign(verified.deployment(), &key).expect("a verified document signs again");
    let back = verify(&again, &trusted).expect("a signed document verifies");
    assert_eq!(back.deployment(), verified.deployment());
    let slot = slot();
    for installed in [None, Some(0), Some(u64::MAX)] {
        let _ = check_against_device(&verified, Some(&slot), COMPATIBLE, installed);
        let _ = check_against_device(&verified, None, COMPATIBLE, installed);
    }
    if let Some(release) = verified.deployment().release() {
        let _ = release.app.check_module(data);
    }
}

/// A deployment into the fuzz device's slot.
const VALID_PAYLOAD: &str = r#"{"action":"deploy","format":1,"slot":"app","compatible":"testudo-fuzz","serial":1,"app":{"name":"app","version":"1.0.0","sha256":"0000000000000000000000000000000000000000000000000000000000000000","size":8},"uses":{"log":{"component":"log","capability":"log","interface":"log","rights":"write","allow":[]}}}"#;

/// The fuzz device's one slot: a log route, and a `net` route with an allow list.
fn slot() -> AppSlot {
    let route = |component: &str, interface: &str, rights, allow: &[&str]| Route {
        component: component.into(),
        capability: interface.into(),
        interface: interface.into(),
        rights,
        allow: allow.iter().map(|a| (*a).to_owned()).collect(),
    };
    AppSlot {
        max_uses: BTreeMap::from([
            ("log".to_owned(), route("log", "log", Rights::Write, &[])),
            (
                "net".to_owned(),
                route("net", "net", Rights::ReadWrite, &["example.com:443"]),
            ),
        ]),
        limits: Limits {
            memory_bytes: 1 << 20,
            cpu_percent: 10,
            restart: RestartPolicy::Never,
            max_tasks: 1,
            cpu_time_ms: 10,
        },
        after: Vec::new(),
        initial: None,
    }
}
