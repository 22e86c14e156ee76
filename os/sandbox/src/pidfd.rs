//! Signalling and reaping a sandboxed process through its pidfd ([`SandboxedChild::pidfd`]):
//! the one place the supervisor, the spawner and the tests that run components call
//! `pidfd_send_signal` and `waitid(P_PIDFD)`. A pidfd names exactly one process, so neither
//! can hit a recycled pid.
//!
//! [`SandboxedChild::pidfd`]: crate::SandboxedChild

use std::os::fd::{AsRawFd, BorrowedFd};

/// How a process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// `si_code`: `CLD_EXITED`, `CLD_KILLED` or `CLD_DUMPED`.
    pub code: i32,
    /// `si_status`: the exit status, or the signal that ended it.
    pub status: i32,
}

impl Exit {
    /// The exit status if the process exited, `None` if a signal ended it.
    pub fn exited(&self) -> Option<i32> {
        (self.code == libc::CLD_EXITED).then_some(self.status)
    }
}

/// How [`wait`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Until the process ends, then reap it.
    Block,
    /// Reap it if it has ended; `None` if it is still running.
    Poll,
    /// Whether it has ended, leaving it to be reaped later.
    Peek,
}

/// Sends `signal` to the process behind `pidfd`.
pub fn send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number and no siginfo (null);
    // it reads nothing of ours.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits for the process behind `pidfd` as `mode` says; `Ok(None)` when it has not ended
/// (never for [`WaitMode::Block`]).
pub fn wait(pidfd: BorrowedFd<'_>, mode: WaitMode) -> std::io::Result<Option<Exit>> {
    let flags = libc::WEXITED
        | match mode {
            WaitMode::Block => 0,
            WaitMode::Poll => libc::WNOHANG,
            WaitMode::Peek => libc::WNOHANG | libc::WNOWAIT,
        };
    // SAFETY: waitid writes into a zeroed siginfo we own, for a valid pidfd.
    let info = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        if libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        info
    };
    // SAFETY: waitid filled a SIGCHLD-style siginfo (or left it zeroed: si_pid 0).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(Exit {
        code: info.si_code,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    fn pidfd_of(child: &std::process::Child) -> OwnedFd {
        // SAFETY: pidfd_open on our own live child; the returned fd is ours to own.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0);
            assert!(fd >= 0, "pidfd_open");
            OwnedFd::from_raw_fd(fd as i32)
        }
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through their pidfds, which is the point
    fn exits_and_signals_are_told_apart_and_peeking_leaves_the_child() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pidfd = pidfd_of(&child);
        let exit = wait(pidfd.as_fd(), WaitMode::Block).unwrap().unwrap();
        assert_eq!(exit.exited(), Some(7));

        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pidfd = pidfd_of(&child);
        assert_eq!(wait(pidfd.as_fd(), WaitMode::Poll).unwrap(), None);
        send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
        // Peeking (after it has ended) leaves it to be reaped.
        let peeked = loop {
            if let Some(exit) = wait(pidfd.as_fd(), WaitMode::Peek).unwrap() {
                break exit;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let reaped = wait(pidfd.as_fd(), WaitMode::Block).unwrap().unwrap();
        assert_eq!(peeked, reaped);
        assert_eq!(
            (reaped.code, reaped.status),
            (libc::CLD_KILLED, libc::SIGKILL)
        );
        assert_eq!(reaped.exited(), None);
    }
}
