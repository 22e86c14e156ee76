//! The steps a new sandboxed process performs on itself between `clone` and `execve`, as
//! data. They are built (and every string allocated) in the parent by
//! [`prepare`](crate::prepare); the child only walks the list, so it never allocates.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::Sys;

/// One setup step of the child, in execution order.
#[derive(Debug)]
pub enum Step {
    /// Block until the parent has written the id maps (reads one byte from `fd`).
    WaitForParent {
        /// Read end of the sync pipe.
        fd: RawFd,
    },
    /// `setsid`: a session and process group of its own, so signals aimed at the
    /// supervisor's terminal or process group (Ctrl-C) do not reach the component directly.
    NewSession,
    /// `sethostname` in the new uts namespace.
    SetHostname {
        /// The name.
        name: CString,
    },
    /// Make every mount private so nothing propagates back to the host.
    MakeMountsPrivate,
    /// Mount a fresh tmpfs (the new root).
    MountTmpfs {
        /// Mount point.
        target: CString,
    },
    /// Create a directory.
    Mkdir {
        /// Path.
        path: CString,
    },
    /// Create an empty file (a mount point for a file bind).
    CreateFile {
        /// Path.
        path: CString,
    },
    /// Create a symlink.
    Symlink {
        /// Link target text.
        target: CString,
        /// The link's path.
        path: CString,
    },
    /// Bind-mount `source` on `target`.
    Bind {
        /// Host path.
        source: CString,
        /// Mount point inside the new root.
        target: CString,
    },
    /// Remount a bind mount read-only, keeping the flags the kernel locks.
    RemountReadOnly {
        /// The mount point.
        target: CString,
        /// `MS_*` flags to keep (nosuid, nodev, noexec, atime flags of the source).
        keep_flags: u64,
    },
    /// `pivot_root` into `new_root`, the old root at `put_old`, then `chdir("/")`.
    PivotRoot {
        /// New root.
        new_root: CString,
        /// Where the old root goes (inside the new root).
        put_old: CString,
    },
    /// Detach-unmount the old root and remove its mount point.
    DropOldRoot {
        /// Old root's path after the pivot.
        path: CString,
    },
    /// Remount `/` (the tmpfs) read-only.
    RemountRootReadOnly,
    /// Set one resource limit (soft = hard).
    SetRlimit {
        /// `RLIMIT_*`.
        resource: u32,
        /// The value.
        value: u64,
    },
    /// Drop supplementary groups (root mapping only).
    ClearGroups,
    /// `setresgid`/`setresuid` to the sandbox id (drops every capability at `execve`).
    SetIds {
        /// uid = gid inside the user namespace.
        id: u32,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// `landlock_restrict_self` with a ruleset built by the parent.
    Landlock {
        /// The ruleset fd.
        ruleset_fd: RawFd,
    },
    /// `dup2(from, to)` (clears close-on-exec on `to`).
    PlaceFd {
        /// Source fd (staged by the parent above the target range).
        from: RawFd,
        /// Target number.
        to: RawFd,
    },
    /// Mark every fd from `first` upwards close-on-exec (`close_range`).
    CloseOtherFds {
        /// First fd that is not a granted handle.
        first: RawFd,
    },
    /// Install the role's seccomp filter.
    Seccomp {
        /// Role name (for reports).
        role: testudo_plan::SandboxRole,
        /// The compiled BPF program.
        program: Vec<seccompiler::sock_filter>,
    },
    /// `execve` the component.
    Exec {
        /// Path inside the new root.
        path: CString,
        /// Keeps argv strings alive for `argv_ptrs`.
        argv: Vec<CString>,
        /// Keeps env strings alive for `envp_ptrs`.
        envp: Vec<CString>,
        /// NULL-terminated pointer array into `argv`.
        argv_ptrs: Vec<*const libc::c_char>,
        /// NULL-terminated pointer array into `envp`.
        envp_ptrs: Vec<*const libc::c_char>,
    },
}

impl Step {
    /// A short description (for errors and for [`RecordingSys`](crate::RecordingSys)).
    pub fn describe(&self) -> String {
        let text = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::WaitForParent { .. } => "wait-for-parent".to_owned(),
            Step::NewSession => "setsid".to_owned(),
            Step::SetHostname { name } => format!("sethostname {}", text(name)),
            Step::MakeMountsPrivate => "mount --make-rprivate /".to_owned(),
            Step::MountTmpfs { target } => format!("mount tmpfs {}", text(target)),
            Step::Mkdir { path } => format!("mkdir {}", text(path)),
            Step::CreateFile { path } => format!("touch {}", text(path)),
            Step::Symlink { target, path } => format!("symlink {} -> {}", text(path), text(target)),
            Step::Bind { source, target } => format!("bind {} {}", text(source), text(target)),
            Step::RemountReadOnly { target, .. } => format!("remount-ro {}", text(target)),
            Step::PivotRoot { new_root, .. } => format!("pivot_root {}", text(new_root)),
            Step::DropOldRoot { path } => format!("umount-old-root {}", text(path)),
            Step::RemountRootReadOnly => "remount-ro /".to_owned(),
            Step::SetRlimit { resource, value } => format!("setrlimit {resource} {value}"),
            Step::ClearGroups => "setgroups []".to_owned(),
            Step::SetIds { id } => format!("setresuid/setresgid {id}"),
            Step::NoNewPrivs => "no_new_privs".to_owned(),
            Step::Landlock { .. } => "landlock_restrict_self".to_owned(),
            Step::PlaceFd { from, to } => format!("dup2 {from} {to}"),
            Step::CloseOtherFds { first } => format!("close_range {first}.."),
            Step::Seccomp { role, program } => {
                format!("seccomp {role} ({} instructions)", program.len())
            }
            Step::Exec { path, .. } => format!("execve {}", text(path)),
        }
    }
}

/// Runs `steps` in order; on failure returns the failing step's index and errno. With a
/// real [`Sys`] the final `Exec` step does not return.
pub(crate) fn run_steps<S: Sys + ?Sized>(sys: &S, steps: &[Step]) -> Result<(), (usize, i32)> {
    for (index, step) in steps.iter().enumerate() {
        sys.child_step(step).map_err(|errno| (index, errno))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;

    use super::run_steps;
    use crate::{prepare, IdMapping, RecordingSys, ResourceLimits, SandboxSpec};

    fn spec(root: &std::path::Path) -> SandboxSpec {
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        SandboxSpec {
            name: "order".into(),
            program: PathBuf::from("/usr/bin/true"),
            args: vec![],
            env: vec![],
            handles: vec![("log".into(), null())],
            extra_fds: vec![],
            stdio: [null(), null(), null()],
            role: testudo_plan::SandboxRole::Service,
            network: false,
            connect_ports: vec![],
            binds: vec![],
            limits: ResourceLimits {
                memory_bytes: 64 << 20,
                address_space_limit: true,
                max_tasks: 4,
                cpu_percent: 0,
                max_fds: 64,
            },
            ids: IdMapping::Unprivileged {
                uid: 1000,
                gid: 1000,
            },
            root_dir: root.to_owned(),
            cgroup: None,
        }
    }

    /// Whether `call` is the operation `op` (alone or followed by its arguments).
    fn is(call: &str, op: &str) -> bool {
        call.strip_prefix(op)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    }

    /// The index of the first recorded `op`.
    fn first(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .position(|c| is(c, prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
    }

    /// The index of the last recorded `op`.
    fn last(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .rposition(|c| is(c, prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
    }

    #[test]
    fn setup_steps_run_in_the_sandbox_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prepared = prepare(spec(dir.path())).expect("prepare");
        let sys = RecordingSys::default();
        run_steps(&sys, &prepared.steps).expect("recorded");
        let calls = sys.calls();
        // The parent's go-ahead comes first, exec last.
        assert_eq!(first(&calls, "wait-for-parent"), 0, "{calls:#?}");
        assert_eq!(last(&calls, "execve"), calls.len() - 1, "{calls:#?}");
        // The new root is built and made read-only before anything is dropped.
        assert!(last(&calls, "bind") < first(&calls, "pivot_root"));
        assert!(first(&calls, "pivot_root") < first(&calls, "umount-old-root"));
        assert!(first(&calls, "umount-old-root") < first(&calls, "remount-ro /"));
        assert!(first(&calls, "remount-ro /") < first(&calls, "setrlimit"));
        // Privileges go before the fds are arranged, the fds before seccomp.
        assert!(last(&calls, "setrlimit") < first(&calls, "no_new_privs"));
        if calls.iter().any(|c| is(c, "landlock_restrict_self")) {
            // Landlock only where the kernel has it.
            assert!(first(&calls, "no_new_privs") < first(&calls, "landlock_restrict_self"));
            assert!(first(&calls, "landlock_restrict_self") < first(&calls, "dup2"));
        }
        assert!(first(&calls, "no_new_privs") < first(&calls, "dup2"));
        assert!(last(&calls, "dup2") < first(&calls, "close_range"));
        // Seccomp is the last step before exec; only exec follows it.
        assert_eq!(
            first(&calls, "seccomp") + 1,
            last(&calls, "execve"),
            "{calls:#?}"
        );
        assert_eq!(first(&calls, "close_range") + 1, first(&calls, "seccomp"));
    }
}
