//! `testudo-escape-probe ATTEMPT [ARG]`: a test component. It runs inside the sandbox like
//! any component, tries one escape, and reports `escape-probe ATTEMPT: denied (...)` or
//! `escape-probe ATTEMPT: ESCAPED (...)` to its `log` handle (stdout without one). Attempts
//! that the seccomp filter stops never report: the process is killed with SIGSYS and the
//! supervisor logs the denial.
//!
//! Attempts: `hold` (stay up), `crash CODE`, `open-path PATH`, `connect-via-net HOST:PORT`,
//! `connect-direct HOST:PORT`, `syscall ptrace|mount|kexec_load|bpf|init_module|
//! finit_module`, `signal`, `read-memory`, `list-fds`, `fork-bomb`, `memory`, and one
//! that is not an escape: `tpm-getrandom` (a TPM2_GetRandom through the `tpm` handle).

use std::process::ExitCode;

use testudo_scheme::{granted_handles, Handle, Rights};

struct Reporter {
    log: Option<Handle>,
}

impl Reporter {
    fn say(&self, line: &str) {
        match &self.log {
            Some(log) => {
                let _ = log.write(format!("{line}\n").as_bytes());
            }
            None => println!("{line}"),
        }
    }
}

fn block_forever() -> ! {
    loop {
        // SAFETY: poll on no fds just sleeps.
        unsafe { libc::poll(std::ptr::null_mut(), 0, -1) };
    }
}

fn raw_syscall(name: &str) -> Option<i64> {
    let number = match name {
        "ptrace" => libc::SYS_ptrace,
        "mount" => libc::SYS_mount,
        "kexec_load" => libc::SYS_kexec_load,
        "bpf" => libc::SYS_bpf,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        _ => return None,
    };
    // SAFETY: every argument is zero/NULL; the call is expected to be refused.
    Some(unsafe { libc::syscall(number, 0, 0, 0, 0, 0) })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attempt = args.first().map(String::as_str).unwrap_or("hold");
    let arg = args.get(1).cloned().unwrap_or_default();
    let mut handles = granted_handles().unwrap_or_default();
    let reporter = Reporter {
        log: handles.take(testudo_plan::interfaces::LOG).ok(),
    };
    let report = |denied: bool, detail: String| {
        let verdict = if denied { "denied" } else { "ESCAPED" };
        reporter.say(&format!("escape-probe {attempt}: {verdict} ({detail})"));
    };
    match attempt {
        "hold" => {
            reporter.say("escape-probe hold: up");
            block_forever()
        }
        "crash" => {
            reporter.say("escape-probe crash: exiting");
            return ExitCode::from(arg.parse::<u8>().unwrap_or(3));
        }
        "open-path" => match std::fs::File::open(&arg) {
            Ok(_) => report(false, format!("opened {arg}")),
            Err(error) => report(true, format!("open {arg}: {error}")),
        },
        "connect-via-net" => match handles.take(testudo_plan::interfaces::NET) {
            Ok(net) => match net.open_raw(
                &testudo_plan::interfaces::net_tcp_path(&arg),
                Rights::ReadWrite,
            ) {
                Ok(_) => report(false, format!("connected to {arg}")),
                Err(error) => report(true, format!("net refused {arg}: {error}")),
            },
            Err(error) => report(true, format!("no net handle: {error}")),
        },
        "connect-direct" => match std::net::TcpStream::connect(&arg) {
            Ok(_) => report(false, format!("connected to {arg} directly")),
            Err(error) => report(true, format!("connect {arg}: {error}")),
        },
        "syscall" => match raw_syscall(&arg) {
            Some(ret) if ret < 0 => {
                report(true, format!("{arg}: {}", std::io::Error::last_os_error()))
            }
            Some(ret) => report(false, format!("{arg} returned {ret}")),
            None => report(true, format!("unknown syscall {arg}")),
        },
        "signal" => {
            // SAFETY: tries to kill every process it can see; expected to be refused.
            let ret = unsafe { libc::kill(-1, libc::SIGKILL) };
            report(
                ret < 0,
                format!("kill(-1): {}", std::io::Error::last_os_error()),
            );
        }
        "read-memory" => {
            match std::fs::read("/proc/1/mem") {
                Ok(_) => report(false, "read /proc/1/mem".to_owned()),
                Err(error) => report(true, format!("/proc/1/mem: {error}")),
            }
            let mut byte = 0u8;
            let local = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            let remote = libc::iovec {
                iov_base: 0x400000 as *mut libc::c_void,
                iov_len: 1,
            };
            // SAFETY: reads one byte into a local; expected to be refused.
            let ret = unsafe { libc::process_vm_readv(1, &local, 1, &remote, 1, 0) };
            report(
                ret < 0,
                format!("process_vm_readv: {}", std::io::Error::last_os_error()),
            );
        }
        "tpm-getrandom" => {
            // TPM2_GetRandom(8): tag NO_SESSIONS, size 12, code 0x17b, bytesRequested 8.
            let command = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8];
            let outcome = handles.take(testudo_plan::interfaces::TPM).and_then(|tpm| {
                tpm.write(&command)?;
                let mut response = [0u8; 64];
                let n = tpm.read(&mut response)?;
                Ok(response[..n]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>())
            });
            match outcome {
                Ok(hex) => reporter.say(&format!("escape-probe tpm-getrandom: response {hex}")),
                Err(error) => reporter.say(&format!("escape-probe tpm-getrandom: failed: {error}")),
            }
        }
        "list-fds" => {
            // SAFETY: F_GETFD only inspects the fd table.
            let open: Vec<String> = (0..1024)
                .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
                .map(|fd| fd.to_string())
                .collect();
            reporter.say(&format!("escape-probe list-fds: {}", open.join(",")));
        }
        "fork-bomb" => {
            let mut forks = 0u32;
            loop {
                // SAFETY: fork in a single-threaded process; children do the same.
                let pid = unsafe { libc::fork() };
                if pid < 0 {
                    report(
                        true,
                        format!(
                            "fork refused after {forks}: {}",
                            std::io::Error::last_os_error()
                        ),
                    );
                    break;
                }
                forks += 1;
            }
        }
        "memory" => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = Vec::new();
                if chunk.try_reserve_exact(1 << 20).is_err() {
                    report(true, format!("allocation refused after {} MiB", held.len()));
                    break;
                }
                chunk.resize(1 << 20, 1);
                held.push(chunk);
                if held.len() > 16 * 1024 {
                    report(false, "allocated 16 GiB".to_owned());
                    break;
                }
            }
        }
        other => {
            reporter.say(&format!("escape-probe: unknown attempt {other}"));
            return ExitCode::from(2);
        }
    }
    block_forever()
}
