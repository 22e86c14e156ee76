//! The scheme init serves itself, for routes whose provider is init
//! (`testudo_plan::builtin`): the grant's capability picks the service — `status` (read the
//! components' states, [`crate::status`]), `power` (reboot or power off, [`crate::power`]) or
//! `deployment` (signed apps into the app slots, [`crate::deploy`]).

use testudo_plan::interfaces;
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

use crate::deploy::{DeploymentNode, DeploymentService};
use crate::events::EventLog;
use crate::power::{self, PowerRequests};
use crate::status::{StatusCursor, StatusProvider};

/// Serves init's capabilities.
#[derive(Debug)]
pub struct InitProvider {
    status: StatusProvider,
    power: PowerRequests,
    events: EventLog,
    deployment: DeploymentService,
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
    /// A `deployment` handle.
    Deployment(DeploymentNode),
}

impl InitProvider {
    /// Serves `status` from `status`, `power` into `power` (recording power events in
    /// `events`) and `deployment` with `deployment`.
    pub fn new(
        status: StatusProvider,
        power: PowerRequests,
        events: EventLog,
        deployment: DeploymentService,
    ) -> InitProvider {
        InitProvider {
            status,
            power,
            events,
            deployment,
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
            interfaces::DEPLOYMENT => Ok(InitNode::Deployment(self.deployment.root(grant))),
            _ => Err(Errno::ENOENT),
        }
    }

    fn open(
        &mut self,
        parent: &InitNode,
        path: &str,
        rights: Rights,
    ) -> Result<Opened<InitNode>, Errno> {
        match parent {
            InitNode::Deployment(node) => match self.deployment.open(node, path, rights)? {
                Opened::Node(node) => Ok(Opened::Node(InitNode::Deployment(node))),
                Opened::Raw(fd) => Ok(Opened::Raw(fd)),
            },
            _ => Err(Errno::ENOENT),
        }
    }

    fn read(&mut self, node: &mut InitNode, buf: &mut [u8]) -> Result<usize, Errno> {
        match node {
            InitNode::Status(cursor) => self.status.read(cursor, buf),
            InitNode::Power { .. } => Err(Errno::EBADF),
            InitNode::Deployment(node) => self.deployment.read(node, buf),
        }
    }

    fn write(&mut self, node: &mut InitNode, data: &[u8]) -> Result<usize, Errno> {
        match node {
            InitNode::Status(_) => Err(Errno::EBADF),
            InitNode::Power { consumer } => power::write(&self.power, &self.events, consumer, data),
            InitNode::Deployment(node) => self.deployment.write(node, data),
        }
    }

    fn fsync(&mut self, node: &mut InitNode) -> Result<(), Errno> {
        match node {
            InitNode::Deployment(node) => self.deployment.fsync(node),
            _ => Err(Errno::EINVAL),
        }
    }

    fn fstat(&mut self, node: &InitNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            InitNode::Status(cursor) => self.status.fstat(cursor),
            InitNode::Power { .. } => Ok((NodeKind::Stream, 0)),
            InitNode::Deployment(node) => self.deployment.fstat(node),
        }
    }
}
