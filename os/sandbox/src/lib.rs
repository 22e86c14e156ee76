//! The component sandbox.
//!
//! [`spawn`] starts one program as its own process in new user, mount, pid, ipc, uts, cgroup
//! and (unless it owns the network) net namespaces, with a minimal read-only root made of
//! bind mounts (its binary, the shared libraries it links, `/dev/{null,zero,urandom}` and the
//! paths its [`SandboxSpec`] grants), no fds but its granted handles at 3, 4, ... plus
//! stdio, rlimits (and cgroup v2 limits where a [`CgroupTree`] could be set up), no_new_privs,
//! a landlock ruleset mirroring the visible paths, and the seccomp allowlist of its role
//! ([`policy`]) installed last, right before `execve`.
//!
//! Every kernel operation goes through [`Sys`]: [`RealSys`] performs them, [`RecordingSys`]
//! records them so the order and content of the setup is unit-tested without privileges.

mod cgroup;
mod child;
mod error;
mod landlock_rules;
mod libraries;
mod limits;
pub mod pidfd;
pub mod policy;
mod prepare;
mod report;
mod search_filter;
mod spawn;
mod spec;
mod sys;

pub use cgroup::{
    cgroup2_mount, parse_cgroup2_mount, CgroupFs, CgroupPlacement, CgroupTree, Controllers,
    RealCgroupFs,
};
pub use child::Step;
pub use error::{CgroupError, SandboxError};
pub use limits::LimitsApplied;
pub use prepare::{prepare, Prepared};
pub use report::{proc_enforcement, ProcEnforcement, RuntimeReport};
pub use spawn::{spawn, SandboxedChild};
pub use spec::{Bind, IdMapping, ResourceLimits, SandboxSpec};
pub use sys::{RealSys, RecordingSys, Sys};
