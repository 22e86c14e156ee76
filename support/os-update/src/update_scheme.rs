//! The `update` capability the updater component serves
//! (`testudo_plan::interfaces::UPDATE`): what the component that relays OS updates from the
//! cloud (the agent) writes, and what it reads back.
//!
//! The relay decides nothing. It writes an [`UpdateRequest`] per `write` on the root handle
//! and reads an [`UpdateStatus`] per `read`. The updater verifies the manifest's signature
//! and its fit to the device when a workflow is staged, before a byte is downloaded; while
//! the phase is [`UpdatePhase::Downloading`] the relay may open [`STAGED`] (raw, write) and
//! write the file at its offsets, from [`UpdatePhase::Downloading::staged`] on; `install`
//! then makes the updater check the staged file against the signed manifest (size, sha256),
//! the bundle's own CMS signature and verity tree, its `compatible` and version, and only
//! then write the other slot.
//!
//! JSON forms: a request is one object tagged by `request`, e.g.
//! `{"request":"install","workflow":"4d1…"}`; a status is one object and a newline, its phase
//! tagged by `phase`, e.g. `{"workflow":"4d1…","phase":"downloading","size":…,"staged":…}`.

use serde::{Deserialize, Serialize};

use crate::manifest::UpdateId;

/// The path a relay opens with `open_raw(STAGED, Write)` while a file is wanted: a
/// write-only descriptor of the staging file. Bytes land at the offsets written (`pwrite`,
/// or `write` after `lseek`), so a download resumes where the staged bytes end.
pub const STAGED: &str = "staged";

/// Most bytes of one request (a manifest, its signature, and the framing): one message of the
/// scheme's wire (64 KiB) with room to spare; ADU's manifests are a few KiB.
pub const MAX_REQUEST_BYTES: usize = 60 * 1024;

/// The manufacturer this distribution reports among the compatibility properties.
pub const MANUFACTURER: &str = "testudo";

/// The device's compatibility properties (ADU's default `compatPropertyNames`,
/// `manufacturer,model`): [`MANUFACTURER`] and the system's RAUC `compatible` as the model. A
/// manifest names them in its `compatibility`; the updater installs only what matches.
pub fn device_compatibility(compatible: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("manufacturer".to_owned(), MANUFACTURER.to_owned()),
        ("model".to_owned(), compatible.to_owned()),
    ]
    .into()
}

/// Most bytes of one status's JSON form: what a relay reads at most.
pub const MAX_STATUS_BYTES: usize = 16 * 1024;

/// What the relay asks of the updater.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateRequest {
    /// Start a workflow, or resume it when it is the current one (redelivery): the
    /// `updateManifest` string exactly as the twin carried it and its
    /// `updateManifestSignature`. A new workflow id replaces an older one that is not yet
    /// installed.
    Stage {
        /// The twin's `workflow.id`.
        workflow: String,
        /// The `updateManifest` string, byte for byte.
        manifest: String,
        /// The `updateManifestSignature` (compact JWS).
        signature: String,
    },
    /// The staged file is complete: verify it and install it into the other slot.
    Install {
        /// The workflow it belongs to.
        workflow: String,
    },
    /// The update is installed and reported: reboot into it.
    Reboot {
        /// The workflow it belongs to.
        workflow: String,
    },
    /// Give up the workflow before it is installed: the staged file is removed.
    Cancel {
        /// The workflow to cancel.
        workflow: String,
    },
    /// The relay has reached the cloud since this boot: part of a trial slot's health.
    Connected,
}

/// Where the current workflow stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdatePhase {
    /// No workflow, or none since the last one ended and was reported.
    Idle,
    /// The manifest verified and fits: the file is wanted in [`STAGED`].
    Downloading {
        /// The manifest's file id of the bundle (the key of the twin's `fileUrls`).
        file_id: String,
        /// Its size in bytes.
        size: u64,
        /// Bytes already in the staging file (where a resumed download starts).
        staged: u64,
    },
    /// The staged file is being verified and written into the other slot.
    Installing {
        /// Bytes done of the current step.
        done: u64,
        /// Bytes of the current step.
        total: u64,
    },
    /// Written and made the slot to boot next, on trial: waiting for `reboot`.
    Installed {
        /// The slot written (bootname).
        slot: String,
    },
    /// The new slot booted and is not yet confirmed healthy.
    Confirming {
        /// The slot on trial (bootname).
        slot: String,
    },
    /// The update runs and is confirmed (or was installed already).
    Applied,
    /// The workflow failed; nothing was written to the running slot.
    Failed {
        /// The failing step's name (`crate::result::FailedStep::name`).
        step: String,
        /// ADU's `extendedResultCode` for that step.
        extended_result_code: i64,
        /// Why, in one line.
        detail: String,
    },
    /// The workflow was cancelled before it was installed.
    Cancelled,
}

impl UpdatePhase {
    /// Whether the workflow has ended (what the relay reports as ADU's final result).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            UpdatePhase::Applied | UpdatePhase::Failed { .. } | UpdatePhase::Cancelled
        )
    }
}

/// One read of the `update` capability.
// No `deny_unknown_fields` here: serde does not support it beside `flatten` (every status
// would be refused); the flattened phase still refuses fields no phase has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The current workflow's id, if any.
    pub workflow: Option<String>,
    /// What the current workflow installs.
    pub update_id: Option<UpdateId>,
    /// Where it stands.
    #[serde(flatten)]
    pub phase: UpdatePhase,
    /// The update the running slot was installed from (ADU's `installedUpdateId`), once one
    /// was applied on this device.
    pub installed_update_id: Option<UpdateId>,
    /// The slot running now (bootname).
    pub booted_slot: String,
}

impl UpdateStatus {
    /// The JSON form and a newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        line.push('\n');
        line
    }

    /// Parses one read, at most [`MAX_STATUS_BYTES`].
    pub fn parse(bytes: &[u8]) -> Option<UpdateStatus> {
        if bytes.len() > MAX_STATUS_BYTES {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

impl UpdateRequest {
    /// Parses one write, at most [`MAX_REQUEST_BYTES`].
    pub fn parse(bytes: &[u8]) -> Option<UpdateRequest> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    /// The JSON form (what the relay writes).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_or_oversized_ones_are_refused() {
        let stage = UpdateRequest::Stage {
            workflow: "w1".into(),
            manifest: "{\"a\":1}".into(),
            signature: "x.y.z".into(),
        };
        assert_eq!(UpdateRequest::parse(&stage.to_bytes()), Some(stage));
        assert_eq!(
            UpdateRequest::parse(br#"{"request":"connected"}"#),
            Some(UpdateRequest::Connected)
        );
        assert_eq!(UpdateRequest::parse(br#"{"request":"format"}"#), None);
        assert_eq!(
            UpdateRequest::parse(br#"{"request":"install","workflow":"w","extra":1}"#),
            None
        );
        let huge = format!(
            r#"{{"request":"cancel","workflow":"{}"}}"#,
            "w".repeat(MAX_REQUEST_BYTES)
        );
        assert_eq!(UpdateRequest::parse(huge.as_bytes()), None);
    }

    #[test]
    fn a_status_is_one_line_with_its_phase_flattened() {
        let status = UpdateStatus {
            workflow: Some("w1".into()),
            update_id: None,
            phase: UpdatePhase::Downloading {
                file_id: "bundle".into(),
                size: 10,
                staged: 4,
            },
            installed_update_id: None,
            booted_slot: "A".into(),
        };
        let line = status.to_line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["phase"], "downloading");
        assert_eq!(value["staged"], 4);
        assert_eq!(UpdateStatus::parse(line.as_bytes()), Some(status));
        assert!(!UpdatePhase::Installed { slot: "B".into() }.is_final());
        assert!(UpdatePhase::Cancelled.is_final());
    }
}
