//! Linux backend: handles are `SOCK_SEQPACKET` Unix sockets, fds travel with `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

use super::Backend;
use crate::SchemeError;

/// The Linux implementation of [`Backend`].
#[derive(Debug, Clone, Copy)]
pub struct Linux;

fn transport(op: &'static str) -> impl FnOnce(Errno) -> SchemeError {
    move |source| SchemeError::Transport { op, source }
}

impl Backend for Linux {
    fn pair() -> Result<(OwnedFd, OwnedFd), SchemeError> {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(transport("socketpair"))
    }

    fn send(
        fd: BorrowedFd<'_>,
        message: &[u8],
        attach: Option<BorrowedFd<'_>>,
    ) -> Result<(), SchemeError> {
        let iov = [IoSlice::new(message)];
        let raw: [RawFd; 1] = [attach.map_or(-1, |fd| fd.as_raw_fd())];
        let cmsgs: &[ControlMessage<'_>] = if attach.is_some() {
            &[ControlMessage::ScmRights(&raw)]
        } else {
            &[]
        };
        loop {
            match sendmsg::<UnixAddr>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => {
                    return Err(SchemeError::Closed { op: "send" })
                }
                Err(errno) => return Err(transport("send")(errno)),
            }
        }
    }

    fn receive(
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
    ) -> Result<(usize, Option<OwnedFd>), SchemeError> {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        loop {
            let mut iov = [IoSliceMut::new(buf)];
            let result = recvmsg::<UnixAddr>(
                fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let message = match result {
                Ok(message) => message,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Ok((0, None)),
                Err(errno) => return Err(transport("receive")(errno)),
            };
            let mut received = None;
            let cmsgs = message.cmsgs().map_err(transport("receive"))?;
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: the kernel just installed `raw` in our fd table for this
                        // message (SCM_RIGHTS); nothing else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        if received.is_none() {
                            received = Some(owned);
                        }
                    }
                }
            }
            if message.flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(SchemeError::TooLarge {
                    op: "receive",
                    len: message.bytes,
                    max: buf.len(),
                });
            }
            return Ok((message.bytes, received));
        }
    }

    fn wait_readable(fds: &[BorrowedFd<'_>], ready: &mut Vec<usize>) -> Result<(), SchemeError> {
        ready.clear();
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        loop {
            match poll(&mut polls, PollTimeout::NONE) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(transport("poll")(errno)),
            }
        }
        for (index, entry) in polls.iter().enumerate() {
            if entry.revents().is_some_and(|events| !events.is_empty()) {
                ready.push(index);
            }
        }
        Ok(())
    }
}
