//! Target `session_states`: any bytes read from a deployment session (what init answers the
//! agent, `testudo_deployment::SessionState`) through `SessionState::from_line`. Nothing may
//! panic, and a state read is written back as the same state.

use testudo_deployment::SessionState;

/// The target's body.
pub fn fuzz(data: &[u8]) {
    if let Ok(state) = SessionState::from_line(data) {
        let again = SessionState::from_line(&state.to_line());
        assert_eq!(again.ok(), Some(state.clone()));
        if state.is_final() && !matches!(state, SessionState::Unchanged { .. }) {
            assert!(state.desired_status().is_some());
        }
    }
}
