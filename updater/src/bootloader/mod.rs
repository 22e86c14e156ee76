//! Boot selection backends behind one trait. Each backend gives a different model:
//!
//! * [`grub`]: RAUC's GRUB environment (`ORDER`, `X_OK`, `X_TRY` in a 1024-byte grubenv),
//!   `X_TRY` counting boots: GRUB boots the first slot in ORDER with OK=1 and a try left,
//!   counting it; a booted system that is healthy marks itself good (TRY=0). A slot whose
//!   tries run out before that is abandoned when the other boots
//!   ([`grub::simulate_boot`]). The grubenv is a file ([`grub::GrubBackend`]) or, on a
//!   device, inside the ESP's FAT file system ([`esp`]).
//! * [`custom`]: RAUC's `custom` protocol, an external handler answering `get-primary`,
//!   `set-primary`, `get-state`, `set-state`, `get-current`. The model is the handler's.
//! * [`file`]: a JSON state file with the ChromeOS/Bottlerocket-signpost model (priority,
//!   tries left, successful), for tests and for bootloaders without a RAUC backend.

pub mod custom;
pub mod esp;
pub mod file;
pub mod grub;

use crate::error::{Result, UpdaterError};
use crate::system_conf::{BootloaderKind, SystemConf};

/// Whether the bootloader may boot a slot without a fresh try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootState {
    /// Marked good: boots as long as it is first in line.
    Good,
    /// Not (or no longer) bootable: being written, failed, or its try is used up.
    Bad,
}

impl BootState {
    /// `good` or `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootState::Good => "good",
            BootState::Bad => "bad",
        }
    }
}

/// The operations the installer and `mark` need, on slots named by bootname.
pub trait Bootloader {
    /// Backend name for messages.
    fn name(&self) -> &'static str;
    /// The slot the bootloader will try first, if any is bootable.
    fn primary(&mut self) -> Result<Option<String>>;
    /// Makes `bootname` the first choice with one try (state good, not yet confirmed).
    /// Must be on disk when it returns.
    fn set_primary(&mut self, bootname: &str) -> Result<()>;
    /// The slot's state.
    fn state(&mut self, bootname: &str) -> Result<BootState>;
    /// Sets the slot's state; must be on disk when it returns.
    fn set_state(&mut self, bootname: &str, state: BootState) -> Result<()>;
}

/// The backend configured in `conf`.
pub fn open(conf: &SystemConf) -> Result<Box<dyn Bootloader>> {
    let bootnames: Vec<String> = conf
        .slots
        .iter()
        .filter_map(|s| s.bootname.clone())
        .collect();
    match &conf.bootloader {
        BootloaderKind::Grub => Ok(Box::new(grub::GrubBackend::new(
            conf.grubenv.clone(),
            bootnames,
        ))),
        BootloaderKind::Custom => {
            let handler = conf
                .custom_backend
                .clone()
                .ok_or(UpdaterError::Bootloader {
                    backend: "custom",
                    message: "[handlers] bootloader-custom-backend= is not set".to_string(),
                })?;
            Ok(Box::new(custom::CustomBackend::new(handler)))
        }
        BootloaderKind::File => {
            let path = conf
                .bootloader_statefile
                .clone()
                .ok_or(UpdaterError::Bootloader {
                    backend: "file",
                    message: "[system] bootloader-statefile= is not set".to_string(),
                })?;
            Ok(Box::new(file::FileBackend::new(path)))
        }
        BootloaderKind::Other(name) => Err(UpdaterError::Bootloader {
            backend: "system.conf",
            message: format!("bootloader {name:?} is not supported (grub, custom, file)"),
        }),
    }
}

/// Writes `bytes` to `path` atomically and durably: temporary file in the same directory,
/// fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.new"));
    let werr = crate::error::write_err(&temp);
    let mut file = std::fs::File::create(&temp).map_err(werr)?;
    file.write_all(bytes)
        .map_err(crate::error::write_err(&temp))?;
    file.sync_all().map_err(crate::error::write_err(&temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(crate::error::write_err(path))?;
    if let Ok(dir_handle) = std::fs::File::open(&dir) {
        dir_handle
            .sync_all()
            .map_err(crate::error::write_err(&dir))?;
    }
    Ok(())
}
