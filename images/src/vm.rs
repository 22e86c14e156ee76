//! Boots a disk image in QEMU the way a board boots it: UEFI firmware (OVMF), the disk as
//! virtio-blk (its drivers in the initramfs, from the board's `modules.always`), a virtio NIC
//! on user networking, a TPM 2.0 from swtpm, and the serial console on a pipe that is echoed
//! to stdout and matched line by line.
//!
//! Acceleration defaults to TCG (KVM is unreliable on the build machines); `kvm:tcg` tries
//! KVM first. With an expectation, the run ends as soon as the console matches, or fails when
//! the timeout passes or QEMU exits first; in every case QEMU and swtpm are stopped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::{ImageError, Result};
use crate::tool::package_of;

/// The console line testudo-init prints once every component is up (its `ready` event,
/// `os/init/src/events.rs`): what "booted" means for `testudo vm run --until-ready`, the
/// cargo VM tests and the Nix VM check.
pub const READY_PATTERN: &str = "testudo-init: ready:";

/// UEFI firmware files.
#[derive(Debug, Clone)]
pub struct Firmware {
    /// Read-only code (`OVMF_CODE_4M.fd`).
    pub code: PathBuf,
    /// Template for the writable variable store (`OVMF_VARS_4M.fd`), copied per VM.
    pub vars_template: PathBuf,
}

impl Default for Firmware {
    fn default() -> Self {
        Firmware {
            code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            vars_template: PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
        }
    }
}

/// How to run a VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The disk image to boot.
    pub disk: PathBuf,
    /// Stop successfully once a console line matches this regular expression.
    pub expect: Option<String>,
    /// Give up after this long (only with an expectation, or when set explicitly).
    pub timeout: Option<Duration>,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// QEMU accelerator list, e.g. `tcg` or `kvm:tcg`.
    pub accel: String,
    /// Directory keeping the VM's firmware variables and TPM state between runs (a fresh
    /// temporary one when `None`).
    pub state_dir: Option<PathBuf>,
    /// Discard the guest's disk writes (QEMU `snapshot=on`).
    pub snapshot: bool,
    /// Echo the console to stdout.
    pub echo: bool,
    /// Attach a swtpm TPM 2.0.
    pub tpm: bool,
    /// Firmware files.
    pub firmware: Firmware,
}

impl VmOptions {
    /// Defaults for booting `disk`: 512 MiB, TCG, TPM, console echoed, no expectation.
    pub fn new(disk: &Path) -> Self {
        VmOptions {
            disk: disk.to_path_buf(),
            expect: None,
            timeout: None,
            memory_mib: 512,
            accel: "tcg".to_owned(),
            state_dir: None,
            snapshot: false,
            echo: true,
            tpm: true,
            firmware: Firmware::default(),
        }
    }
}

/// How a VM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmOutcome {
    /// The console matched the expectation.
    Matched {
        /// The matching line.
        line: String,
        /// Time from starting QEMU to the match.
        elapsed: Duration,
        /// Every console line up to and including the matching one, cleaned.
        console: Vec<String>,
    },
    /// QEMU exited (no expectation given).
    Exited {
        /// Its exit status.
        status: String,
    },
}

/// Kills and reaps a child process when dropped.
struct Reaped(Option<Child>);

impl Reaped {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes terminal escape sequences and carriage returns from console text.
pub fn clean_console_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The processor QEMU emulates: its default x86-64 model (whose features include the board's
/// `cpu_features` the apps are precompiled for) with a hardware random number generator.
pub const QEMU_CPU: &str = "qemu64,+rdrand";

/// The disk controller QEMU gives the VM: virtio-blk, whose drivers (modules in Debian's
/// cloud kernel) the QEMU board has its initramfs load (`modules.always`). Not QEMU's NVMe
/// controller, although its driver is built in: its emulation lost a request now and then
/// under TCG (the guest's I/O stopped, the driver reset the controller after its timeouts
/// and the boot died on I/O errors); see decision 0100. Firmware boots set `bootindex=0` on
/// it; a direct kernel boot (`-kernel`) must not, QEMU gives that index to the kernel.
pub const QEMU_DISK_DEVICE: &str = "virtio-blk-pci,drive=disk0,serial=testudo0";

/// The QEMU command line for `options`, with the TPM control socket `tpm_socket`.
pub fn qemu_args(options: &VmOptions, vars: &Path, tpm_socket: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-machine".into(),
        format!("q35,accel={}", options.accel),
        // QEMU's default processor plus RDRAND (which TCG emulates), as an x86 gateway's has:
        // the kernel trusts it (Debian's RANDOM_TRUST_CPU) and its random generator is ready
        // from the start. Without a hardware source the guest's first `getrandom` (the agent's
        // first TLS handshake) waited about 1.3 s for jitter entropy under TCG.
        "-cpu".into(),
        QEMU_CPU.into(),
        "-m".into(),
        options.memory_mib.to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            options.firmware.code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-drive".into(),
        format!(
            "if=none,id=disk0,format=raw,file={}{}",
            options.disk.display(),
            if options.snapshot { ",snapshot=on" } else { "" }
        ),
        "-device".into(),
        format!("{QEMU_DISK_DEVICE},bootindex=0"),
        "-netdev".into(),
        "user,id=net0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
    ];
    if let Some(socket) = tpm_socket {
        args.extend([
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]);
    }
    args
}

/// The swtpm command line: a TPM 2.0 keeping its state in `state`'s `tpm` directory,
/// controlled through the socket `tpm_socket`, ending when QEMU disconnects.
pub fn swtpm_args(state: &Path, tpm_socket: &Path) -> Vec<String> {
    let mut args = swtpm_state_args(state);
    args.extend([
        "--ctrl".to_owned(),
        format!("type=unixio,path={}", tpm_socket.display()),
        "--terminate".to_owned(),
    ]);
    args
}

/// The start of every swtpm command line for the VM whose state directory is `state`: a
/// TPM 2.0 keeping its state in `state/tpm` (shared with [`crate::vm_tpm`], which opens the
/// same TPM on the host between boots).
pub fn swtpm_state_args(state: &Path) -> Vec<String> {
    vec![
        "socket".to_owned(),
        "--tpm2".to_owned(),
        "--tpmstate".to_owned(),
        format!("dir={}", state.join("tpm").display()),
    ]
}

/// The rest of a console line whose beginning already arrived: bytes up to the next newline,
/// waiting at most [`LINE_COMPLETION`] (echoed like the rest of the console).
fn finish_line(rx: &mpsc::Receiver<Vec<u8>>, echo: bool, console: &mut impl Write) -> Vec<u8> {
    let until = Instant::now() + LINE_COMPLETION;
    let mut rest = Vec::new();
    while let Ok(chunk) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        let end = chunk.iter().position(|b| *b == b'\n');
        let take = end.unwrap_or(chunk.len());
        if echo {
            let _ = console.write_all(&chunk[..take]);
            let _ = console.flush();
        }
        rest.extend_from_slice(&chunk[..take]);
        if end.is_some() {
            break;
        }
    }
    rest
}

/// How long swtpm may take to create its control socket.
const SWTPM_SOCKET_WAIT: Duration = Duration::from_secs(10);

/// How long a matched partial console line may take to be completed for the report.
const LINE_COMPLETION: Duration = Duration::from_millis(200);

fn spawn(
    program: &str,
    args: &[String],
    stdout: Stdio,
    stdin: Stdio,
    stderr: Stdio,
    disk: &Path,
) -> Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ImageError::ToolMissing {
                    tool: program.to_owned(),
                    package: package_of(program),
                }
            } else {
                ImageError::VmStart {
                    disk: disk.to_path_buf(),
                    program: program.to_owned(),
                    source,
                }
            }
        })
}

/// Boots `options.disk` and runs until the expectation matches, QEMU exits or time runs out.
pub fn run_vm(options: &VmOptions) -> Result<VmOutcome> {
    let disk = &options.disk;
    if !disk.is_file() {
        return Err(ImageError::VmDiskMissing { disk: disk.clone() });
    }
    for file in [&options.firmware.code, &options.firmware.vars_template] {
        if !file.is_file() {
            return Err(ImageError::ToolMissing {
                tool: format!("UEFI firmware {}", file.display()),
                package: "ovmf",
            });
        }
    }
    let pattern = match &options.expect {
        Some(p) => Some(Regex::new(p).map_err(|source| ImageError::ExpectPattern {
            pattern: p.clone(),
            source,
        })?),
        None => None,
    };
    // Sockets need a short path; state may live anywhere.
    let runtime = tempfile::Builder::new()
        .prefix("testudo-vm-")
        .tempdir()
        .map_err(|source| ImageError::VmRuntimeDir {
            disk: disk.clone(),
            source,
        })?;
    let state = options
        .state_dir
        .clone()
        .unwrap_or_else(|| runtime.path().join("state"));
    std::fs::create_dir_all(state.join("tpm")).map_err(ImageError::write(&state))?;
    let vars = state.join("OVMF_VARS.fd");
    if !vars.is_file() {
        std::fs::copy(&options.firmware.vars_template, &vars).map_err(ImageError::write(&vars))?;
    }

    let mut swtpm = Reaped(None);
    let tpm_socket = runtime.path().join("tpm.sock");
    if options.tpm {
        let args = swtpm_args(&state, &tpm_socket);
        // Its chatter ("Data client disconnected") would land in the middle of console
        // lines: it goes to a log, shown only if swtpm fails.
        let swtpm_log = runtime.path().join("swtpm.log");
        let log_file = std::fs::File::create(&swtpm_log).map_err(ImageError::write(&swtpm_log))?;
        swtpm.0 = Some(spawn(
            "swtpm",
            &args,
            Stdio::null(),
            Stdio::null(),
            Stdio::from(log_file),
            &options.disk,
        )?);
        let deadline = Instant::now() + SWTPM_SOCKET_WAIT;
        while !tpm_socket.exists() {
            if Instant::now() > deadline {
                return Err(ImageError::SwtpmSocketTimeout {
                    disk: disk.clone(),
                    socket: tpm_socket,
                    seconds: SWTPM_SOCKET_WAIT.as_secs(),
                });
            }
            if let Some(Ok(Some(status))) = swtpm.0.as_mut().map(|c| c.try_wait()) {
                // What swtpm said is the report itself; an unreadable log says nothing.
                let said = std::fs::read_to_string(&swtpm_log).unwrap_or_default();
                return Err(ImageError::SwtpmExited {
                    disk: disk.clone(),
                    status: status.to_string(),
                    log: swtpm_log,
                    said: said.trim().to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let args = qemu_args(options, &vars, options.tpm.then_some(tpm_socket.as_path()));
    let stdin = if pattern.is_some() {
        Stdio::null()
    } else {
        Stdio::inherit()
    };
    let started = Instant::now();
    let mut qemu = Reaped(Some(spawn(
        "qemu-system-x86_64",
        &args,
        Stdio::piped(),
        stdin,
        Stdio::inherit(),
        &options.disk,
    )?));
    let stdout = qemu
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| ImageError::VmConsole { disk: disk.clone() })?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = options.timeout.map(|t| started + t);
    let mut line = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut console = std::io::stdout();
    let outcome = loop {
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if deadline.is_some() && wait.is_zero() {
            break Err(timeout_error(options));
        }
        match rx.recv_timeout(wait) {
            Ok(chunk) => {
                if options.echo {
                    let _ = console.write_all(&chunk);
                    let _ = console.flush();
                }
                let mut matched = None;
                for byte in chunk {
                    if byte == b'\n' {
                        let text = clean_console_line(&String::from_utf8_lossy(&line));
                        line.clear();
                        seen.push(text.clone());
                        if pattern.as_ref().is_some_and(|p| p.is_match(&text)) {
                            matched = Some(text);
                            break;
                        }
                    } else {
                        line.push(byte);
                    }
                }
                if matched.is_none() {
                    let partial = clean_console_line(&String::from_utf8_lossy(&line));
                    if pattern.as_ref().is_some_and(|p| p.is_match(&partial)) {
                        // Matched mid-line: the time counts from now, but the reported line
                        // is completed from what arrives next (briefly), not cut off.
                        let elapsed = started.elapsed();
                        let rest = finish_line(&rx, options.echo, &mut console);
                        line.extend_from_slice(&rest);
                        let text = clean_console_line(&String::from_utf8_lossy(&line));
                        seen.push(text.clone());
                        break Ok(VmOutcome::Matched {
                            line: text,
                            elapsed,
                            console: seen,
                        });
                    }
                }
                if let Some(text) = matched {
                    break Ok(VmOutcome::Matched {
                        line: text,
                        elapsed: started.elapsed(),
                        console: seen,
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break Err(timeout_error(options));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = qemu
                    .0
                    .as_mut()
                    .and_then(|c| c.wait().ok())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown status".into());
                break match &options.expect {
                    Some(p) => Err(ImageError::VmExited {
                        disk: options.disk.clone(),
                        pattern: p.clone(),
                        status,
                    }),
                    None => Ok(VmOutcome::Exited { status }),
                };
            }
        }
    };
    qemu.stop();
    swtpm.stop();
    let _ = reader.join();
    outcome
}

fn timeout_error(options: &VmOptions) -> ImageError {
    ImageError::VmTimeout {
        disk: options.disk.clone(),
        pattern: options.expect.clone().unwrap_or_default(),
        seconds: options.timeout.map(|t| t.as_secs()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_matched_midway_is_completed_up_to_its_newline_or_briefly() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        tx.send(b"ent forwarder log".to_vec()).unwrap();
        tx.send(b" net\nnext line".to_vec()).unwrap();
        let mut echoed = Vec::new();
        assert_eq!(
            finish_line(&rx, true, &mut echoed),
            b"ent forwarder log net"
        );
        assert_eq!(echoed, b"ent forwarder log net");
        // No newline comes: what there is once LINE_COMPLETION has passed.
        tx.send(b"tail".to_vec()).unwrap();
        assert_eq!(finish_line(&rx, false, &mut Vec::new()), b"tail");
        drop(tx);
        assert!(finish_line(&rx, false, &mut Vec::new()).is_empty());
    }

    #[test]
    fn console_lines_lose_escapes_and_carriage_returns() {
        assert_eq!(
            clean_console_line("\u{1b}[0m\u{1b}[37m\u{1b}[40mready\r"),
            "ready"
        );
        assert_eq!(clean_console_line("plain"), "plain");
    }

    #[test]
    fn qemu_gets_uefi_virtio_disk_serial_and_tpm() {
        let mut options = VmOptions::new(Path::new("/x/disk.img"));
        options.snapshot = true;
        let args = qemu_args(
            &options,
            Path::new("/s/vars.fd"),
            Some(Path::new("/r/tpm.sock")),
        )
        .join(" ");
        assert!(args.contains("q35,accel=tcg"));
        assert!(args.contains("-cpu qemu64,+rdrand"));
        assert!(args.contains("-serial stdio"));
        assert!(args.contains("file=/x/disk.img,snapshot=on"));
        assert!(args.contains("virtio-blk-pci,drive=disk0"));
        assert!(args.contains("readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert!(args.contains("socket,id=chrtpm,path=/r/tpm.sock"));
        assert!(args.contains("tpm-tis,tpmdev=tpm0"));
        let no_tpm = qemu_args(&options, Path::new("/s/vars.fd"), None).join(" ");
        assert!(!no_tpm.contains("tpm"));
    }

    #[test]
    fn swtpm_is_given_the_state_dir_and_the_control_socket() {
        let args = swtpm_args(Path::new("/s"), Path::new("/r/tpm.sock")).join(" ");
        assert!(args.contains("--tpmstate dir=/s/tpm"), "{args}");
        assert!(
            args.contains("--ctrl type=unixio,path=/r/tpm.sock"),
            "{args}"
        );
    }

    #[test]
    fn missing_disk_and_bad_pattern_are_clear_errors() {
        let err = run_vm(&VmOptions::new(Path::new("/nonexistent/disk.img"))).err();
        assert!(matches!(err, Some(ImageError::VmDiskMissing { .. })));
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, "x").unwrap();
        let mut options = VmOptions::new(&disk);
        options.expect = Some("(".into());
        assert!(matches!(
            run_vm(&options).err(),
            Some(ImageError::ExpectPattern { .. })
        ));
    }
}
