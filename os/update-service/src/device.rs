//! The real [`BootHost`]: init's `status` and `power` through the routed scheme handles, and
//! the grubenv inside the ESP through the partition this component holds (shared with the
//! installs, [`SharedGrub`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testudo_plan::interfaces;
use testudo_scheme::Handle;
use testudo_updater::bootloader::esp::EspGrubEnv;
use testudo_updater::bootloader::grub::{GrubBackend, GrubEnv};
use testudo_updater::bootloader::{BootState, Bootloader};

use crate::confirm::BootHost;
use crate::scheme::PowerControl;
use crate::workflow::{lock_grub, SharedGrub};
use crate::UpdateServiceError;

/// The most bytes one read of init's status may take (a status line per component).
pub const STATUS_LIMIT: usize = 256 * 1024;

/// The device as the updater component sees it.
#[derive(Debug)]
pub struct DeviceHost {
    status: Handle,
    power: Arc<InitPower>,
    grub: SharedGrub,
    connected: Arc<AtomicBool>,
}

/// Init's `power` capability.
#[derive(Debug)]
pub struct InitPower(Handle);

impl PowerControl for InitPower {
    fn reboot(&self) -> Result<(), UpdateServiceError> {
        self.0
            .write(b"reboot\n")
            .map(drop)
            .map_err(|source| UpdateServiceError::Reboot { source })
    }
}

/// The routes init passed: `status` and `power`.
#[derive(Debug)]
pub struct Routes {
    /// Init's status.
    pub status: Handle,
    /// Init's power control.
    pub power: Arc<InitPower>,
}

impl Routes {
    /// Takes the routed handles.
    pub fn take() -> Result<Routes, UpdateServiceError> {
        let mut handles =
            testudo_scheme::granted_handles().map_err(|source| UpdateServiceError::Handle {
                route: "(all)",
                source,
            })?;
        let mut take = |route: &'static str| {
            handles
                .take(route)
                .map_err(|source| UpdateServiceError::Handle { route, source })
        };
        let status = take(interfaces::STATUS)?;
        let power = Arc::new(InitPower(take(interfaces::POWER)?));
        Ok(Routes { status, power })
    }
}

/// The grubenv on the ESP at `esp`, shared.
pub fn grub_on_esp(esp: &Path, bootnames: Vec<String>) -> SharedGrub {
    Arc::new(Mutex::new(GrubBackend::on_esp(
        EspGrubEnv::new(esp, testudo_plan::layout::esp::GRUBENV),
        bootnames,
    )))
}

impl DeviceHost {
    /// The host over init's `status`, `power`, the shared grubenv and the relay's word that it
    /// reached the cloud.
    pub fn new(
        status: Handle,
        power: Arc<InitPower>,
        grub: SharedGrub,
        connected: Arc<AtomicBool>,
    ) -> DeviceHost {
        DeviceHost {
            status,
            power,
            grub,
            connected,
        }
    }
}

impl BootHost for DeviceHost {
    fn status(&mut self) -> Result<String, UpdateServiceError> {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .status
                .read(&mut buf)
                .map_err(|source| UpdateServiceError::ReadStatus { source })?;
            if n == 0 {
                break;
            }
            if text.len() + n > STATUS_LIMIT {
                return Err(UpdateServiceError::StatusLine {
                    line: format!("(more than {STATUS_LIMIT} bytes of status)"),
                });
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(text).map_err(|error| UpdateServiceError::StatusLine {
            line: String::from_utf8_lossy(error.as_bytes()).into_owned(),
        })
    }

    fn boot_state(&mut self) -> Result<GrubEnv, UpdateServiceError> {
        lock_grub(&self.grub)
            .load()
            .map_err(|source| UpdateServiceError::BootState {
                step: "reading",
                source,
            })
    }

    fn mark_good(&mut self, slot: &str) -> Result<(), UpdateServiceError> {
        lock_grub(&self.grub)
            .set_state(slot, BootState::Good)
            .map_err(|source| UpdateServiceError::BootState {
                step: "marking the booted slot good in",
                source,
            })
    }

    fn reboot(&mut self) -> Result<(), UpdateServiceError> {
        self.power.reboot()
    }

    fn connected(&mut self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn elapsed(&self) -> Duration {
        since_boot()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn say(&mut self, line: &str) {
        println!("updater: {line}");
    }
}

/// Time since the device booted (`CLOCK_BOOTTIME`): the same for an updater restarted by
/// init, so a restart does not move a trial's deadline.
fn since_boot() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
