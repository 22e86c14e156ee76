//! Promise: the provider's server enforces rights; derived handles only narrow; opens are
//! relative to a held handle; a raw fd can be handed back; closing a handle reaches the
//! provider. Real Unix sockets and SCM_RIGHTS, provider in its own thread.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeError, SchemeProvider, Server};

/// A tiny in-memory file scheme: the root is a directory, files are byte vectors.
#[derive(Default)]
struct MemFs {
    files: BTreeMap<String, Vec<u8>>,
    closed: Arc<Mutex<usize>>,
}

#[derive(Clone)]
enum Node {
    Root,
    File { name: String, offset: usize },
}

impl SchemeProvider for MemFs {
    type Node = Node;
    fn root(&mut self, _grant: &Grant) -> Result<Node, Errno> {
        Ok(Node::Root)
    }
    fn open(&mut self, parent: &Node, path: &str, _rights: Rights) -> Result<Opened<Node>, Errno> {
        match parent {
            Node::Root if path == "socket" => {
                let (a, _b) = std::os::unix::net::UnixStream::pair().map_err(|_| Errno::EIO)?;
                Ok(Opened::Raw(OwnedFd::from(a)))
            }
            Node::Root if !path.contains('/') && path != ".." && !path.is_empty() => {
                self.files.entry(path.to_owned()).or_default();
                Ok(Opened::Node(Node::File {
                    name: path.to_owned(),
                    offset: 0,
                }))
            }
            Node::Root => Err(Errno::ENOENT),
            Node::File { .. } => Err(Errno::ENOTDIR),
        }
    }
    fn read(&mut self, node: &mut Node, buf: &mut [u8]) -> Result<usize, Errno> {
        let Node::File { name, offset } = node else {
            return Err(Errno::EISDIR);
        };
        let data = self.files.get(name).ok_or(Errno::ENOENT)?;
        let n = data.len().saturating_sub(*offset).min(buf.len());
        buf[..n].copy_from_slice(&data[*offset..*offset + n]);
        *offset += n;
        Ok(n)
    }
    fn write(&mut self, node: &mut Node, bytes: &[u8]) -> Result<usize, Errno> {
        let Node::File { name, .. } = node else {
            return Err(Errno::EISDIR);
        };
        self.files
            .entry(name.clone())
            .or_default()
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn fstat(&mut self, node: &Node) -> Result<(NodeKind, u64), Errno> {
        Ok(match node {
            Node::Root => (NodeKind::Directory, 0),
            Node::File { name, .. } => (
                NodeKind::File,
                self.files.get(name).map_or(0, |f| f.len() as u64),
            ),
        })
    }
    fn close(&mut self, _node: Node) {
        *self.closed.lock().expect("lock") += 1;
    }
}

fn refused(result: Result<impl std::fmt::Debug, SchemeError>) -> Errno {
    result
        .expect_err("must be refused")
        .refused_errno()
        .expect("a provider refusal")
}

#[test]
fn rights_are_enforced_and_only_narrow() {
    let closed = Arc::new(Mutex::new(0));
    let mut server = Server::new(MemFs {
        closed: Arc::clone(&closed),
        ..MemFs::default()
    });
    let grant = |rights| Grant {
        consumer: "app".into(),
        capability: "files".into(),
        rights,
        allow: Vec::new(),
    };
    let root = server.grant(&grant(Rights::ReadWrite)).expect("grant");
    let read_only_root = server.grant(&grant(Rights::Read)).expect("grant");
    let worker = thread::spawn(move || server.run());

    let file = root.open("state", Rights::ReadWrite).expect("open rw");
    assert_eq!(file.write(b"hello").expect("write"), 5);
    let stat = file.fstat().expect("fstat");
    assert_eq!(
        (stat.kind, stat.size, stat.rights),
        (NodeKind::File, 5, Rights::ReadWrite)
    );

    // Narrowed dup: reads work, writes are refused by the server.
    let reader = file.dup(Rights::Read).expect("dup read-only");
    let mut buf = [0u8; 16];
    assert_eq!(reader.read(&mut buf).expect("read"), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(refused(reader.write(b"x")), Errno::EBADF);
    assert_eq!(reader.fstat().expect("fstat").rights, Rights::Read);
    // Widening is impossible, from the narrowed handle or a read-only root.
    assert_eq!(refused(reader.dup(Rights::ReadWrite)), Errno::EACCES);
    assert_eq!(
        refused(read_only_root.open("state", Rights::Write)),
        Errno::EACCES
    );
    let writer = file.dup(Rights::Write).expect("dup write-only");
    assert_eq!(refused(writer.read(&mut buf)), Errno::EBADF);

    // Paths are relative to the held handle; the provider decides what they mean.
    assert_eq!(
        refused(root.open("../etc/passwd", Rights::Read)),
        Errno::ENOENT
    );
    assert_eq!(refused(file.open("x", Rights::Read)), Errno::ENOTDIR);

    // Raw fds come back through open_raw only.
    assert!(root.open_raw("socket", Rights::ReadWrite).is_ok());
    assert!(matches!(
        root.open("socket", Rights::ReadWrite),
        Err(SchemeError::WrongHandleKind { .. })
    ));

    let before = *closed.lock().expect("lock");
    drop(writer);
    // A round trip on another handle guarantees the server has processed the close.
    root.fstat().expect("fstat");
    assert!(
        *closed.lock().expect("lock") > before,
        "closing a handle reaches the provider"
    );

    drop((root, read_only_root, file, reader));
    worker
        .join()
        .expect("server thread")
        .expect("server ends cleanly when every handle is closed");
}

#[test]
fn provider_gone_is_an_error_not_a_hang() {
    let mut server = Server::new(MemFs::default());
    let handle = server
        .grant(&Grant {
            consumer: "app".into(),
            capability: "files".into(),
            rights: Rights::ReadWrite,
            allow: Vec::new(),
        })
        .expect("grant");
    drop(server);
    assert!(matches!(handle.fstat(), Err(SchemeError::Closed { .. })));
}
