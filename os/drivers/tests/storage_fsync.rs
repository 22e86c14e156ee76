//! Promise: `fsync` on storage handles works inside the storage driver's real sandbox (role
//! `storage-driver`: the driver is not killed with SIGSYS, still under 42 syscalls), and
//! data written and then synced through a handle is on disk, not only in the page cache:
//! after the `fsync` the file's pages are clean, so the kernel can drop every one of them
//! (`POSIX_FADV_DONTNEED` keeps dirty pages), and reading the file back gives the bytes. An
//! atomic replacement (`NAME?replace`) abandoned without `fsync` leaves the old file; synced,
//! it takes its place (the driver may rename and unlink in its sandbox).
//!
//! The driver is started the way `testudo-init` starts it (`spec_for`, its own namespaces,
//! `/data` bound from a directory on the target dir's disk); this test is its consumer.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use common::*;
use testudo_init::launch::{spec_for, LaunchContext, LaunchFds};
use testudo_init::InitOptions;
use testudo_plan::plan::{ComponentKind, RestartPolicy};
use testudo_plan::SandboxRole;
use testudo_sandbox::pidfd::{self, WaitMode};
use testudo_scheme::{handle_pair, send_grant, Grant, Handle, NodeKind, Rights};

/// Bytes written before the sync: several pages, in more than one scheme write.
const CHUNK: usize = 48 * 1024;
const CHUNKS: usize = 5;

/// `statfs` magic of tmpfs, where `fsync` and page eviction mean nothing.
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn filesystem_magic(path: &Path) -> i64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: `c_path` is a valid NUL-terminated string; `stat` is written by the kernel.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(c_path.as_ptr(), &mut stat), 0, "statfs");
        stat.f_type as i64
    }
}

/// Asks the kernel to drop `path`'s cached pages, then counts the pages still resident.
/// Dirty pages cannot be dropped: a nonzero count after an `fsync` means data not on disk.
fn resident_pages_after_drop(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("open the synced file");
    let len = file.metadata().expect("metadata").len() as usize;
    assert!(len > 0);
    // SAFETY: plain syscalls on a valid fd; the mapping is only passed to mincore (never
    // dereferenced) and unmapped before returning; `pages` has one byte per page.
    unsafe {
        let advice = libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        assert_eq!(advice, 0, "posix_fadvise");
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let mut pages = vec![0u8; len.div_ceil(page)];
        let core = libc::mincore(map, len, pages.as_mut_ptr());
        libc::munmap(map, len);
        assert_eq!(core, 0, "mincore");
        pages.iter().filter(|p| **p & 1 == 1).count()
    }
}

/// How the driver ended, if it did within a few seconds (without reaping it): a seccomp
/// kill shows as SIGSYS. Only called once something failed.
fn exit_state(pidfd: &OwnedFd) -> String {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one valid pidfd for at most 5 s.
    unsafe { libc::poll(&mut pfd, 1, 5_000) };
    match pidfd::wait(pidfd.as_fd(), WaitMode::Peek) {
        Ok(Some(exit)) => match exit.exited() {
            Some(status) => format!("exited with status {status}"),
            None => format!("killed by signal {} (SIGSYS = seccomp)", exit.status),
        },
        _ => "still running".to_owned(),
    }
}

#[test]
fn synced_storage_writes_are_on_disk_and_the_sandbox_allows_fsync() {
    // On the target dir's filesystem, not a possibly-tmpfs /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    assert_ne!(
        filesystem_magic(dir.path()),
        TMPFS_MAGIC,
        "CARGO_TARGET_TMPDIR is on tmpfs: this test needs a disk-backed filesystem"
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let options = InitOptions::new(
        bin_dir(),
        dir.path().join("state"),
        data.clone(),
        dir.path().to_owned(),
    );
    let storage = component(ComponentKind::Driver, "testudo-storage")
        .role(SandboxRole::StorageDriver)
        .provides("files", "storage")
        .restart(RestartPolicy::Never)
        .0;
    let plan = plan(vec![("storage", storage.clone())]);
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, b"{}").expect("plan file");
    let output = dir.path().join("driver.out");
    let out = OwnedFd::from(std::fs::File::create(&output).expect("output file"));
    let (control, control_child) = handle_pair().expect("control socket");
    let ctx = LaunchContext {
        plan: &plan,
        name: "storage",
        index: 0,
        options: &options,
        plan_file: &plan_file,
        cgroup: None,
        module_source: None,
    };
    let spec = spec_for(
        &ctx,
        &storage,
        bin_dir().join("testudo-storage"),
        LaunchFds {
            handles: Vec::new(),
            control: Some(control_child),
            stdio: [
                OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")),
                out.try_clone().expect("dup"),
                out,
            ],
        },
    )
    .expect("spec");
    assert_eq!(spec.role, SandboxRole::StorageDriver);
    let prepared = testudo_sandbox::prepare(spec).expect("prepare");
    let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).expect("spawn");
    assert!(
        child.report.syscalls_allowed < 42,
        "storage-driver allows {} syscalls",
        child.report.syscalls_allowed
    );
    let driver_output = || {
        format!(
            "driver {}; output:\n{}",
            exit_state(&child.pidfd),
            std::fs::read_to_string(&output).unwrap_or_default()
        )
    };

    // Like init routing an app's `uses` entry: a root handle over the control socket.
    let (kept, given) = handle_pair().expect("handle pair");
    send_grant(
        control.as_fd(),
        &Grant {
            consumer: "app".into(),
            capability: "files".into(),
            rights: Rights::ReadWrite,
            allow: Vec::new(),
        },
        kept.as_fd(),
    )
    .expect("grant");
    drop(kept);
    let root = Handle::from_fd(given);

    // A new file (the driver creates it and syncs the directory), written, then synced.
    let file = root
        .open("journal", Rights::ReadWrite)
        .unwrap_or_else(|e| panic!("open: {e}; {}", driver_output()));
    let mut expected = Vec::new();
    for n in 0..CHUNKS {
        let chunk = vec![b'a' + n as u8; CHUNK];
        assert_eq!(file.write(&chunk).expect("write"), CHUNK);
        expected.extend_from_slice(&chunk);
    }
    file.fsync()
        .unwrap_or_else(|e| panic!("fsync: {e}; {}", driver_output()));
    // Any handle may sync: a read-only one, and the directory.
    file.dup(Rights::Read)
        .expect("dup read-only")
        .fsync()
        .expect("fsync on a read-only handle");
    root.fsync().expect("fsync on the directory handle");
    assert_eq!(
        file.fstat().expect("the driver still serves").kind,
        NodeKind::File
    );

    let on_host = data.join("app").join("journal");
    assert_eq!(
        resident_pages_after_drop(&on_host),
        0,
        "pages of a synced file are still dirty in the page cache"
    );
    assert!(
        std::fs::read(&on_host).expect("read back") == expected,
        "the file holds what was written"
    );

    // Atomic replacement: abandoned, then committed.
    let abandoned = root
        .open("journal?replace", Rights::Write)
        .unwrap_or_else(|e| panic!("open ?replace: {e}; {}", driver_output()));
    abandoned.write(b"half").expect("write");
    drop(abandoned);
    let replacement = root
        .open("journal?replace", Rights::Write)
        .expect("open ?replace");
    replacement.write(b"whole").expect("write");
    assert!(std::fs::read(&on_host).expect("read back") == expected);
    replacement
        .fsync()
        .unwrap_or_else(|e| panic!("commit: {e}; {}", driver_output()));
    assert_eq!(std::fs::read(&on_host).expect("read back"), b"whole");
    drop(replacement);
    assert_eq!(
        std::fs::read_dir(data.join("app")).expect("dir").count(),
        1,
        "no temporary file is left"
    );

    // Init closes the control socket: the driver ends normally (a seccomp kill would show
    // as CLD_KILLED/CLD_DUMPED with SIGSYS).
    drop((file, root, control));
    let exit = pidfd::wait(child.pidfd.as_fd(), WaitMode::Block)
        .expect("waitid")
        .expect("ended");
    assert_eq!(
        (exit.code, exit.status),
        (libc::CLD_EXITED, 0),
        "the storage driver did not exit cleanly; output:\n{}",
        std::fs::read_to_string(&output).unwrap_or_default()
    );
}
