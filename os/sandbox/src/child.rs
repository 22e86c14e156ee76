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
