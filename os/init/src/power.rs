//! The `power` capability init serves: a component whose route names `init.power` writes
//! `reboot` or `poweroff` (one word, optionally followed by a newline) to its root handle.
//! init acknowledges the write, records who asked, and wakes the supervisor, which stops every
//! component in reverse start order; `main` then syncs, unmounts the data partition and
//! reboots or powers off (on a development host, `testudo run` just ends).
//!
//! The first request wins: a second write while the system is going down is acknowledged and
//! changes nothing (a reboot cannot be turned into a power-off halfway through).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use testudo_scheme::Errno;

use crate::events::{EventKind, EventLog};
use crate::InitError;

/// What a component may ask of `power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Restart the device.
    Reboot,
    /// Turn it off.
    PowerOff,
}

impl PowerAction {
    /// The word a component writes.
    pub fn word(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "poweroff",
        }
    }

    /// Parses a write to a `power` handle: one known word, optionally with a newline.
    pub fn parse(bytes: &[u8]) -> Option<PowerAction> {
        let text = std::str::from_utf8(bytes).ok()?;
        match text.strip_suffix('\n').unwrap_or(text) {
            "reboot" => Some(PowerAction::Reboot),
            "poweroff" => Some(PowerAction::PowerOff),
            _ => None,
        }
    }
}

/// The pending power request, shared by the scheme thread (which sets it) and the
/// supervisor (which wakes on it and acts).
#[derive(Debug, Clone)]
pub struct PowerRequests {
    pending: Arc<Mutex<Option<(PowerAction, String)>>>,
    wake: Arc<OwnedFd>,
}

impl PowerRequests {
    /// A request cell and the fd that becomes readable when a request arrives (the
    /// supervisor polls it).
    pub fn new() -> Result<(PowerRequests, OwnedFd), InitError> {
        let (read, write) = std::io::pipe().map_err(|source| InitError::Kernel {
            step: "creating the power request pipe",
            source,
        })?;
        Ok((
            PowerRequests {
                pending: Arc::new(Mutex::new(None)),
                wake: Arc::new(OwnedFd::from(write)),
            },
            OwnedFd::from(read),
        ))
    }

    /// Records `action` asked by `consumer` unless a request is already pending, and wakes
    /// the supervisor. Returns whether this request is the one that will be carried out.
    pub fn request(&self, action: PowerAction, consumer: &str) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_some() {
            return false;
        }
        *pending = Some((action, consumer.to_owned()));
        let byte = 1u8;
        // SAFETY: writes one byte from a local to the pipe's write end, which `self` owns.
        unsafe { libc::write(self.wake.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        true
    }

    /// The request being carried out, and who asked.
    pub fn pending(&self) -> Option<(PowerAction, String)> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A `power` handle's write: parses it, records the request and the event.
pub fn write(
    requests: &PowerRequests,
    events: &EventLog,
    consumer: &str,
    bytes: &[u8],
) -> Result<usize, Errno> {
    let Some(action) = PowerAction::parse(bytes) else {
        events.push(
            consumer,
            EventKind::PowerRefused {
                request: String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned(),
            },
        );
        return Err(Errno::EINVAL);
    };
    if requests.request(action, consumer) {
        events.push(
            consumer,
            EventKind::PowerRequested {
                action: action.word().to_owned(),
            },
        );
    }
    Ok(bytes.len())
}

/// What PID 1 does to the machine at the very end (behind a trait for unit tests).
pub trait Machine {
    /// Flushes every filesystem (`sync(2)`).
    fn sync(&self);
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> std::io::Result<()>;
    /// Reboots or powers off; returns only if the kernel refused.
    fn reset(&self, action: PowerAction) -> std::io::Error;
}

/// The running kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMachine;

impl Machine for HostMachine {
    fn sync(&self) {
        // SAFETY: sync(2) has no arguments and cannot fail.
        unsafe { libc::sync() };
    }

    fn unmount(&self, target: &Path) -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(target.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a valid NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn reset(&self, action: PowerAction) -> std::io::Error {
        let command = match action {
            PowerAction::Reboot => libc::RB_AUTOBOOT,
            PowerAction::PowerOff => libc::RB_POWER_OFF,
        };
        // SAFETY: reboot(2) with a valid command; it returns only on failure.
        unsafe { libc::reboot(command) };
        std::io::Error::last_os_error()
    }
}

/// The end of PID 1 once every component has stopped: sync, unmount the data partition (if
/// init mounted one) so its journal is clean, sync again, then reboot or power off. Returns
/// the lines to print about what went wrong (the machine goes down regardless).
pub fn bring_down(
    machine: &dyn Machine,
    data_dir: Option<&Path>,
    action: PowerAction,
) -> Vec<String> {
    let mut problems = Vec::new();
    machine.sync();
    if let Some(data_dir) = data_dir {
        if let Err(error) = machine.unmount(data_dir) {
            problems.push(format!(
                "unmounting the data partition at {}: {error} (synced; going on)",
                data_dir.display()
            ));
        }
        machine.sync();
    }
    let error = machine.reset(action);
    problems.push(format!("{} refused by the kernel: {error}", action.word()));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct RecordingMachine {
        steps: RefCell<Vec<String>>,
        unmount_fails: bool,
    }

    impl Machine for RecordingMachine {
        fn sync(&self) {
            self.steps.borrow_mut().push("sync".into());
        }
        fn unmount(&self, target: &Path) -> std::io::Result<()> {
            self.steps
                .borrow_mut()
                .push(format!("unmount {}", target.display()));
            if self.unmount_fails {
                return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
            }
            Ok(())
        }
        fn reset(&self, action: PowerAction) -> std::io::Error {
            self.steps.borrow_mut().push(action.word().into());
            std::io::Error::from_raw_os_error(libc::EPERM)
        }
    }

    #[test]
    fn the_data_partition_is_synced_and_unmounted_before_the_reboot() {
        let machine = RecordingMachine::default();
        bring_down(&machine, Some(Path::new("/data")), PowerAction::Reboot);
        assert_eq!(
            *machine.steps.borrow(),
            ["sync", "unmount /data", "sync", "reboot"]
        );
    }

    #[test]
    fn a_busy_data_partition_is_reported_and_the_machine_still_goes_down() {
        let machine = RecordingMachine {
            unmount_fails: true,
            ..Default::default()
        };
        let problems = bring_down(&machine, Some(Path::new("/data")), PowerAction::PowerOff);
        assert_eq!(
            *machine.steps.borrow(),
            ["sync", "unmount /data", "sync", "poweroff"]
        );
        assert!(
            problems[0].contains("unmounting the data partition at /data"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("poweroff refused by the kernel"),
            "{problems:?}"
        );
    }

    #[test]
    fn parses_the_two_words_and_nothing_else() {
        assert_eq!(PowerAction::parse(b"reboot"), Some(PowerAction::Reboot));
        assert_eq!(PowerAction::parse(b"reboot\n"), Some(PowerAction::Reboot));
        assert_eq!(PowerAction::parse(b"poweroff"), Some(PowerAction::PowerOff));
        for bad in [
            &b"Reboot"[..],
            b"reboot now",
            b"",
            b"\n",
            b"reboot\n\n",
            b"\xff",
        ] {
            assert_eq!(PowerAction::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_first_request_wins_and_wakes_the_supervisor() {
        let (requests, wake) = PowerRequests::new().unwrap();
        let events = EventLog::new(false);
        assert_eq!(write(&requests, &events, "agent", b"reboot\n"), Ok(7));
        assert_eq!(write(&requests, &events, "other", b"poweroff"), Ok(8));
        assert_eq!(
            requests.pending(),
            Some((PowerAction::Reboot, "agent".to_owned()))
        );
        let mut entry = libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid fd without waiting.
        assert_eq!(unsafe { libc::poll(&mut entry, 1, 0) }, 1);
        let requested: Vec<String> = events
            .snapshot()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::PowerRequested { .. }))
            .map(|e| e.line())
            .collect();
        assert_eq!(requested, ["agent: power: reboot requested"]);
    }

    #[test]
    fn an_unknown_word_is_refused_and_changes_nothing() {
        let (requests, _wake) = PowerRequests::new().unwrap();
        let events = EventLog::new(false);
        assert_eq!(
            write(&requests, &events, "agent", b"selfdestruct"),
            Err(Errno::EINVAL)
        );
        assert_eq!(requests.pending(), None);
    }
}
