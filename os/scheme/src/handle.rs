//! The consumer side: a [`Handle`] is a capability to one node of one provider's scheme.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use syscall::schemev2::Opcode;

use crate::backend::{Active, Backend};
use crate::wire::{self, FD_RAW, FD_SCHEME, MAX_MESSAGE, MAX_PAYLOAD};
use crate::{Rights, SchemeError, Stat};

/// A capability: one connection to a provider, bound to one node and one set of [`Rights`].
///
/// Requests on one handle are serialised (a handle may be shared between threads); for
/// parallel requests, [`dup`](Handle::dup) it. Dropping the handle closes it.
#[derive(Debug)]
pub struct Handle {
    fd: OwnedFd,
    state: Mutex<CallState>,
}

#[derive(Debug, Default)]
struct CallState {
    next_tag: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

/// What came back from a request.
struct Reply {
    value: u64,
    fd: Option<(u8, OwnedFd)>,
}

impl Handle {
    /// Wraps an fd that is a scheme handle (received from init or from `open`).
    pub fn from_fd(fd: OwnedFd) -> Handle {
        Handle {
            fd,
            state: Mutex::new(CallState::default()),
        }
    }

    /// Opens `path` relative to this handle with `rights` (at most this handle's rights).
    /// There is no global namespace: `..` and absolute paths mean whatever the provider
    /// says, and every provider shipped here refuses them.
    pub fn open(&self, path: &str, rights: Rights) -> Result<Handle, SchemeError> {
        match self.open_any(path, rights)? {
            (FD_SCHEME, fd) => Ok(Handle::from_fd(fd)),
            _ => Err(SchemeError::WrongHandleKind {
                path: path.to_owned(),
                got: "raw fd",
                expected: "scheme handle",
            }),
        }
    }

    /// Opens `path` on a provider that answers with a raw kernel object (e.g. the `net`
    /// driver's connected TCP socket) and returns that fd.
    pub fn open_raw(&self, path: &str, rights: Rights) -> Result<OwnedFd, SchemeError> {
        match self.open_any(path, rights)? {
            (FD_RAW, fd) => Ok(fd),
            _ => Err(SchemeError::WrongHandleKind {
                path: path.to_owned(),
                got: "scheme handle",
                expected: "raw fd",
            }),
        }
    }

    fn open_any(&self, path: &str, rights: Rights) -> Result<(u8, OwnedFd), SchemeError> {
        let reply = self.call(
            "open",
            Opcode::OpenAt,
            [0, 0, path.len() as u64, rights.to_redox_flags(), 0, 0],
            path.as_bytes(),
            |_, _| Ok(()),
        )?;
        reply.0.fd.ok_or_else(|| SchemeError::Malformed {
            op: "open",
            detail: "success without an fd".to_owned(),
        })
    }

    /// Reads up to `buf.len()` bytes (at most [`MAX_PAYLOAD`]); 0 means end of data.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, SchemeError> {
        let want = buf.len().min(MAX_PAYLOAD);
        let (_, n) = self.call(
            "read",
            Opcode::Read,
            [0, 0, want as u64, 0, 0, 0],
            &[],
            |value, payload| {
                let n = usize::try_from(value).unwrap_or(usize::MAX);
                if n != payload.len() || n > want {
                    return Err(format!(
                        "read reply claims {n} bytes, carries {}",
                        payload.len()
                    ));
                }
                buf[..n].copy_from_slice(payload);
                Ok(n)
            },
        )?;
        Ok(n)
    }

    /// Writes `data` (at most [`MAX_PAYLOAD`] bytes per call); returns the bytes accepted.
    pub fn write(&self, data: &[u8]) -> Result<usize, SchemeError> {
        if data.len() > MAX_PAYLOAD {
            return Err(SchemeError::TooLarge {
                op: "write",
                len: data.len(),
                max: MAX_PAYLOAD,
            });
        }
        let (reply, _) = self.call(
            "write",
            Opcode::Write,
            [0, 0, data.len() as u64, 0, 0, 0],
            data,
            |_, _| Ok(()),
        )?;
        Ok(usize::try_from(reply.value).unwrap_or(0).min(data.len()))
    }

    /// Writes all of `data`, in as many messages as needed.
    pub fn write_all(&self, mut data: &[u8]) -> Result<(), SchemeError> {
        while !data.is_empty() {
            let chunk = &data[..data.len().min(MAX_PAYLOAD)];
            let n = self.write(chunk)?;
            if n == 0 {
                return Err(SchemeError::Closed { op: "write" });
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// A new handle to the same node with `rights`, which must be within this handle's.
    pub fn dup(&self, rights: Rights) -> Result<Handle, SchemeError> {
        let (reply, _) = self.call(
            "dup",
            Opcode::Dup,
            [0, 0, 0, rights.to_redox_flags(), 0, 0],
            &[],
            |_, _| Ok(()),
        )?;
        match reply.fd {
            Some((FD_SCHEME, fd)) => Ok(Handle::from_fd(fd)),
            _ => Err(SchemeError::Malformed {
                op: "dup",
                detail: "success without a scheme handle".to_owned(),
            }),
        }
    }

    /// Makes the node's data durable, like `fsync(2)`: when this returns `Ok`, what was
    /// written through any handle to the node has reached stable storage. Allowed whatever
    /// the handle's rights; a provider whose nodes cannot be synchronised refuses with
    /// `EINVAL` (as Linux does for a pipe or socket).
    pub fn fsync(&self) -> Result<(), SchemeError> {
        self.call("fsync", Opcode::Fsync, [0; 6], &[], |value, payload| {
            if value != 0 || !payload.is_empty() {
                return Err(format!(
                    "fsync reply carries value {value} and {} payload bytes",
                    payload.len()
                ));
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The node's kind, size and this handle's rights.
    pub fn fstat(&self) -> Result<Stat, SchemeError> {
        let (_, stat) = self.call("fstat", Opcode::Fstat, [0; 6], &[], |_, payload| {
            wire::stat_from_bytes(payload)
                .as_ref()
                .and_then(Stat::from_redox)
                .ok_or_else(|| "bad Stat payload".to_owned())
        })?;
        Ok(stat)
    }

    /// Closes the handle (same as dropping it).
    pub fn close(self) {}

    /// The underlying fd (to place it in a child process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The fd number.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn call<T>(
        &self,
        op: &'static str,
        opcode: Opcode,
        args: [u64; 6],
        payload: &[u8],
        accept: impl FnOnce(u64, &[u8]) -> Result<T, String>,
    ) -> Result<(Reply, T), SchemeError> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        state.next_tag = state.next_tag.wrapping_add(1);
        let tag = state.next_tag;
        wire::encode_request(&mut state.tx, opcode, tag, args, payload);
        Active::send(self.fd.as_fd(), &state.tx, None)?;
        if state.rx.len() < MAX_MESSAGE {
            state.rx.resize(MAX_MESSAGE, 0);
        }
        let (len, fd) = Active::receive(self.fd.as_fd(), &mut state.rx)?;
        if len == 0 {
            return Err(SchemeError::Closed { op });
        }
        let response = wire::decode_response(op, &state.rx[..len], tag)?;
        let value = response
            .result
            .map_err(|errno| SchemeError::Refused { op, errno })?;
        let fd = match (response.fd_kind, fd) {
            (Some(kind), Some(fd)) => Some((kind, fd)),
            (None, None) => None,
            _ => {
                return Err(SchemeError::Malformed {
                    op,
                    detail: "fd attachment does not match the completion opcode".to_owned(),
                })
            }
        };
        let accepted = accept(value, response.payload)
            .map_err(|detail| SchemeError::Malformed { op, detail })?;
        Ok((Reply { value, fd }, accepted))
    }
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
