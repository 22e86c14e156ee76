//! The slot status file, in RAUC's central status format (`[slot.CLASS.N]` groups with
//! `bundle.compatible=`, `bundle.version=`, `status=`, `sha256=`, `size=`,
//! `installed.count=`). No timestamps are written. Saved atomically.

use std::path::{Path, PathBuf};

use crate::bootloader::write_atomically;
use crate::error::{Result, UpdaterError};
use crate::ini::{Group, KeyFile};

/// What is known about one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlotStatus {
    /// `bundle.compatible`.
    pub bundle_compatible: Option<String>,
    /// `bundle.version`.
    pub bundle_version: Option<String>,
    /// `bundle.description`.
    pub bundle_description: Option<String>,
    /// `bundle.build`.
    pub bundle_build: Option<String>,
    /// `status`: `ok`, `installing` or `failed`.
    pub status: Option<String>,
    /// `sha256` of the installed image.
    pub sha256: Option<String>,
    /// `size` of the installed image.
    pub size: Option<u64>,
    /// `installed.count`.
    pub installed_count: u64,
}

/// The whole file, slots in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFile {
    /// Where it is stored.
    pub path: PathBuf,
    /// `(slot name, status)` sorted by name.
    pub slots: Vec<(String, SlotStatus)>,
}

impl StatusFile {
    /// Loads `path`; a missing file is an empty status.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StatusFile {
                    path: path.to_path_buf(),
                    slots: Vec::new(),
                })
            }
            Err(source) => {
                return Err(UpdaterError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let file = KeyFile::parse(&text, "slot status file")?;
        let mut slots = Vec::new();
        for group in &file.groups {
            let Some(name) = group.name.strip_prefix("slot.") else {
                continue;
            };
            let get = |k: &str| group.get(k).map(str::to_string);
            slots.push((
                name.to_string(),
                SlotStatus {
                    bundle_compatible: get("bundle.compatible"),
                    bundle_version: get("bundle.version"),
                    bundle_description: get("bundle.description"),
                    bundle_build: get("bundle.build"),
                    status: get("status"),
                    sha256: get("sha256"),
                    size: group.get("size").and_then(|s| s.parse().ok()),
                    installed_count: group
                        .get("installed.count")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                },
            ));
        }
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(StatusFile {
            path: path.to_path_buf(),
            slots,
        })
    }

    /// The status of `slot` (default when unknown).
    pub fn get(&self, slot: &str) -> SlotStatus {
        self.slots
            .iter()
            .find(|(name, _)| name == slot)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Replaces the status of `slot`.
    pub fn set(&mut self, slot: &str, status: SlotStatus) {
        match self.slots.iter_mut().find(|(name, _)| name == slot) {
            Some(entry) => entry.1 = status,
            None => {
                self.slots.push((slot.to_string(), status));
                self.slots.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
    }

    /// Renders the file.
    pub fn render(&self) -> String {
        let mut file = KeyFile::default();
        for (name, status) in &self.slots {
            let mut group = Group::new(format!("slot.{name}"));
            group.set_opt("bundle.compatible", status.bundle_compatible.as_deref());
            group.set_opt("bundle.version", status.bundle_version.as_deref());
            group.set_opt("bundle.description", status.bundle_description.as_deref());
            group.set_opt("bundle.build", status.bundle_build.as_deref());
            group.set_opt("status", status.status.as_deref());
            group.set_opt("sha256", status.sha256.as_deref());
            group.set_opt("size", status.size.map(|s| s.to_string()).as_deref());
            group.set("installed.count", status.installed_count.to_string());
            file.groups.push(group);
        }
        file.render()
    }

    /// Writes the file atomically (parent directory created if missing).
    pub fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(crate::error::write_err(dir))?;
            }
        }
        write_atomically(&self.path, self.render().as_bytes())
    }
}
