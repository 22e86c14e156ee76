//! Promise: `Handle::fsync` reaches the provider's `fsync` for that handle's node and carries
//! its answer back; a provider without `fsync` answers `EINVAL` (Linux's answer for an object
//! that cannot be synchronised); a handle of any rights, read-only included, may fsync
//! (POSIX). Real Unix sockets, provider on its own thread.

use std::sync::{Arc, Mutex};
use std::thread;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server};

/// Files are names; `fsync` records which node it was asked for and fails on `"broken"`.
struct Recorder {
    synced: Arc<Mutex<Vec<String>>>,
}

impl SchemeProvider for Recorder {
    type Node = String;
    fn root(&mut self, _grant: &Grant) -> Result<String, Errno> {
        Ok("/".to_owned())
    }
    fn open(&mut self, _: &String, path: &str, _: Rights) -> Result<Opened<String>, Errno> {
        Ok(Opened::Node(path.to_owned()))
    }
    fn fsync(&mut self, node: &mut String) -> Result<(), Errno> {
        self.synced.lock().expect("lock").push(node.clone());
        if node == "broken" {
            return Err(Errno::EIO);
        }
        Ok(())
    }
    fn fstat(&mut self, _: &String) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::File, 0))
    }
}

/// A provider that does not implement `fsync`.
struct NoSync;

impl SchemeProvider for NoSync {
    type Node = ();
    fn root(&mut self, _grant: &Grant) -> Result<(), Errno> {
        Ok(())
    }
    fn open(&mut self, _: &(), _: &str, _: Rights) -> Result<Opened<()>, Errno> {
        Ok(Opened::Node(()))
    }
    fn fstat(&mut self, _: &()) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}

fn grant(rights: Rights) -> Grant {
    Grant {
        consumer: "app".into(),
        capability: "files".into(),
        rights,
        allow: Vec::new(),
    }
}

#[test]
fn fsync_reaches_the_provider_for_any_rights() {
    let synced = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::new(Recorder {
        synced: Arc::clone(&synced),
    });
    let root = server.grant(&grant(Rights::ReadWrite)).expect("grant");
    let worker = thread::spawn(move || server.run());

    let file = root.open("journal", Rights::ReadWrite).expect("open");
    file.fsync().expect("fsync on a read-write handle");
    let read_only = file.dup(Rights::Read).expect("dup read-only");
    read_only.fsync().expect("fsync on a read-only handle");
    let write_only = root.open("log", Rights::Write).expect("open write-only");
    write_only.fsync().expect("fsync on a write-only handle");
    root.fsync().expect("fsync on the root handle");

    // The provider's error comes back as a refusal of `fsync`.
    let broken = root.open("broken", Rights::Read).expect("open");
    let error = broken.fsync().expect_err("the provider failed");
    assert_eq!(error.refused_errno(), Some(Errno::EIO));
    assert!(error.to_string().contains("fsync"), "{error}");

    assert_eq!(
        *synced.lock().expect("lock"),
        ["journal", "journal", "log", "/", "broken"],
        "each fsync reached the provider with its own handle's node"
    );
    drop((root, file, read_only, write_only, broken));
    worker
        .join()
        .expect("server thread")
        .expect("server ends cleanly");
}

#[test]
fn a_provider_without_fsync_answers_einval() {
    let mut server = Server::new(NoSync);
    let root = server.grant(&grant(Rights::Read)).expect("grant");
    let worker = thread::spawn(move || server.run());
    let node = root.open("x", Rights::Read).expect("open");
    for handle in [&root, &node] {
        let error = handle.fsync().expect_err("not synchronisable");
        assert_eq!(error.refused_errno(), Some(Errno::EINVAL));
    }
    // The handle keeps working after the refusal.
    assert_eq!(node.fstat().expect("fstat").kind, NodeKind::Stream);
    drop((root, node));
    worker
        .join()
        .expect("server thread")
        .expect("server ends cleanly");
}
