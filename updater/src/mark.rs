//! `mark-good`, `mark-bad`, `mark-active` on the booted slot, the other one, or a named slot,
//! and the status summary.

use crate::bootloader::{BootState, Bootloader};
use crate::error::Result;
use crate::slot;
use crate::status_file::{SlotStatus, StatusFile};
use crate::system_conf::{SlotConf, SystemConf};

/// Which slot a mark applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkTarget {
    /// The running slot.
    Booted,
    /// The other bootable slot of the booted class.
    Other,
    /// A bootname or slot name.
    Named(String),
}

impl std::str::FromStr for MarkTarget {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "booted" => MarkTarget::Booted,
            "other" => MarkTarget::Other,
            name => MarkTarget::Named(name.to_string()),
        })
    }
}

/// What to mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Confirm: keeps booting.
    Good,
    /// Abandon: not booted again.
    Bad,
    /// Make primary with one try.
    Active,
}

/// Applies `mark` to `target`; returns the slot's name.
pub fn mark(
    conf: &SystemConf,
    booted: &SlotConf,
    bootloader: &mut dyn Bootloader,
    mark: Mark,
    target: &MarkTarget,
) -> Result<String> {
    let slot = match target {
        MarkTarget::Booted => booted,
        MarkTarget::Other => slot::other_bootable(conf, booted)?,
        MarkTarget::Named(name) => slot::by_name(conf, name)?,
    };
    let bootname = slot
        .bootname
        .clone()
        .ok_or_else(|| crate::UpdaterError::TargetSlot {
            message: format!("slot {} has no bootname", slot.name()),
        })?;
    match mark {
        Mark::Good => bootloader.set_state(&bootname, BootState::Good)?,
        Mark::Bad => bootloader.set_state(&bootname, BootState::Bad)?,
        Mark::Active => bootloader.set_primary(&bootname)?,
    }
    Ok(slot.name())
}

/// One slot in the status summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotReport {
    /// `class.index`.
    pub name: String,
    /// Bootname.
    pub bootname: Option<String>,
    /// Device.
    pub device: String,
    /// Bootloader state (None for slots without bootname).
    pub boot_state: Option<BootState>,
    /// From the status file.
    pub status: SlotStatus,
}

/// The status summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemReport {
    /// system.conf compatible.
    pub compatible: String,
    /// Bootloader backend.
    pub bootloader: String,
    /// The running slot.
    pub booted: String,
    /// Bootloader's first choice.
    pub primary: Option<String>,
    /// Every slot, in system.conf order.
    pub slots: Vec<SlotReport>,
}

/// Collects the status summary.
pub fn report(
    conf: &SystemConf,
    booted: &SlotConf,
    bootloader: &mut dyn Bootloader,
) -> Result<SystemReport> {
    let status = StatusFile::load(&conf.status_path()?)?;
    let mut slots = Vec::new();
    for slot in &conf.slots {
        let boot_state = match &slot.bootname {
            Some(name) => Some(bootloader.state(name)?),
            None => None,
        };
        slots.push(SlotReport {
            name: slot.name(),
            bootname: slot.bootname.clone(),
            device: slot.device.display().to_string(),
            boot_state,
            status: status.get(&slot.name()),
        });
    }
    Ok(SystemReport {
        compatible: conf.compatible.clone(),
        bootloader: bootloader.name().to_string(),
        booted: booted.name(),
        primary: bootloader.primary()?,
        slots,
    })
}
