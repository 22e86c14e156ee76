//! Plan JSON read on the device (from the rootfs) and by the image builder: arbitrary bytes
//! must never panic, and any plan that parses must re-serialise canonically to bytes that
//! parse back to the same plan with the same hash.

use testudo_config::Plan;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let Ok(plan) = Plan::from_bytes(data) else {
        return;
    };
    let canonical = plan.to_canonical_json().expect("a parsed plan serialises");
    let again = Plan::from_bytes(canonical.as_bytes()).expect("canonical JSON parses");
    assert_eq!(plan, again);
    assert_eq!(again.to_canonical_json().expect("serialises"), canonical);
    assert_eq!(plan.content_hash().ok(), again.content_hash().ok());
    let _ = testudo_config::audit::audit(&plan);
    let _ = testudo_config::graph::to_svg(&plan);
}
