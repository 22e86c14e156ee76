//! Turns a [`SandboxSpec`] into the child's [`Step`] list, the id maps and the fds to pass.
//! Everything that allocates or can fail for a reason other than the kernel happens here,
//! in the parent.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::landlock_rules::{self, PathRule};
use crate::libraries::shared_libraries;
use crate::limits::LimitsApplied;
use crate::spec::SANDBOX_ID;
use crate::{policy, Bind, IdMapping, SandboxError, SandboxSpec, Step};

/// Devices every sandbox gets.
const BASIC_DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/urandom"];

/// A sandbox ready to be started by [`spawn`](crate::spawn).
#[derive(Debug)]
pub struct Prepared {
    /// Component name.
    pub name: String,
    /// `clone3` namespace flags.
    pub clone_flags: u64,
    /// The child's setup steps, in order.
    pub steps: Vec<Step>,
    /// `/proc/PID/uid_map` content.
    pub uid_map: String,
    /// `/proc/PID/gid_map` content.
    pub gid_map: String,
    /// Whether `/proc/PID/setgroups` must be set to `deny` first (unprivileged).
    pub deny_setgroups: bool,
    /// What the process can see: `(path inside, "ro" | "rw" | "rx")`, sorted.
    pub visible_paths: Vec<(String, &'static str)>,
    /// Handle names at fd 3, 4, ...
    pub handle_names: Vec<String>,
    /// Seccomp role and its number of allowed syscalls.
    pub role: testudo_plan::SandboxRole,
    /// Number of syscalls the role allows.
    pub syscalls_allowed: usize,
    /// Which limit mechanism applies.
    pub limits_applied: LimitsApplied,
    /// The limits as set: `memory.max=N`, ... (cgroup v2) or `RLIMIT_AS=N`, ... (rlimits).
    pub limit_settings: Vec<String>,
    /// Whether the process keeps the host network namespace.
    pub network: bool,
    /// cgroup directory and the limit files to write there.
    pub cgroup: Option<(PathBuf, Vec<(String, String)>)>,
    /// Fds that must stay open until the clone (staged handles, ruleset, stdio).
    pub(crate) keep: Vec<OwnedFd>,
    /// Sync pipe (child reads, parent writes).
    pub(crate) sync: (OwnedFd, OwnedFd),
    /// Error pipe (parent reads, child writes).
    pub(crate) error: (OwnedFd, OwnedFd),
}

fn cstring(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Path {
        path: path.to_owned(),
        problem: "contains a NUL byte",
    })
}

fn ctext(text: &str, what: &Path) -> Result<CString, SandboxError> {
    CString::new(text).map_err(|_| SandboxError::Path {
        path: what.to_owned(),
        problem: "argument or environment contains a NUL byte",
    })
}

/// Duplicates `fd` to a close-on-exec number at or above `min`.
fn stage(fd: &OwnedFd, min: RawFd, component: &str) -> Result<OwnedFd, SandboxError> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid borrowed fd returns a new fd we then own.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if raw < 0 {
        return Err(SandboxError::Kernel {
            step: "staging a handle fd",
            component: component.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` was just returned by F_DUPFD_CLOEXEC and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

fn pipe(component: &str, min: RawFd) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (read, write) = std::io::pipe().map_err(|source| SandboxError::Kernel {
        step: "creating a setup pipe",
        component: component.to_owned(),
        source,
    })?;
    Ok((
        stage(&OwnedFd::from(read), min, component)?,
        stage(&OwnedFd::from(write), min, component)?,
    ))
}

/// `MS_*` flags of the mount holding `path` that a bind remount must keep (locked flags).
fn locked_flags(path: &Path) -> u64 {
    let Ok(c) = cstring(path) else { return 0 };
    // SAFETY: statvfs fills the zeroed struct from a valid NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return 0;
    }
    let map = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    map.iter()
        .filter(|(st, _)| stat.f_flag & *st != 0)
        .fold(0, |acc, (_, ms)| acc | *ms)
}

/// Prepares `spec` for [`spawn`](crate::spawn).
pub fn prepare(spec: SandboxSpec) -> Result<Prepared, SandboxError> {
    let name = spec.name.clone();
    let program_name = spec
        .program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| SandboxError::Path {
            path: spec.program.clone(),
            problem: "has no file name",
        })?;
    if !spec.program.is_file() {
        return Err(SandboxError::Path {
            path: spec.program.clone(),
            problem: "is not a file",
        });
    }
    let seccomp = policy::compile(spec.role)?;
    let syscalls_allowed = policy::allowed_syscalls(spec.role)?.len();

    // Everything visible inside: program, its libraries, basic devices, granted binds.
    let mut binds = vec![Bind {
        source: spec.program.clone(),
        target: PathBuf::from("/bin").join(&program_name),
        writable: false,
        executable: true,
    }];
    for library in shared_libraries(&spec.program)? {
        binds.push(Bind {
            source: library.clone(),
            target: library,
            writable: false,
            executable: true,
        });
    }
    for device in BASIC_DEVICES {
        binds.push(Bind {
            source: PathBuf::from(device),
            target: PathBuf::from(device),
            writable: true,
            executable: false,
        });
    }
    binds.extend(spec.binds.iter().cloned());
    for bind in &binds {
        if !bind.target.is_absolute()
            || bind
                .target
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(SandboxError::Path {
                path: bind.target.clone(),
                problem: "sandbox targets must be absolute without `..`",
            });
        }
        if !bind.source.exists() {
            return Err(SandboxError::Path {
                path: bind.source.clone(),
                problem: "does not exist",
            });
        }
    }

    let handle_count = spec.handles.len() + spec.extra_fds.len();
    let first_free = 3 + handle_count as RawFd;
    let stage_min = first_free.max(10);
    let sync = pipe(&name, stage_min)?;
    let error = pipe(&name, stage_min)?;

    let root = &spec.root_dir;
    let mut steps = vec![
        Step::WaitForParent {
            fd: sync.0.as_raw_fd(),
        },
        Step::NewSession,
    ];
    // Become the mapped id first: files created during setup need a mapped owner. The
    // previous id is not this namespace's root, so the switch keeps the namespace
    // capabilities; they are dropped at `execve` because the id is not 0.
    let (uid_map, gid_map, deny_setgroups) = match spec.ids {
        IdMapping::Root { host_id } => {
            steps.push(Step::ClearGroups);
            (
                format!("{SANDBOX_ID} {host_id} 1\n"),
                format!("{SANDBOX_ID} {host_id} 1\n"),
                false,
            )
        }
        IdMapping::Unprivileged { uid, gid } => (
            format!("{SANDBOX_ID} {uid} 1\n"),
            format!("{SANDBOX_ID} {gid} 1\n"),
            true,
        ),
    };
    steps.push(Step::SetIds { id: SANDBOX_ID });
    steps.extend([
        Step::SetHostname {
            name: ctext(&name, root)?,
        },
        Step::MakeMountsPrivate,
        Step::MountTmpfs {
            target: cstring(root)?,
        },
    ]);
    let mut made_dirs = BTreeSet::new();
    let mut visible_paths = Vec::new();
    for bind in &binds {
        let inside = root.join(bind.target.strip_prefix("/").unwrap_or(&bind.target));
        let mut parents: Vec<PathBuf> = inside
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.starts_with(root) && *dir != root.as_path())
            .map(Path::to_owned)
            .collect();
        parents.reverse();
        for dir in parents {
            if made_dirs.insert(dir.clone()) {
                steps.push(Step::Mkdir {
                    path: cstring(&dir)?,
                });
            }
        }
        if bind.source.is_dir() {
            if made_dirs.insert(inside.clone()) {
                steps.push(Step::Mkdir {
                    path: cstring(&inside)?,
                });
            }
        } else {
            steps.push(Step::CreateFile {
                path: cstring(&inside)?,
            });
        }
        steps.push(Step::Bind {
            source: cstring(&bind.source)?,
            target: cstring(&inside)?,
        });
        if !bind.writable {
            steps.push(Step::RemountReadOnly {
                target: cstring(&inside)?,
                keep_flags: locked_flags(&bind.source),
            });
        }
        let mode = match (bind.writable, bind.executable) {
            (true, _) => "rw",
            (false, true) => "rx",
            (false, false) => "ro",
        };
        visible_paths.push((bind.target.display().to_string(), mode));
    }
    visible_paths.sort();
    visible_paths.dedup();
    let old_root = root.join(".old");
    steps.push(Step::Mkdir {
        path: cstring(&old_root)?,
    });
    steps.push(Step::PivotRoot {
        new_root: cstring(root)?,
        put_old: cstring(&old_root)?,
    });
    steps.push(Step::DropOldRoot {
        path: CString::from(c"/.old"),
    });
    steps.push(Step::RemountRootReadOnly);

    // Limits: rlimits always; cgroup v2 in addition where usable.
    let limits = spec.limits;
    steps.push(Step::SetRlimit {
        resource: libc::RLIMIT_CORE,
        value: 0,
    });
    steps.push(Step::SetRlimit {
        resource: libc::RLIMIT_NOFILE,
        value: u64::from(limits.max_fds.max(first_free as u32 + 16)),
    });
    if limits.max_tasks > 0 {
        steps.push(Step::SetRlimit {
            resource: libc::RLIMIT_NPROC,
            value: u64::from(limits.max_tasks),
        });
    }
    if limits.memory_bytes > 0 && limits.address_space_limit {
        steps.push(Step::SetRlimit {
            resource: libc::RLIMIT_AS,
            value: limits.memory_bytes,
        });
    }
    let cgroup = spec.cgroup.as_ref().map(|placement| {
        let c = placement.controllers;
        let mut files = Vec::new();
        if c.memory && limits.memory_bytes > 0 {
            files.push(("memory.max".to_owned(), limits.memory_bytes.to_string()));
            if c.swap {
                files.push(("memory.swap.max".to_owned(), "0".to_owned()));
            }
        }
        if c.pids && limits.max_tasks > 0 {
            files.push(("pids.max".to_owned(), limits.max_tasks.to_string()));
        }
        if c.cpu && limits.cpu_percent > 0 {
            files.push((
                "cpu.max".to_owned(),
                format!("{} 100000", u64::from(limits.cpu_percent) * 1000),
            ));
        }
        (placement.dir.clone(), files)
    });
    let (limits_applied, limit_settings) = match &cgroup {
        Some((_, files)) => (
            LimitsApplied::CgroupV2,
            files
                .iter()
                .map(|(file, value)| format!("{file}={}", value.replace(' ', "/")))
                .collect(),
        ),
        None => {
            let mut settings = Vec::new();
            if limits.memory_bytes > 0 && limits.address_space_limit {
                settings.push(format!("RLIMIT_AS={}", limits.memory_bytes));
            }
            if limits.max_tasks > 0 {
                settings.push(format!("RLIMIT_NPROC={}", limits.max_tasks));
            }
            (LimitsApplied::Rlimits, settings)
        }
    };

    steps.push(Step::NoNewPrivs);

    let mut keep = Vec::new();
    let rules: Vec<PathRule> = binds
        .iter()
        .map(|bind| PathRule {
            path: bind.source.clone(),
            writable: bind.writable,
            executable: bind.executable,
        })
        .collect();
    if let Some(ruleset) = landlock_rules::build(&name, &rules, &spec.connect_ports)? {
        let staged = stage(&ruleset, stage_min, &name)?;
        steps.push(Step::Landlock {
            ruleset_fd: staged.as_raw_fd(),
        });
        keep.push(staged);
    }

    // Fds: stdio at 0..2, handles at 3.., extra fds after them.
    let mut env: Vec<(String, String)> = spec.env.clone();
    for (target, fd) in spec.stdio.iter().enumerate() {
        let staged = stage(fd, stage_min, &name)?;
        steps.push(Step::PlaceFd {
            from: staged.as_raw_fd(),
            to: target as RawFd,
        });
        keep.push(staged);
    }
    let mut handle_names = Vec::new();
    let mut handle_env = Vec::new();
    let mut next: RawFd = 3;
    for (local, fd) in &spec.handles {
        let staged = stage(fd, stage_min, &name)?;
        steps.push(Step::PlaceFd {
            from: staged.as_raw_fd(),
            to: next,
        });
        keep.push(staged);
        handle_names.push(local.clone());
        handle_env.push(format!("{local}={next}"));
        next += 1;
    }
    env.push((testudo_plan::env::HANDLES.to_owned(), handle_env.join(",")));
    for (var, fd) in &spec.extra_fds {
        let staged = stage(fd, stage_min, &name)?;
        steps.push(Step::PlaceFd {
            from: staged.as_raw_fd(),
            to: next,
        });
        keep.push(staged);
        env.push((var.clone(), next.to_string()));
        next += 1;
    }
    steps.push(Step::CloseOtherFds { first: first_free });
    steps.push(Step::Seccomp {
        role: spec.role,
        program: seccomp,
    });

    let exec_path = PathBuf::from("/bin").join(&program_name);
    let mut argv = vec![ctext(&program_name, &exec_path)?];
    for arg in &spec.args {
        argv.push(ctext(arg, &exec_path)?);
    }
    env.sort();
    let envp = env
        .iter()
        .map(|(key, value)| ctext(&format!("{key}={value}"), &exec_path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    steps.push(Step::Exec {
        path: cstring(&exec_path)?,
        argv,
        envp,
        argv_ptrs,
        envp_ptrs,
    });

    let mut clone_flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    if !spec.network {
        clone_flags |= libc::CLONE_NEWNET as u64;
    }

    Ok(Prepared {
        name,
        clone_flags,
        steps,
        uid_map,
        gid_map,
        deny_setgroups,
        visible_paths,
        handle_names,
        role: spec.role,
        syscalls_allowed,
        limits_applied,
        limit_settings,
        network: spec.network,
        cgroup,
        keep,
        sync,
        error,
    })
}
