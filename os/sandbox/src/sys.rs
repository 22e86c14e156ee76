//! The kernel-facing layer of the sandbox (youki's `Syscall` pattern): [`RealSys`] performs
//! the calls, [`RecordingSys`] records them for unit tests.

use std::cell::RefCell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use crate::Step;

/// Kernel operations needed to start a sandboxed process.
pub trait Sys {
    /// Child side: performs one setup step; returns the errno on failure. Runs after
    /// `clone` in a copy of a possibly multi-threaded process: must not allocate.
    fn child_step(&self, step: &Step) -> Result<(), i32>;
    /// `clone3` into new namespaces (`flags`) with a pidfd. `Ok(None)` in the child,
    /// `Ok(Some((pid, pidfd)))` in the parent.
    fn clone_process(&self, flags: u64) -> io::Result<Option<(i32, OwnedFd)>>;
    /// Writes a (procfs/cgroupfs) file.
    fn write_file(&self, path: &Path, content: &str) -> io::Result<()>;
    /// Child side: report `(step index, errno)` on `fd` and exit.
    fn child_fail(&self, fd: i32, step: usize, errno: i32) -> !;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(ret: libc::c_long) -> Result<(), i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `struct clone_args` of `clone3(2)`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

impl Sys for RealSys {
    fn child_step(&self, step: &Step) -> Result<(), i32> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: (whole block) every pointer passed below comes from a CString or Vec owned
        // by `step`, alive for the duration of the call; the calls only affect this process.
        unsafe {
            match step {
                Step::WaitForParent { fd } => {
                    let mut byte = 0u8;
                    loop {
                        let n = libc::read(*fd, (&mut byte as *mut u8).cast(), 1);
                        if n == 1 {
                            return Ok(());
                        }
                        if n == 0 {
                            return Err(libc::EPIPE);
                        }
                        if errno() != libc::EINTR {
                            return Err(errno());
                        }
                    }
                }
                Step::NewSession => check(libc::setsid() as libc::c_long),
                Step::SetHostname { name } => {
                    check(libc::sethostname(name.as_ptr(), name.as_bytes().len()) as libc::c_long)
                }
                Step::MakeMountsPrivate => check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) as libc::c_long),
                Step::MountTmpfs { target } => check(libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=0755,size=64k".as_ptr().cast(),
                ) as libc::c_long),
                Step::Mkdir { path } => {
                    if libc::mkdir(path.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                        return Err(errno());
                    }
                    Ok(())
                }
                Step::CreateFile { path } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        return Err(errno());
                    }
                    libc::close(fd);
                    Ok(())
                }
                Step::Symlink { target, path } => {
                    check(libc::symlink(target.as_ptr(), path.as_ptr()) as libc::c_long)
                }
                Step::Bind { source, target } => check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) as libc::c_long),
                Step::RemountReadOnly { target, keep_flags } => check(libc::mount(
                    null,
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | *keep_flags,
                    std::ptr::null(),
                )
                    as libc::c_long),
                Step::PivotRoot { new_root, put_old } => {
                    check(libc::syscall(
                        libc::SYS_pivot_root,
                        new_root.as_ptr(),
                        put_old.as_ptr(),
                    ))?;
                    check(libc::chdir(c"/".as_ptr()) as libc::c_long)
                }
                Step::DropOldRoot { path } => {
                    check(libc::umount2(path.as_ptr(), libc::MNT_DETACH) as libc::c_long)?;
                    check(libc::rmdir(path.as_ptr()) as libc::c_long)
                }
                Step::RemountRootReadOnly => check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV,
                    std::ptr::null(),
                ) as libc::c_long),
                Step::SetRlimit { resource, value } => {
                    let limit = libc::rlimit {
                        rlim_cur: *value,
                        rlim_max: *value,
                    };
                    check(libc::setrlimit(*resource as _, &limit) as libc::c_long)
                }
                // Raw syscalls, not the glibc wrappers: glibc's set*id broadcast to every thread
                // it believes exists (it does not know this is a clone3 child) and deadlock.
                Step::ClearGroups => check(libc::syscall(
                    libc::SYS_setgroups,
                    0,
                    std::ptr::null::<libc::gid_t>(),
                )),
                Step::SetIds { id } => {
                    check(libc::syscall(libc::SYS_setresgid, *id, *id, *id))?;
                    check(libc::syscall(libc::SYS_setresuid, *id, *id, *id))
                }
                Step::NoNewPrivs => {
                    check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)
                }
                Step::Landlock { ruleset_fd } => check(libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    *ruleset_fd,
                    0,
                )),
                Step::PlaceFd { from, to } => {
                    if from == to {
                        check(libc::fcntl(*to, libc::F_SETFD, 0) as libc::c_long)
                    } else {
                        check(libc::dup2(*from, *to) as libc::c_long)
                    }
                }
                Step::CloseOtherFds { first } => check(libc::syscall(
                    libc::SYS_close_range,
                    *first as libc::c_uint,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_CLOEXEC,
                )),
                Step::Seccomp { program, .. } => {
                    let prog = libc::sock_fprog {
                        len: program.len() as libc::c_ushort,
                        filter: program.as_ptr() as *mut libc::sock_filter,
                    };
                    check(libc::syscall(
                        libc::SYS_seccomp,
                        SECCOMP_SET_MODE_FILTER,
                        0 as libc::c_ulong,
                        &prog as *const libc::sock_fprog,
                    ))
                }
                Step::Exec {
                    path,
                    argv_ptrs,
                    envp_ptrs,
                    ..
                } => {
                    libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
                    Err(errno())
                }
            }
        }
    }

    fn clone_process(&self, flags: u64) -> io::Result<Option<(i32, OwnedFd)>> {
        let mut pidfd: libc::c_int = -1;
        let args = CloneArgs {
            flags: flags | libc::CLONE_PIDFD as u64,
            pidfd: (&mut pidfd as *mut libc::c_int) as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child
        // gets a copy of this address space and returns here with 0. The caller runs only
        // pre-built, allocation-free steps in the child.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match ret {
            r if r < 0 => Err(io::Error::last_os_error()),
            0 => Ok(None),
            // SAFETY: the kernel wrote a new pidfd that this process now owns (CLONE_PIDFD).
            pid => Ok(Some((pid as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))),
        }
    }

    fn write_file(&self, path: &Path, content: &str) -> io::Result<()> {
        std::fs::write(path, content)
    }

    fn child_fail(&self, fd: i32, step: usize, errno: i32) -> ! {
        let mut report = [0u8; 8];
        report[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        report[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: writes 8 bytes from a stack buffer, then leaves without running any
        // destructor or atexit handler of the copied parent state.
        unsafe {
            libc::write(fd, report.as_ptr().cast(), report.len());
            libc::_exit(127)
        }
    }
}

/// Records every operation instead of performing it; `clone_process` pretends to be the
/// parent of pid 4242.
#[derive(Debug, Default)]
pub struct RecordingSys {
    calls: RefCell<Vec<String>>,
}

impl RecordingSys {
    /// The recorded operations, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Sys for RecordingSys {
    fn child_step(&self, step: &Step) -> Result<(), i32> {
        self.calls.borrow_mut().push(step.describe());
        Ok(())
    }

    fn clone_process(&self, flags: u64) -> io::Result<Option<(i32, OwnedFd)>> {
        self.calls.borrow_mut().push(format!("clone3 {flags:#x}"));
        let placeholder = std::fs::File::open("/dev/null")?;
        Ok(Some((4242, OwnedFd::from(placeholder))))
    }

    fn write_file(&self, path: &Path, content: &str) -> io::Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("write {} {}", path.display(), content.trim_end()));
        Ok(())
    }

    fn child_fail(&self, _fd: i32, step: usize, errno: i32) -> ! {
        // Never reached: the recording clone always returns as the parent.
        eprintln!("recording sys: child step {step} failed with {errno}");
        std::process::abort()
    }
}
