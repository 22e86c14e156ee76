//! What the updater keeps on the data partition between requests and across reboots: the
//! current OS update workflow and where it stands, and which update each slot was installed
//! from. One JSON file, replaced atomically (written beside, synced, renamed, directory
//! synced): after a power cut it holds the old record or the new one, whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use testudo_os_update::manifest::UpdateId;
use testudo_os_update::update_scheme::UpdatePhase;

use crate::UpdateServiceError;

/// The record's file name in the updater's directory.
pub const RECORD_FILE: &str = "os-update.json";

/// The staging file's name in the updater's directory.
pub const STAGED_FILE: &str = "staged.raucb";

/// Most bytes of a record (a manifest, its signature and a little more).
pub const MAX_RECORD_BYTES: u64 = 256 * 1024;

/// Where a workflow stands, as kept across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// The manifest verified; the file is being downloaded into the staging file.
    Downloading,
    /// The staged file is being verified and written into `slot`.
    Installing {
        /// The slot being written (bootname).
        slot: String,
    },
    /// `slot` was written and made the one to boot next, on trial.
    Installed {
        /// The slot written (bootname).
        slot: String,
    },
    /// The workflow ended (applied, failed or cancelled) and nothing more happens in it.
    Ended {
        /// How it ended (a final [`UpdatePhase`]).
        outcome: UpdatePhase,
    },
}

/// The current workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRecord {
    /// The twin's workflow id.
    pub workflow: String,
    /// The `updateManifest` string as the relay gave it.
    pub manifest: String,
    /// Its signature.
    pub signature: String,
    /// What it installs (from the verified manifest; None when the signature failed).
    pub update_id: Option<UpdateId>,
    /// The file id of the delta bundle being downloaded or installed instead of the full
    /// bundle (a related file of the bundle step's file), if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    /// Where it stands.
    pub stage: Stage,
}

/// Everything the updater keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// The current (or last) workflow.
    pub current: Option<WorkflowRecord>,
    /// For each slot (bootname), the update it was installed from.
    pub installed: BTreeMap<String, UpdateId>,
}

/// The updater's directory on the data partition.
#[derive(Debug, Clone)]
pub struct UpdateDir {
    dir: PathBuf,
}

impl UpdateDir {
    /// The directory `dir` (created when missing).
    pub fn new(dir: &Path) -> Result<UpdateDir, UpdateServiceError> {
        std::fs::create_dir_all(dir).map_err(|source| UpdateServiceError::UpdateDir {
            step: "creating",
            path: dir.to_owned(),
            source,
        })?;
        Ok(UpdateDir {
            dir: dir.to_owned(),
        })
    }

    /// The staging file's path.
    pub fn staged(&self) -> PathBuf {
        self.dir.join(STAGED_FILE)
    }

    /// Bytes in the staging file (0 when there is none).
    pub fn staged_bytes(&self) -> u64 {
        std::fs::metadata(self.staged()).map_or(0, |meta| meta.len())
    }

    /// Removes the staging file, durably.
    pub fn remove_staged(&self) -> Result<(), UpdateServiceError> {
        match std::fs::remove_file(self.staged()) {
            Ok(()) => self.sync(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(UpdateServiceError::UpdateDir {
                step: "removing the staging file in",
                path: self.dir.clone(),
                source,
            }),
        }
    }

    /// Reads the record; a missing file is an empty record. A record that cannot be read
    /// (damaged, or written by a newer updater) is reported and replaced by an empty one:
    /// the twin's goal state is delivered again and the workflow starts over, which is safe.
    pub fn load(&self) -> Result<DeviceRecord, UpdateServiceError> {
        let path = self.dir.join(RECORD_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DeviceRecord::default())
            }
            Err(source) => {
                return Err(UpdateServiceError::UpdateDir {
                    step: "reading the record in",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| UpdateServiceError::UpdateDir {
                step: "reading the record in",
                path: self.dir.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(UpdateServiceError::Record {
                path,
                reason: format!("larger than {MAX_RECORD_BYTES} bytes"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| UpdateServiceError::Record {
            path,
            reason: error.to_string(),
        })
    }

    /// Replaces the record atomically.
    pub fn save(&self, record: &DeviceRecord) -> Result<(), UpdateServiceError> {
        let path = self.dir.join(RECORD_FILE);
        let temp = self.dir.join(format!(".{RECORD_FILE}.new"));
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|error| UpdateServiceError::Record {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|source| UpdateServiceError::UpdateDir {
            step: "writing the record in",
            path: self.dir.clone(),
            source,
        })?;
        self.sync()
    }

    /// Makes the directory's entries durable.
    fn sync(&self) -> Result<(), UpdateServiceError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| UpdateServiceError::UpdateDir {
                step: "syncing",
                path: self.dir.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update_id() -> UpdateId {
        UpdateId {
            provider: "testudo".into(),
            name: "gateway".into(),
            version: "1.1.0".into(),
        }
    }

    #[test]
    fn a_record_survives_a_save_and_load_and_a_missing_one_is_empty() {
        let temp = tempfile::tempdir().unwrap();
        let dir = UpdateDir::new(&temp.path().join("rauc")).unwrap();
        assert_eq!(dir.load().unwrap(), DeviceRecord::default());
        let record = DeviceRecord {
            current: Some(WorkflowRecord {
                workflow: "w1".into(),
                manifest: "{}".into(),
                signature: "a.b.c".into(),
                update_id: Some(update_id()),
                delta: Some("delta-1".into()),
                stage: Stage::Installed { slot: "B".into() },
            }),
            installed: [("A".to_owned(), update_id())].into(),
        };
        dir.save(&record).unwrap();
        assert_eq!(dir.load().unwrap(), record);
        assert!(!temp
            .path()
            .join("rauc")
            .join(".os-update.json.new")
            .exists());
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let temp = tempfile::tempdir().unwrap();
        let dir = UpdateDir::new(temp.path()).unwrap();
        std::fs::write(temp.path().join(RECORD_FILE), b"{\"current\": 5").unwrap();
        let error = dir.load().unwrap_err();
        assert!(
            matches!(error, UpdateServiceError::Record { ref path, .. } if path.ends_with(RECORD_FILE))
        );
    }
}
