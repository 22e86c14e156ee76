//! The state directory: every file written atomically (temp file, fsync, rename).
//!
//! Layout of `DIR`:
//! - `ca.pem` / `ca.key.pem` — the local CA clients trust; `server.pem` / `server.key.pem` /
//!   `server.host` — the TLS server certificate for the hub host name;
//! - `hub.json` — hub identity: host name, service policy key, DPS ID scope and enrollments;
//! - `devices/{id}.json` — one registry entry with its twin per device;
//! - `telemetry.jsonl` — captured device-to-cloud messages, one JSON object per line;
//! - `faults.json` — the fault-injection settings in force (see [`crate::faults`]);
//! - `endpoint.json` — ports of the running emulator (removed on clean shutdown).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::HubError;

/// Handle on the state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: &Path) -> Result<Self, HubError> {
        for path in [dir.to_path_buf(), dir.join("devices")] {
            fs::create_dir_all(&path)
                .map_err(|source| HubError::CreateStateDir { path, source })?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Path of a device's file (ids are validated to be safe file names).
    pub fn device_path(&self, id: &str) -> PathBuf {
        self.dir.join("devices").join(format!("{id}.json"))
    }

    /// Reads and parses a JSON file; `None` if it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, HubError> {
        match fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| HubError::ParseState {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(HubError::ReadState {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Ids of every stored device, sorted.
    pub fn device_ids(&self) -> Result<Vec<String>, HubError> {
        let path = self.dir.join("devices");
        let entries = fs::read_dir(&path).map_err(|source| HubError::ReadState {
            path: path.clone(),
            source,
        })?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| HubError::ReadState {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|name| name.strip_suffix(".json")) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Appends lines to a file (used for the telemetry log), fsyncing afterwards.
    pub fn append(&self, path: &Path, bytes: &[u8]) -> Result<(), HubError> {
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            file.write_all(bytes)?;
            file.sync_data()
        };
        write().map_err(|source| HubError::WriteState {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Removes a file; a missing file is fine.
    pub fn remove(&self, path: &Path) -> Result<(), HubError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(HubError::WriteState {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Writes `bytes` to `path` atomically: a sibling temp file, fsync, rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| HubError::WriteState {
        path: path.to_path_buf(),
        source,
    })
}
