//! What a sandbox is made of: the description [`prepare`](crate::prepare) turns into steps.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Writable (otherwise read-only).
    pub writable: bool,
    /// May be executed.
    pub executable: bool,
}

/// Resource limits of one sandboxed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Memory limit in bytes (0 = none): cgroup `memory.max`, and `RLIMIT_AS` as well when
    /// `address_space_limit` says so (and as the only limit when there is no cgroup).
    pub memory_bytes: u64,
    /// Whether `memory_bytes` may also bound the address space (`RLIMIT_AS`). Not for
    /// wasmtime, which reserves large virtual ranges it never touches: its memory is bounded
    /// by the cgroup only (and its apps' linear memory by the host itself).
    pub address_space_limit: bool,
    /// Maximum processes/threads (`RLIMIT_NPROC` or cgroup `pids.max`).
    pub max_tasks: u32,
    /// CPU share in percent of one core (cgroup `cpu.max` only; 0 = none).
    pub cpu_percent: u32,
    /// Maximum open fds.
    pub max_fds: u32,
}

/// How user ids inside the sandbox map to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMapping {
    /// Running as root: the component runs as its own host uid/gid (no `setgroups` deny).
    Root {
        /// Host uid and gid for this component.
        host_id: u32,
    },
    /// Unprivileged: the component runs as the caller's uid/gid.
    Unprivileged {
        /// The caller's uid.
        uid: u32,
        /// The caller's gid.
        gid: u32,
    },
}

/// The uid/gid a component has inside its user namespace.
pub const SANDBOX_ID: u32 = 1000;

/// Everything needed to start one sandboxed process.
#[derive(Debug)]
pub struct SandboxSpec {
    /// Component name (hostname inside the sandbox, used in errors).
    pub name: String,
    /// The binary on the host; mounted at `/bin/<file name>`.
    pub program: PathBuf,
    /// Arguments after argv\[0\].
    pub args: Vec<String>,
    /// Environment (the only variables the process gets).
    pub env: Vec<(String, String)>,
    /// Granted handles by local name; placed at fd 3, 4, ... in this order.
    pub handles: Vec<(String, OwnedFd)>,
    /// Extra fds placed after the handles (e.g. a provider's control socket), by env var
    /// name: the variable is set to the fd number.
    pub extra_fds: Vec<(String, OwnedFd)>,
    /// stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    /// Seccomp policy role (see [`policy`](crate::policy)).
    pub role: testudo_plan::SandboxRole,
    /// Keep the host network namespace (only the network-owning driver).
    pub network: bool,
    /// TCP ports the process may connect to (landlock; only meaningful with `network`).
    pub connect_ports: Vec<u16>,
    /// Extra paths made visible.
    pub binds: Vec<Bind>,
    /// Resource limits.
    pub limits: ResourceLimits,
    /// Id mapping.
    pub ids: IdMapping,
    /// An empty host directory the new root is assembled on (never written through: a tmpfs
    /// is mounted over it inside the sandbox's own mount namespace).
    pub root_dir: PathBuf,
    /// The cgroup v2 to create for this process, when cgroups are used
    /// ([`CgroupTree::placement`](crate::CgroupTree::placement)).
    pub cgroup: Option<crate::CgroupPlacement>,
}
