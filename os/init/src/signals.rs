//! Turning SIGTERM/SIGINT into a readable fd the supervisor polls (self-pipe).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::InitError;

static STOP_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    let fd = STOP_WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// A pipe whose write end is signalled by SIGTERM and SIGINT: returns the read end (pass
/// it as the supervisor's stop fd). Call once per process.
pub fn stop_on_signals() -> Result<OwnedFd, InitError> {
    let (read, write) = std::io::pipe().map_err(|source| InitError::Kernel {
        step: "creating the stop pipe",
        source,
    })?;
    let write = OwnedFd::from(write);
    STOP_WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(write); // lives as long as the process: the handler may use it any time
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs an async-signal-safe handler.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
    Ok(OwnedFd::from(read))
}
