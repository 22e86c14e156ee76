//! The real [`ProgramRunner`]: each program in the component sandbox (`testudo-sandbox`), in
//! new user, mount, pid, ipc, uts, cgroup and net namespaces, with a root that shows only the
//! tools (read-only), the bundle (read-only), the slot devices of its step (read-write), a
//! private `/tmp` and `/dev/{null,zero,urandom}`; landlock mirrors those paths and denies TCP,
//! seccomp runs the `bundle_program` policy. Killing the program at its timeout kills its pid
//! namespace, so nothing it started outlives it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testudo_sandbox::pidfd::{self, WaitMode};
use testudo_sandbox::{Bind, IdMapping, RealSys, ResourceLimits, SandboxSpec};

use super::{ProgramExit, ProgramOutcome, ProgramRun, ProgramRunner, OUTPUT_TAIL};
use crate::error::{read_err, write_err, Result, UpdaterError};
use crate::system_conf::BundleProgramsConf;

/// Memory (address space) one program may use.
const MEMORY_LIMIT: u64 = 1 << 30;

/// Open files one program may hold.
const MAX_FDS: u32 = 1024;

/// Runs programs sandboxed, each at most `timeout`.
#[derive(Debug, Clone)]
pub struct SandboxedRunner {
    tools: Vec<PathBuf>,
    timeout: Duration,
}

impl SandboxedRunner {
    /// The runner `[bundle-programs]` describes.
    pub fn new(conf: &BundleProgramsConf) -> Self {
        SandboxedRunner {
            tools: conf.tools.clone(),
            timeout: conf.timeout,
        }
    }

    /// The paths the program sees besides itself and the basic devices.
    fn binds(&self, run: &ProgramRun, tmp: &Path) -> Vec<Bind> {
        let mut binds: Vec<Bind> = self
            .tools
            .iter()
            .filter(|tool| tool.exists())
            .map(|tool| Bind {
                source: tool.clone(),
                target: tool.clone(),
                writable: false,
                executable: true,
            })
            .collect();
        // The private /tmp before the bundle and the slots, which may live below /tmp.
        binds.push(Bind {
            source: tmp.to_path_buf(),
            target: PathBuf::from("/tmp"),
            writable: true,
            executable: false,
        });
        binds.push(Bind {
            source: run.bundle_dir.clone(),
            target: run.bundle_mount_point.clone(),
            writable: false,
            executable: true,
        });
        binds.extend(run.writable.iter().map(|device| Bind {
            source: device.clone(),
            target: device.clone(),
            writable: true,
            executable: false,
        }));
        binds
    }
}

/// The id the program runs as on the host: root's own (so it may write root's slot devices,
/// with no capability left) when the updater is root, else the caller's.
fn id_mapping() -> IdMapping {
    // SAFETY: getters without arguments or failure modes.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        IdMapping::Root { host_id: 0 }
    } else {
        IdMapping::Unprivileged { uid, gid }
    }
}

/// The last [`OUTPUT_TAIL`] bytes of `file`, lossy UTF-8.
fn tail(mut file: File, path: &Path) -> Result<String> {
    let len = file.seek(SeekFrom::End(0)).map_err(read_err(path))?;
    let start = len.saturating_sub(OUTPUT_TAIL as u64);
    file.seek(SeekFrom::Start(start)).map_err(read_err(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_err(path))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Waits for the process behind `pidfd` until `deadline`; kills it there.
fn wait_until(pidfd: &OwnedFd, deadline: Instant, name: &str) -> Result<ProgramExit> {
    let waited = |source| UpdaterError::WaitForTool {
        tool: name.to_owned(),
        source,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // The pid namespace's first process: killing it kills everything it started.
            let _ = pidfd::send_signal(pidfd.as_fd(), libc::SIGKILL);
            pidfd::wait(pidfd.as_fd(), WaitMode::Block).map_err(waited)?;
            return Ok(ProgramExit::TimedOut);
        }
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd we own, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(waited(error));
            }
            continue;
        }
        if let Some(exit) = pidfd::wait(pidfd.as_fd(), WaitMode::Poll).map_err(waited)? {
            return Ok(match exit.exited() {
                Some(code) => ProgramExit::Code(code),
                None => ProgramExit::Signal(exit.status),
            });
        }
    }
}

impl ProgramRunner for SandboxedRunner {
    fn run(&self, run: &ProgramRun) -> Result<ProgramOutcome> {
        let scratch = std::env::temp_dir();
        let temp = |what: &str| {
            tempfile::Builder::new()
                .prefix(what)
                .tempdir()
                .map_err(write_err(&scratch))
        };
        let root = temp("testudo-program-root-")?;
        let tmp = temp("testudo-program-tmp-")?;
        let stdout = tempfile::tempfile().map_err(write_err(&scratch))?;
        let stderr = tempfile::tempfile().map_err(write_err(&scratch))?;
        let stdin = File::open("/dev/null").map_err(read_err("/dev/null"))?;
        let dup = |file: &File| {
            file.try_clone()
                .map(OwnedFd::from)
                .map_err(write_err(&scratch))
        };
        let spec = SandboxSpec {
            name: "bundle-program".to_string(),
            program: run.program.clone(),
            args: run.args.clone(),
            env: run.env.clone(),
            handles: Vec::new(),
            extra_fds: Vec::new(),
            stdio: [OwnedFd::from(stdin), dup(&stdout)?, dup(&stderr)?],
            role: testudo_plan::SandboxRole::BundleProgram,
            network: false,
            connect_ports: Vec::new(),
            binds: self.binds(run, tmp.path()),
            limits: ResourceLimits {
                memory_bytes: MEMORY_LIMIT,
                address_space_limit: true,
                // RLIMIT_NPROC counts the host user's processes, root's included: no cap here;
                // the timeout ends whatever the program started.
                max_tasks: 0,
                cpu_percent: 0,
                max_fds: MAX_FDS,
            },
            ids: id_mapping(),
            root_dir: root.path().to_path_buf(),
            cgroup: None,
        };
        let sandbox_err = |source| UpdaterError::ProgramSandbox {
            program: run.name.clone(),
            source,
        };
        let deadline = Instant::now() + self.timeout;
        let prepared = testudo_sandbox::prepare(spec).map_err(sandbox_err)?;
        let child = testudo_sandbox::spawn(&RealSys, prepared).map_err(sandbox_err)?;
        let exit = wait_until(&child.pidfd, deadline, &run.name)?;
        Ok(ProgramOutcome {
            name: run.name.clone(),
            exit,
            stdout: tail(stdout, &scratch)?,
            stderr: tail(stderr, &scratch)?,
        })
    }
}
