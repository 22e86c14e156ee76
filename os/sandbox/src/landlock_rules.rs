//! The landlock ruleset mirroring what a sandbox can see: the same paths as its bind mounts
//! (by inode, so the rules hold whatever the mount layout), no TCP bind, TCP connect only to
//! the granted ports, and no signals or abstract sockets outside its own domain.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use landlock::{
    Access, AccessFs, AccessNet, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};

use crate::SandboxError;

/// One path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathRule {
    pub path: PathBuf,
    pub writable: bool,
    pub executable: bool,
}

/// Builds the ruleset; returns its fd (for `landlock_restrict_self` in the child), or `None`
/// when the kernel has no landlock.
pub(crate) fn build(
    component: &str,
    rules: &[PathRule],
    connect_ports: &[u16],
) -> Result<Option<OwnedFd>, SandboxError> {
    let abi = ABI::V6;
    let wrap = |source| SandboxError::Landlock {
        component: component.to_owned(),
        source,
    };
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(wrap)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
        .map_err(wrap)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(wrap)?
        .create()
        .map_err(wrap)?;
    for rule in rules {
        let fd = PathFd::new(&rule.path).map_err(|_| SandboxError::Path {
            path: rule.path.clone(),
            problem: "cannot be opened for a landlock rule",
        })?;
        let is_dir = std::fs::metadata(&rule.path).is_ok_and(|meta| meta.is_dir());
        let mut access = if rule.writable {
            AccessFs::from_all(abi)
        } else {
            AccessFs::from_read(abi)
        };
        if rule.executable {
            access |= AccessFs::Execute;
        } else {
            access &= !AccessFs::Execute;
        }
        if !is_dir {
            access &= AccessFs::from_file(abi);
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(wrap)?;
    }
    for port in connect_ports {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(wrap)?;
    }
    Ok(Option::<OwnedFd>::from(created))
}
