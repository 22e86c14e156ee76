//! Starting a prepared sandbox: clone into namespaces, map ids, release the child, and wait
//! until it has either exec'd (success) or reported which setup step failed.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use crate::child::run_steps;
use crate::{pidfd, Prepared, RuntimeReport, SandboxError, Sys};

/// A running sandboxed process.
#[derive(Debug)]
pub struct SandboxedChild {
    /// Host pid.
    pub pid: i32,
    /// pidfd (poll it for exit; `waitid(P_PIDFD)` reaps it).
    pub pidfd: OwnedFd,
    /// What is enforced on it (static part, from the preparation).
    pub report: RuntimeReport,
}

fn kernel(step: &'static str, component: &str) -> impl FnOnce(std::io::Error) -> SandboxError {
    let component = component.to_owned();
    move |source| SandboxError::Kernel {
        step,
        component,
        source,
    }
}

/// Kills and reaps a child whose setup failed (best effort: the setup error is what counts).
fn abandon(pidfd: &OwnedFd) {
    let _ = pidfd::send_signal(pidfd.as_fd(), libc::SIGKILL);
    let _ = pidfd::wait(pidfd.as_fd(), pidfd::WaitMode::Block);
}

/// Starts the sandbox described by `prepared`.
pub fn spawn<S: Sys>(sys: &S, prepared: Prepared) -> Result<SandboxedChild, SandboxError> {
    let Prepared {
        name,
        clone_flags,
        steps,
        uid_map,
        gid_map,
        deny_setgroups,
        visible_paths,
        handle_names,
        role,
        syscalls_allowed,
        limits_applied,
        limit_settings,
        network,
        cgroup,
        keep,
        sync,
        error,
    } = prepared;
    let (pid, pidfd) = match sys
        .clone_process(clone_flags)
        .map_err(kernel("clone3 into new namespaces", &name))?
    {
        None => {
            let (index, errno) = match run_steps(sys, &steps) {
                Ok(()) => (steps.len(), 0),
                Err(failure) => failure,
            };
            sys.child_fail(error.1.as_raw_fd(), index, errno)
        }
        Some(parent) => parent,
    };
    drop(keep);
    drop(sync.0);
    drop(error.1);
    let setup = || -> Result<(), SandboxError> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if deny_setgroups {
            sys.write_file(&proc_dir.join("setgroups"), "deny")
                .map_err(kernel("writing setgroups", &name))?;
        }
        sys.write_file(&proc_dir.join("uid_map"), &uid_map)
            .map_err(kernel("writing uid_map", &name))?;
        sys.write_file(&proc_dir.join("gid_map"), &gid_map)
            .map_err(kernel("writing gid_map", &name))?;
        if let Some((dir, files)) = &cgroup {
            std::fs::create_dir_all(dir).map_err(kernel("creating the cgroup", &name))?;
            for (file, value) in files {
                sys.write_file(&dir.join(file), value)
                    .map_err(kernel("writing a cgroup limit", &name))?;
            }
            sys.write_file(&dir.join("cgroup.procs"), &pid.to_string())
                .map_err(kernel("moving the process into its cgroup", &name))?;
        }
        Ok(())
    };
    if let Err(failure) = setup() {
        abandon(&pidfd);
        return Err(failure);
    }
    let mut release = std::fs::File::from(sync.1);
    if let Err(source) = release.write_all(&[1]) {
        abandon(&pidfd);
        return Err(kernel("releasing the child", &name)(source));
    }
    drop(release);
    let mut report = [0u8; 8];
    let mut errors = std::fs::File::from(error.0);
    let mut got = 0;
    while got < report.len() {
        match errors.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                abandon(&pidfd);
                return Err(kernel("reading the child's setup result", &name)(source));
            }
        }
    }
    if got == report.len() {
        let index = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]) as usize;
        let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        abandon(&pidfd);
        return Err(SandboxError::ChildSetup {
            component: name,
            step: steps
                .get(index)
                .map_or_else(|| "after the last step".to_owned(), |step| step.describe()),
            errno,
        });
    }
    Ok(SandboxedChild {
        pid,
        pidfd,
        report: RuntimeReport {
            component: name,
            pid,
            role,
            syscalls_allowed,
            syscalls_total: crate::policy::X86_64_SYSCALLS,
            handles: handle_names,
            paths_visible: visible_paths
                .into_iter()
                .map(|(path, mode)| format!("{path} ({mode})"))
                .collect(),
            network,
            limits: limits_applied.as_str().to_owned(),
            limit_settings,
            enforcement: None,
        },
    })
}
