//! The WASM host's run-phase filters, installed for real in a forked child: without files a
//! file operation kills the process with `SIGSYS`, with files it runs, and what running needs
//! (memory, threads' clock, stderr) runs under both; an argument condition lets its value
//! through and kills on another (`prctl`: naming a thread only). Stacked on nothing here: the
//! policy alone decides.

use testudo_sandbox::policy::AppRunPolicy;

/// How the forked child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Exited(i32),
    Signalled(i32),
}

/// Forks; the child installs `policy` and runs `probe` (raw syscalls only, no allocation),
/// exiting 0 when it returned.
fn run_under(policy: AppRunPolicy, probe: fn()) -> Ending {
    let program = policy.compile().expect("compiles");
    // SAFETY: the child only makes raw syscalls (prctl, seccomp, the probe's) and _exit: all
    // async-signal-safe, so forking a multi-threaded test process is sound.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: raw syscalls with valid arguments; `prog` outlives the call.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(100);
            }
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                libc::_exit(101);
            }
        }
        probe();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    if libc::WIFSIGNALED(status) {
        Ending::Signalled(libc::WTERMSIG(status))
    } else {
        Ending::Exited(libc::WEXITSTATUS(status))
    }
}

fn open_a_directory() {
    // SAFETY: a NUL-terminated literal path; the fd is closed.
    unsafe {
        let fd = libc::openat(
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        );
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

fn run_like_an_app() {
    // SAFETY: raw syscalls on memory this probe maps and unmaps itself.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if page == libc::MAP_FAILED {
            libc::_exit(102);
        }
        libc::mprotect(page, 4096, libc::PROT_READ);
        libc::munmap(page, 4096);
        let mut now = std::mem::zeroed::<libc::timespec>();
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_THREAD_CPUTIME_ID,
            &mut now as *mut libc::timespec,
        );
        libc::write(2, b"".as_ptr().cast(), 0);
    }
}

fn execute_a_program() {
    // SAFETY: NUL-terminated path and a null-terminated argv; replaced or failed.
    unsafe {
        let path = c"/bin/true";
        let argv = [path.as_ptr(), std::ptr::null()];
        libc::execve(path.as_ptr(), argv.as_ptr(), std::ptr::null());
    }
}

fn name_this_thread() {
    // SAFETY: PR_SET_NAME with a NUL-terminated literal.
    unsafe {
        if libc::prctl(libc::PR_SET_NAME, c"probe".as_ptr(), 0, 0, 0) != 0 {
            libc::_exit(103);
        }
    }
}

fn make_this_process_undumpable() {
    // SAFETY: PR_SET_DUMPABLE only changes this forked child.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

#[test]
fn prctl_runs_only_to_name_a_thread() {
    for policy in AppRunPolicy::ALL {
        assert_eq!(
            run_under(policy, name_this_thread),
            Ending::Exited(0),
            "{}",
            policy.name()
        );
        assert_eq!(
            run_under(policy, make_this_process_undumpable),
            Ending::Signalled(libc::SIGSYS),
            "{}",
            policy.name()
        );
    }
}

#[test]
fn without_files_a_file_operation_kills_the_host() {
    assert_eq!(
        run_under(AppRunPolicy::WithoutFiles, open_a_directory),
        Ending::Signalled(libc::SIGSYS)
    );
}

#[test]
fn with_files_a_file_operation_runs() {
    assert_eq!(
        run_under(AppRunPolicy::WithFiles, open_a_directory),
        Ending::Exited(0)
    );
}

#[test]
fn running_an_app_needs_nothing_more_under_either_policy() {
    for policy in AppRunPolicy::ALL {
        assert_eq!(
            run_under(policy, run_like_an_app),
            Ending::Exited(0),
            "{}",
            policy.name()
        );
    }
}

#[test]
fn no_policy_lets_the_host_execute_a_program() {
    for policy in AppRunPolicy::ALL {
        assert_eq!(
            run_under(policy, execute_a_program),
            Ending::Signalled(libc::SIGSYS),
            "{}",
            policy.name()
        );
    }
}
