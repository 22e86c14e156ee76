//! A JSON state file with the ChromeOS / Bottlerocket-signpost model: per slot a `priority`
//! (higher boots first), `tries_left` and `successful`. A slot is bootable when its priority
//! is above 0 and it is successful or has tries left; booting an unconfirmed slot uses a try.
//! Used in tests and as a template for firmware that keeps such bits (GPT attributes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{write_atomically, BootState, Bootloader};
use crate::error::{Result, UpdaterError};

/// One slot's bits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotBits {
    /// Higher boots first; 0 = never.
    pub priority: u8,
    /// Tries before the slot is abandoned.
    pub tries_left: u8,
    /// Confirmed good by the booted system.
    pub successful: bool,
}

/// The whole file: bootname -> bits (sorted: deterministic output).
pub type State = BTreeMap<String, SlotBits>;

fn bad(message: impl Into<String>) -> UpdaterError {
    UpdaterError::Bootloader {
        backend: "file",
        message: message.into(),
    }
}

/// The file backend.
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
}

impl FileBackend {
    /// Backend on `path`.
    pub fn new(path: PathBuf) -> Self {
        FileBackend { path }
    }

    /// Reads the state.
    pub fn load(&self) -> Result<State> {
        let text =
            std::fs::read_to_string(&self.path).map_err(crate::error::read_err(&self.path))?;
        serde_json::from_str(&text).map_err(|source| UpdaterError::ParseBootState {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the state atomically.
    pub fn store(&self, state: &State) -> Result<()> {
        let text = serde_json::to_string_pretty(state).map_err(|source| {
            UpdaterError::RenderBootState {
                path: self.path.clone(),
                source,
            }
        })?;
        write_atomically(&self.path, text.as_bytes())
    }
}

fn bootable(bits: &SlotBits) -> bool {
    bits.priority > 0 && (bits.successful || bits.tries_left > 0)
}

/// What firmware following this model does at power-on: boots the bootable slot with the
/// highest priority, using one of its tries if it is not yet successful.
pub fn simulate_boot(state: &mut State) -> Option<String> {
    let name = state
        .iter()
        .filter(|(_, bits)| bootable(bits))
        .max_by_key(|(_, bits)| bits.priority)
        .map(|(name, _)| name.clone())?;
    if let Some(bits) = state.get_mut(&name) {
        if !bits.successful {
            bits.tries_left = bits.tries_left.saturating_sub(1);
        }
    }
    Some(name)
}

impl Bootloader for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }

    fn primary(&mut self) -> Result<Option<String>> {
        let state = self.load()?;
        Ok(state
            .iter()
            .filter(|(_, bits)| bootable(bits))
            .max_by_key(|(_, bits)| bits.priority)
            .map(|(name, _)| name.clone()))
    }

    fn set_primary(&mut self, bootname: &str) -> Result<()> {
        let mut state = self.load()?;
        let top = state.values().map(|b| b.priority).max().unwrap_or(0);
        for (name, bits) in state.iter_mut() {
            if name != bootname && bits.priority > 1 {
                bits.priority = 1;
            }
        }
        let bits = state.entry(bootname.to_string()).or_default();
        bits.priority = top.clamp(1, 14) + 1;
        bits.tries_left = 1;
        bits.successful = false;
        self.store(&state)
    }

    fn state(&mut self, bootname: &str) -> Result<BootState> {
        let state = self.load()?;
        let bits = state
            .get(bootname)
            .ok_or_else(|| bad(format!("unknown slot {bootname:?}")))?;
        Ok(if bootable(bits) {
            BootState::Good
        } else {
            BootState::Bad
        })
    }

    fn set_state(&mut self, bootname: &str, boot_state: BootState) -> Result<()> {
        let mut state = self.load()?;
        let bits = state.entry(bootname.to_string()).or_default();
        match boot_state {
            BootState::Good => {
                bits.successful = true;
                bits.tries_left = 0;
                if bits.priority == 0 {
                    bits.priority = 1;
                }
            }
            BootState::Bad => {
                bits.successful = false;
                bits.tries_left = 0;
                bits.priority = 0;
            }
        }
        self.store(&state)
    }
}
