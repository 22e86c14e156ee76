//! The `status` scheme init serves: reading its root handle returns one line per component,
//! `name state restarts`, sorted by name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

/// State of every component, shared between the supervisor and the status scheme.
pub type StatusTable = Arc<Mutex<BTreeMap<String, (String, u32)>>>;

/// Serves `status`.
#[derive(Debug)]
pub struct StatusProvider {
    table: StatusTable,
}

/// A status handle: the snapshot being read and how far.
#[derive(Debug, Clone, Default)]
pub struct StatusCursor {
    pending: Vec<u8>,
    started: bool,
}

impl StatusProvider {
    /// A provider over `table`.
    pub fn new(table: StatusTable) -> StatusProvider {
        StatusProvider { table }
    }

    fn render(&self) -> Vec<u8> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        for (name, (state, restarts)) in table.iter() {
            text.push_str(&format!("{name} {state} {restarts}\n"));
        }
        text.into_bytes()
    }
}

impl SchemeProvider for StatusProvider {
    type Node = StatusCursor;

    fn root(&mut self, _grant: &Grant) -> Result<StatusCursor, Errno> {
        Ok(StatusCursor::default())
    }

    fn open(
        &mut self,
        _parent: &StatusCursor,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<StatusCursor>, Errno> {
        Err(Errno::ENOENT)
    }

    /// Each read continues the current snapshot; after it is exhausted (a 0-byte read) the
    /// next read starts a fresh one.
    fn read(&mut self, node: &mut StatusCursor, buf: &mut [u8]) -> Result<usize, Errno> {
        if !node.started {
            node.pending = self.render();
            node.started = true;
        }
        let n = node.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&node.pending[..n]);
        node.pending.drain(..n);
        if n == 0 {
            node.started = false;
        }
        Ok(n)
    }

    fn fstat(&mut self, _node: &StatusCursor) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}
