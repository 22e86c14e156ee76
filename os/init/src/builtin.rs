//! The scheme init serves itself, for routes whose provider is init
//! (`testudo_plan::builtin`): the grant's capability picks the service — `status` (read the
//! components' states, [`crate::status`]) or `power` (reboot or power off, [`crate::power`]).

use testudo_plan::interfaces;
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

use crate::events::EventLog;
use crate::power::{self, PowerRequests};
use crate::status::{StatusCursor, StatusProvider};

/// Serves init's capabilities.
#[derive(Debug)]
pub struct InitProvider {
    status: StatusProvider,
    power: PowerRequests,
    events: EventLog,
}

/// A handle to one of init's capabilities.
#[derive(Debug, Clone)]
pub enum InitNode {
    /// A `status` handle.
    Status(StatusCursor),
    /// A `power` handle of `consumer`.
    Power {
        /// Who holds it.
        consumer: String,
    },
}

impl InitProvider {
    /// Serves `status` from `status` and `power` into `power`, recording power events in
    /// `events`.
    pub fn new(status: StatusProvider, power: PowerRequests, events: EventLog) -> InitProvider {
        InitProvider {
            status,
            power,
            events,
        }
    }
}

impl SchemeProvider for InitProvider {
    type Node = InitNode;

    fn root(&mut self, grant: &Grant) -> Result<InitNode, Errno> {
        match grant.capability.as_str() {
            interfaces::STATUS => Ok(InitNode::Status(self.status.root(grant)?)),
            interfaces::POWER => Ok(InitNode::Power {
                consumer: grant.consumer.clone(),
            }),
            _ => Err(Errno::ENOENT),
        }
    }

    fn open(
        &mut self,
        _parent: &InitNode,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<InitNode>, Errno> {
        Err(Errno::ENOENT)
    }

    fn read(&mut self, node: &mut InitNode, buf: &mut [u8]) -> Result<usize, Errno> {
        match node {
            InitNode::Status(cursor) => self.status.read(cursor, buf),
            InitNode::Power { .. } => Err(Errno::EBADF),
        }
    }

    fn write(&mut self, node: &mut InitNode, data: &[u8]) -> Result<usize, Errno> {
        match node {
            InitNode::Status(_) => Err(Errno::EBADF),
            InitNode::Power { consumer } => power::write(&self.power, &self.events, consumer, data),
        }
    }

    fn fstat(&mut self, node: &InitNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            InitNode::Status(cursor) => self.status.fstat(cursor),
            InitNode::Power { .. } => Ok((NodeKind::Stream, 0)),
        }
    }
}
