//! Target `slot_states`: any bytes as an app slot's `state.json` on the data partition
//! (`testudo_init::slots::parse_slot_file`), and every token in a state read verified as init
//! does at boot. Nothing may panic; a state read is written back as the same state.

use testudo_init::slots::{parse_slot_file, SlotFile};

/// The target's body.
pub fn fuzz(data: &[u8]) {
    let Ok(file) = parse_slot_file(data) else {
        return;
    };
    let again: SlotFile =
        serde_json::from_slice(&serde_json::to_vec(&file).unwrap_or_default()).unwrap_or_default();
    assert_eq!(again, file);
    let key = testudo_deployment::SigningKey::from_bytes(&[7; 32]).verifying_key();
    for token in [&file.current, &file.previous].into_iter().flatten() {
        let _ = testudo_deployment::verify(token, &[key]);
    }
}
