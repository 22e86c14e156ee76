//! A deployment session between the component that relays a token (the agent) and the one
//! that owns the app slots (init), over init's `deployment` capability
//! (`testudo_plan::interfaces::DEPLOYMENT`): what each `read` of a session handle returns.
//!
//! The relay writes the token; init answers with a [`SessionState`]. Only
//! [`SessionState::WantsModule`] asks the relay for anything (the module's bytes, then
//! `fsync`); every other state is init's account of what it did, which the relay reports to
//! the cloud as it is. A state is final when [`SessionState::is_final`] says so.
//!
//! JSON form: one object per read, `state` first, then the fields of that state, e.g.
//! `{"state":"wants_module","url":"https://…","size":53412,"sha256":"…"}` or
//! `{"state":"refused","code":400,"description":"…"}`.

use serde::{Deserialize, Serialize};

use crate::twin::DesiredStatus;

/// Most bytes of one state's JSON form (a refusal lists every reason; a URL is at most
/// [`crate::document::MAX_URL_BYTES`]): what a relay reads at most.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

/// Where a deployment session stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionState {
    /// Nothing written yet.
    Idle,
    /// The token was refused (signature, key, system, slot, serial, routes, size, hash):
    /// nothing changed on the device. `code` is 400.
    Refused {
        /// `$edgeAgent`'s code: 400.
        code: u16,
        /// Why, in one line.
        description: String,
    },
    /// The token is the one already installed in the slot (a redelivered twin): nothing to do.
    Unchanged {
        /// The slot's installed serial.
        serial: u64,
    },
    /// The token verified; init wants the module: write exactly `size` bytes, then `fsync`.
    WantsModule {
        /// Where the document says the module is.
        url: String,
        /// Its size in bytes.
        size: u64,
        /// Its sha256 (64 lower-case hex digits).
        sha256: String,
    },
    /// The module (or removal) is accepted and the slot is being switched.
    Applying {
        /// The serial being applied.
        serial: u64,
    },
    /// The new app runs and is under its health check.
    Started {
        /// The serial being applied.
        serial: u64,
        /// How long the health check lasts, in milliseconds.
        health_check_ms: u64,
    },
    /// Done: the app passed its health check (or the slot was emptied).
    Applied {
        /// The applied serial.
        serial: u64,
    },
    /// The new app did not start or stay healthy; the previous one runs again (or the slot
    /// is empty again). `code` is 500.
    RolledBack {
        /// `$edgeAgent`'s code: 500.
        code: u16,
        /// Why, in one line.
        description: String,
    },
}

impl SessionState {
    /// Whether nothing more will happen in this session.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            SessionState::Refused { .. }
                | SessionState::Unchanged { .. }
                | SessionState::Applied { .. }
                | SessionState::RolledBack { .. }
        )
    }

    /// How the deployment went, in `$edgeAgent`'s codes (`lastDesiredStatus`): `None` while
    /// it is still under way.
    pub fn desired_status(&self) -> Option<DesiredStatus> {
        let status = |code: u16, description: String| Some(DesiredStatus { code, description });
        match self {
            SessionState::Idle
            | SessionState::WantsModule { .. }
            | SessionState::Applying { .. } => None,
            SessionState::Refused { code, description }
            | SessionState::RolledBack { code, description } => status(*code, description.clone()),
            SessionState::Unchanged { serial } => {
                status(200, format!("serial {serial} is already installed"))
            }
            SessionState::Started {
                serial,
                health_check_ms,
            } => status(
                200,
                format!("serial {serial} running; health check for {health_check_ms} ms"),
            ),
            SessionState::Applied { serial } => status(200, format!("serial {serial} applied")),
        }
    }

    /// The JSON line a session `read` returns.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Reads a state line (untrusted: at most [`MAX_STATE_BYTES`]).
    pub fn from_line(bytes: &[u8]) -> Result<SessionState, serde_json::Error> {
        let bytes = &bytes[..bytes.len().min(MAX_STATE_BYTES)];
        serde_json::from_slice(bytes.trim_ascii_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_line() {
        let states = [
            SessionState::Idle,
            SessionState::Refused {
                code: 400,
                description: "bad signature".into(),
            },
            SessionState::Unchanged { serial: 3 },
            SessionState::WantsModule {
                url: "https://a/b.wasm".into(),
                size: 10,
                sha256: "ab".repeat(32),
            },
            SessionState::Applying { serial: 4 },
            SessionState::Started {
                serial: 4,
                health_check_ms: 2000,
            },
            SessionState::Applied { serial: 4 },
            SessionState::RolledBack {
                code: 500,
                description: "exited with 1".into(),
            },
        ];
        for state in states {
            let line = state.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(SessionState::from_line(&line).unwrap(), state);
        }
    }

    #[test]
    fn only_decided_states_are_final_and_carry_a_status() {
        assert!(!SessionState::Applying { serial: 1 }.is_final());
        assert!(SessionState::Applying { serial: 1 }
            .desired_status()
            .is_none());
        let started = SessionState::Started {
            serial: 1,
            health_check_ms: 5,
        };
        assert!(!started.is_final());
        assert_eq!(started.desired_status().unwrap().code, 200);
        let rolled_back = SessionState::RolledBack {
            code: 500,
            description: "trap".into(),
        };
        assert!(rolled_back.is_final());
        assert_eq!(rolled_back.desired_status().unwrap().code, 500);
    }

    #[test]
    fn a_hostile_line_is_an_error_not_a_state() {
        assert!(SessionState::from_line(b"{\"state\":\"applied\"}").is_err());
        assert!(SessionState::from_line(b"{\"state\":\"applied\",\"serial\":\"7\"}").is_err());
        assert!(SessionState::from_line(b"{\"state\":\"reboot\"}").is_err());
        assert!(SessionState::from_line(&[b'['; 100_000]).is_err());
    }
}
