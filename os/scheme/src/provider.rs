//! The provider side: implement [`SchemeProvider`], hand it to a [`Server`], and the server
//! answers requests, enforcing each handle's [`Rights`] before the provider sees a request.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use syscall::schemev2::Opcode;

use crate::backend::{Active, Backend};
use crate::wire::{self, FD_RAW, FD_SCHEME, MAX_MESSAGE, MAX_PAYLOAD};
use crate::{Grant, NodeKind, Rights, SchemeError, Stat};

/// The result of opening a path on a provider.
#[derive(Debug)]
pub enum Opened<N> {
    /// A node of this scheme; the server makes a new handle for it.
    Node(N),
    /// A raw kernel object handed to the consumer as is (e.g. a connected socket). The
    /// provider is responsible for what the consumer can do with it.
    Raw(OwnedFd),
}

/// A scheme: per-handle state is a `Node`. Rights are checked by the [`Server`] before any
/// of these is called (reads need read rights, writes write rights, opens and dups at most
/// the parent's rights; `fsync` and `fstat` need none), so a provider only decides what a
/// path means.
pub trait SchemeProvider {
    /// Per-handle state.
    type Node: Clone;

    /// The node a new root handle from init refers to.
    fn root(&mut self, grant: &Grant) -> Result<Self::Node, Errno>;

    /// Opens `path` relative to `parent`.
    fn open(
        &mut self,
        parent: &Self::Node,
        path: &str,
        rights: Rights,
    ) -> Result<Opened<Self::Node>, Errno>;

    /// Reads from a node.
    fn read(&mut self, node: &mut Self::Node, buf: &mut [u8]) -> Result<usize, Errno> {
        let _ = (node, buf);
        Err(Errno::EBADF)
    }

    /// Writes to a node.
    fn write(&mut self, node: &mut Self::Node, data: &[u8]) -> Result<usize, Errno> {
        let _ = (node, data);
        Err(Errno::EBADF)
    }

    /// Makes the node's data durable (`fsync(2)`). Any handle may ask, whatever its rights
    /// (POSIX allows `fsync` on a read-only descriptor). The default answers `EINVAL`, as
    /// Linux does for an object that cannot be synchronised (a pipe, a socket).
    fn fsync(&mut self, node: &mut Self::Node) -> Result<(), Errno> {
        let _ = node;
        Err(Errno::EINVAL)
    }

    /// Kind and size of a node.
    fn fstat(&mut self, node: &Self::Node) -> Result<(NodeKind, u64), Errno>;

    /// The last handle to a node was closed.
    fn close(&mut self, node: Self::Node) {
        let _ = node;
    }
}

struct Connection<N> {
    fd: OwnedFd,
    node: N,
    rights: Rights,
}

/// Serves one provider: its control socket (root handles from init) and every handle.
pub struct Server<P: SchemeProvider> {
    provider: P,
    control: Option<OwnedFd>,
    connections: Vec<Connection<P::Node>>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    data: Vec<u8>,
}

impl<P: SchemeProvider> std::fmt::Debug for Server<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.connections.len())
            .field("control", &self.control.is_some())
            .finish()
    }
}

impl<P: SchemeProvider> Server<P> {
    /// A server with no handles yet.
    pub fn new(provider: P) -> Server<P> {
        Server {
            provider,
            control: None,
            connections: Vec::new(),
            rx: vec![0; MAX_MESSAGE],
            tx: Vec::with_capacity(MAX_MESSAGE),
            data: vec![0; MAX_PAYLOAD],
        }
    }

    /// Accepts root handles from init on `control` (see [`crate::provider_control`]).
    pub fn with_control(mut self, control: OwnedFd) -> Server<P> {
        self.control = Some(control);
        self
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Number of open handles.
    pub fn handle_count(&self) -> usize {
        self.connections.len()
    }

    /// Serves `fd` as a root handle described by `grant` (what init does over the control
    /// socket; also useful in-process).
    pub fn attach(&mut self, fd: OwnedFd, grant: &Grant) -> Result<(), Errno> {
        let node = self.provider.root(grant)?;
        self.connections.push(Connection {
            fd,
            node,
            rights: grant.rights,
        });
        Ok(())
    }

    /// Makes a new root handle in-process: returns the consumer's end.
    pub fn grant(&mut self, grant: &Grant) -> Result<crate::Handle, SchemeError> {
        let (kept, given) = Active::pair()?;
        self.attach(kept, grant)
            .map_err(|errno| SchemeError::Refused { op: "grant", errno })?;
        Ok(crate::Handle::from_fd(given))
    }

    /// Serves until the control socket closes (init is gone) or, without one, until the
    /// last handle is closed.
    pub fn run(&mut self) -> Result<(), SchemeError> {
        let mut ready = Vec::new();
        loop {
            if self.control.is_none() && self.connections.is_empty() {
                return Ok(());
            }
            {
                let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(self.connections.len() + 1);
                fds.extend(self.connections.iter().map(|conn| conn.fd.as_fd()));
                if let Some(control) = &self.control {
                    fds.push(control.as_fd());
                }
                Active::wait_readable(&fds, &mut ready)?;
            }
            let control_index = self.connections.len();
            let mut closed = Vec::new();
            for &index in &ready {
                if index == control_index {
                    if !self.serve_control()? {
                        return Ok(());
                    }
                } else if !self.serve_one(index) {
                    closed.push(index);
                }
            }
            for index in closed.into_iter().rev() {
                let connection = self.connections.swap_remove(index);
                self.provider.close(connection.node);
            }
        }
    }

    /// Handles one control message; false when init closed the control socket.
    fn serve_control(&mut self) -> Result<bool, SchemeError> {
        let Some(control) = &self.control else {
            return Ok(false);
        };
        let (len, fd) = match Active::receive(control.as_fd(), &mut self.rx) {
            Ok(received) => received,
            Err(SchemeError::TooLarge { .. }) => return Ok(true),
            Err(error) => return Err(error),
        };
        if len == 0 {
            self.control = None;
            return Ok(false);
        }
        let Ok(request) = wire::decode_request(&self.rx[..len]) else {
            return Ok(true);
        };
        if let (Opcode::Sendfd, Some(fd), Some(grant)) =
            (request.opcode, fd, Grant::decode(request.payload))
        {
            // A refused root (e.g. storage cannot create the consumer's directory) simply
            // drops the fd: the consumer sees its handle closed.
            let _ = self.attach(fd, &grant);
        }
        Ok(true)
    }

    /// Answers one request on connection `index`; false when the connection is finished.
    fn serve_one(&mut self, index: usize) -> bool {
        let fd = self.connections[index].fd.as_fd();
        let len = match Active::receive(fd, &mut self.rx) {
            Ok((0, _)) | Err(_) => return false,
            Ok((len, _stray_fd)) => len,
        };
        let (tag, outcome) = match wire::decode_request(&self.rx[..len]) {
            Ok(request) => {
                let tag = request.tag;
                let opcode = request.opcode;
                let args = request.args;
                let payload_range = wire::SQE_LEN..len;
                (tag, self.dispatch(index, opcode, args, payload_range))
            }
            Err(errno) => (0, Outcome::Fail(errno)),
        };
        let (result, fd_kind, attach, payload_len) = match outcome {
            Outcome::Value(value, payload_len) => (Ok(value), None, None, payload_len),
            Outcome::Fd(kind, fd) => (Ok(0), Some(kind), Some(fd), 0),
            Outcome::Fail(errno) => (Err(errno), None, None, 0),
        };
        wire::encode_response(
            &mut self.tx,
            tag,
            result,
            fd_kind,
            &self.data[..payload_len],
        );
        let conn_fd = self.connections[index].fd.as_fd();
        Active::send(conn_fd, &self.tx, attach.as_ref().map(|fd| fd.as_fd())).is_ok()
    }

    fn dispatch(
        &mut self,
        index: usize,
        opcode: Opcode,
        args: [u64; 6],
        payload: std::ops::Range<usize>,
    ) -> Outcome {
        let rights = self.connections[index].rights;
        match opcode {
            Opcode::OpenAt => {
                let Some(wanted) = Rights::from_redox_flags(args[3]) else {
                    return Outcome::Fail(Errno::EINVAL);
                };
                if !wanted.within(rights) {
                    return Outcome::Fail(Errno::EACCES);
                }
                let Ok(path) = std::str::from_utf8(&self.rx[payload]) else {
                    return Outcome::Fail(Errno::EINVAL);
                };
                let path = path.to_owned();
                match self
                    .provider
                    .open(&self.connections[index].node, &path, wanted)
                {
                    Ok(Opened::Node(node)) => self.new_handle(node, wanted),
                    Ok(Opened::Raw(fd)) => Outcome::Fd(FD_RAW, fd),
                    Err(errno) => Outcome::Fail(errno),
                }
            }
            Opcode::Dup => {
                let Some(wanted) = Rights::from_redox_flags(args[3]) else {
                    return Outcome::Fail(Errno::EINVAL);
                };
                if !wanted.within(rights) {
                    return Outcome::Fail(Errno::EACCES);
                }
                let node = self.connections[index].node.clone();
                self.new_handle(node, wanted)
            }
            Opcode::Read => {
                if !rights.can_read() {
                    return Outcome::Fail(Errno::EBADF);
                }
                let want = usize::try_from(args[2])
                    .unwrap_or(MAX_PAYLOAD)
                    .min(MAX_PAYLOAD);
                let connection = &mut self.connections[index];
                match self
                    .provider
                    .read(&mut connection.node, &mut self.data[..want])
                {
                    Ok(n) => Outcome::Value(n as u64, n.min(want)),
                    Err(errno) => Outcome::Fail(errno),
                }
            }
            Opcode::Write => {
                if !rights.can_write() {
                    return Outcome::Fail(Errno::EBADF);
                }
                let connection = &mut self.connections[index];
                match self.provider.write(&mut connection.node, &self.rx[payload]) {
                    Ok(n) => Outcome::Value(n as u64, 0),
                    Err(errno) => Outcome::Fail(errno),
                }
            }
            // No rights check: POSIX lets any open descriptor be synchronised.
            Opcode::Fsync => match self.provider.fsync(&mut self.connections[index].node) {
                Ok(()) => Outcome::Value(0, 0),
                Err(errno) => Outcome::Fail(errno),
            },
            Opcode::Fstat => match self.provider.fstat(&self.connections[index].node) {
                Ok((kind, size)) => {
                    let stat = Stat { kind, size, rights }.to_redox();
                    let bytes = wire::stat_bytes(&stat);
                    self.data[..bytes.len()].copy_from_slice(&bytes);
                    Outcome::Value(0, bytes.len())
                }
                Err(errno) => Outcome::Fail(errno),
            },
            _ => Outcome::Fail(Errno::ENOSYS),
        }
    }

    fn new_handle(&mut self, node: P::Node, rights: Rights) -> Outcome {
        match Active::pair() {
            Ok((kept, given)) => {
                self.connections.push(Connection {
                    fd: kept,
                    node,
                    rights,
                });
                Outcome::Fd(FD_SCHEME, given)
            }
            Err(SchemeError::Transport { source, .. }) => Outcome::Fail(source),
            Err(_) => Outcome::Fail(Errno::EIO),
        }
    }
}

enum Outcome {
    /// Success value and payload length in `data`.
    Value(u64, usize),
    /// Success with an fd of kind `FD_SCHEME`/`FD_RAW`.
    Fd(u8, OwnedFd),
    Fail(Errno),
}
