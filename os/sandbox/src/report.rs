//! The runtime counterpart of `testudo audit`: what is actually enforced on a process.

use std::path::Path;

use serde::Serialize;

/// What is enforced on one running component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeReport {
    /// Component name.
    pub component: String,
    /// Host pid.
    pub pid: i32,
    /// Seccomp role.
    pub role: testudo_plan::SandboxRole,
    /// Syscalls its seccomp filter allows.
    pub syscalls_allowed: usize,
    /// Syscalls that exist on this architecture (the kernel 6.12 x86_64 table).
    pub syscalls_total: usize,
    /// Local names of the handles it holds (fd 3, 4, ...).
    pub handles: Vec<String>,
    /// Paths visible inside its root, with `ro`, `rx` or `rw`.
    pub paths_visible: Vec<String>,
    /// Whether it shares the host network namespace.
    pub network: bool,
    /// `cgroup-v2` or `rlimits`.
    pub limits: String,
    /// The limits as set, e.g. `memory.max=16777216`, `cpu.max=20000/100000` (cgroup v2) or
    /// `RLIMIT_AS=16777216` (rlimits).
    pub limit_settings: Vec<String>,
    /// What `/proc/PID` shows, when read.
    pub enforcement: Option<ProcEnforcement>,
}

/// What the kernel reports about a process in `/proc/PID/status` and `/proc/PID/ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcEnforcement {
    /// `Seccomp:` (2 = filter).
    pub seccomp_mode: u8,
    /// `NoNewPrivs:` is 1.
    pub no_new_privs: bool,
    /// Host uid (`Uid:` real).
    pub host_uid: u32,
    /// Own user namespace (differs from the observer's).
    pub own_user_ns: bool,
    /// Own mount namespace.
    pub own_mount_ns: bool,
    /// Own pid namespace.
    pub own_pid_ns: bool,
    /// Own net namespace.
    pub own_net_ns: bool,
    /// Own ipc namespace.
    pub own_ipc_ns: bool,
    /// Own uts namespace.
    pub own_uts_ns: bool,
}

fn differs(pid: i32, ns: &str) -> std::io::Result<bool> {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))?;
    let ours = std::fs::read_link(Path::new("/proc/self/ns").join(ns))?;
    Ok(theirs != ours)
}

/// Reads the enforcement of `pid` from `/proc`, relative to the calling process.
pub fn proc_enforcement(pid: i32) -> std::io::Result<ProcEnforcement> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_default()
    };
    Ok(ProcEnforcement {
        seccomp_mode: field("Seccomp:").parse().unwrap_or(0),
        no_new_privs: field("NoNewPrivs:") == "1",
        host_uid: field("Uid:")
            .split_whitespace()
            .next()
            .and_then(|uid| uid.parse().ok())
            .unwrap_or(u32::MAX),
        own_user_ns: differs(pid, "user")?,
        own_mount_ns: differs(pid, "mnt")?,
        own_pid_ns: differs(pid, "pid")?,
        own_net_ns: differs(pid, "net")?,
        own_ipc_ns: differs(pid, "ipc")?,
        own_uts_ns: differs(pid, "uts")?,
    })
}
