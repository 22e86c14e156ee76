//! Promise: a real process started by `spawn` runs in its own namespaces with a minimal
//! read-only root, seccomp, no_new_privs and only its granted fds; a setup failure names
//! the step. Uses Debian's /usr/bin/cat, /usr/bin/tee and /usr/bin/true as the sandboxed programs.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use testudo_sandbox::{
    prepare, spawn, IdMapping, RealSys, ResourceLimits, SandboxError, SandboxSpec,
};

fn ids() -> IdMapping {
    // SAFETY: geteuid/getegid only read process credentials.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        IdMapping::Root { host_id: 200_000 }
    } else {
        IdMapping::Unprivileged { uid, gid }
    }
}

/// A spec for `program args`; its stdin is `stdin` (or /dev/null), stdout and stderr go
/// to `stdout`.
fn spec(
    root: &Path,
    program: &str,
    args: &[&str],
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
) -> SandboxSpec {
    let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
    let stderr = stdout.try_clone().expect("dup stdout");
    SandboxSpec {
        name: "probe".into(),
        program: PathBuf::from(program),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        handles: vec![],
        extra_fds: vec![],
        stdio: [stdin.unwrap_or_else(null), stdout, stderr],
        role: testudo_plan::SandboxRole::Service,
        network: false,
        connect_ports: vec![],
        binds: vec![],
        limits: ResourceLimits {
            memory_bytes: 256 << 20,
            address_space_limit: true,
            max_tasks: 4,
            cpu_percent: 0,
            max_fds: 64,
        },
        ids: ids(),
        root_dir: root.to_owned(),
        cgroup: None,
    }
}

/// Runs `program args` sandboxed; returns (exit code, stdout and stderr).
fn run(program: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut out_read, out_write) = std::io::pipe().expect("pipe");
    let prepared = prepare(spec(
        dir.path(),
        program,
        args,
        None,
        OwnedFd::from(out_write),
    ))
    .expect("prepare");
    let child = spawn(&RealSys, prepared).expect("spawn");
    let mut bytes = Vec::new();
    out_read.read_to_end(&mut bytes).expect("read stdout");
    let output = String::from_utf8_lossy(&bytes).into_owned();
    let code =
        testudo_sandbox::pidfd::wait(child.pidfd.as_fd(), testudo_sandbox::pidfd::WaitMode::Block)
            .expect("waitid")
            .expect("ended")
            .status;
    (code, output)
}

#[test]
fn it_runs_in_its_own_namespaces() {
    // `cat -` blocks on its stdin pipe until the parent has read its /proc entries.
    let dir = tempfile::tempdir().expect("tempdir");
    let (in_read, in_write) = std::io::pipe().expect("stdin pipe");
    let (mut out_read, out_write) = std::io::pipe().expect("stdout pipe");
    let prepared = prepare(spec(
        dir.path(),
        "/usr/bin/cat",
        &["-"],
        Some(OwnedFd::from(in_read)),
        OwnedFd::from(out_write),
    ))
    .expect("prepare");
    let child = spawn(&RealSys, prepared).expect("spawn");
    let enforcement = testudo_sandbox::proc_enforcement(child.pid);
    drop(in_write);
    let mut bytes = Vec::new();
    out_read.read_to_end(&mut bytes).expect("read stdout");
    let code =
        testudo_sandbox::pidfd::wait(child.pidfd.as_fd(), testudo_sandbox::pidfd::WaitMode::Block)
            .expect("waitid")
            .expect("ended")
            .status;
    let enforcement = enforcement.expect("read while it was still running");
    assert!(enforcement.own_mount_ns, "{enforcement:?}");
    assert!(enforcement.own_net_ns, "{enforcement:?}");
    assert!(enforcement.own_pid_ns, "{enforcement:?}");
    assert!(enforcement.own_user_ns, "{enforcement:?}");
    assert!(enforcement.own_ipc_ns, "{enforcement:?}");
    assert!(enforcement.own_uts_ns, "{enforcement:?}");
    assert_eq!(enforcement.seccomp_mode, 2, "{enforcement:?}");
    assert!(enforcement.no_new_privs, "{enforcement:?}");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&bytes));
}

#[test]
fn a_write_to_the_root_fails_read_only() {
    // `tee FILE` opens FILE for writing with O_CREAT, a syscall the service role allows, so
    // the kernel's answer (EROFS) is what the test sees, not seccomp.
    let (code, output) = run("/usr/bin/tee", &["/written-by-the-sandbox"]);
    assert_ne!(code, 0, "the write succeeded: {output}");
    assert!(
        output.contains("Read-only file system"),
        "code {code}: {output}"
    );
}

#[test]
fn only_granted_paths_are_visible() {
    let (code, _) = run("/usr/bin/cat", &["/bin/cat"]);
    assert_eq!(code, 0, "its own binary is visible");
    let (code, _) = run("/usr/bin/cat", &["/etc/passwd"]);
    assert_ne!(code, 0, "host files are not visible");
    let (code, output) = run("/usr/bin/cat", &["/proc/self/status"]);
    assert_ne!(code, 0, "no /proc inside: {output}");
}

#[test]
fn setup_failure_names_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = OwnedFd::from(std::fs::File::open("/dev/null").expect("null"));
    let mut bad = spec(dir.path(), "/usr/bin/true", &[], None, out);
    bad.binds.push(testudo_sandbox::Bind {
        source: PathBuf::from("/nonexistent-testudo"),
        target: PathBuf::from("/x"),
        writable: false,
        executable: false,
    });
    assert!(matches!(prepare(bad), Err(SandboxError::Path { .. })));
}
