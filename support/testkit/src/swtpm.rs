//! Private software TPMs (swtpm) for tests: over TCP on free ports with their own state
//! directory (what tss-esapi's swtpm TCTI dials), or on a `unixio` socket (what the `tpm`
//! driver opens in place of /dev/tpm0). Every set-up failure panics naming what failed: these
//! are test fixtures, and a failed set-up is a failed test.

#![allow(clippy::unwrap_used)] // test fixture: a failed set-up step is a failed test

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm; killed on drop.
pub struct Swtpm {
    child: Child,
    /// TCTI string for tss-esapi.
    pub tcti: String,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port_pair() -> (u16, u16) {
    // The swtpm TCTI dials the control channel on server port + 1: find two consecutive free
    // ports. swtpm binds them right after, so a collision is unlikely and retried by the caller.
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (port, port + 1);
        }
    }
}

/// Starts swtpm; panics with a clear message naming the tool if it is not installed.
pub fn start() -> Swtpm {
    assert!(
        Path::new("/usr/bin/swtpm").exists() || which("swtpm"),
        "swtpm is not installed (Debian package `swtpm`; `cargo xtask deps` installs it)"
    );
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (server, ctrl) = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", dir.path().display()))
            .args(["--port", &server.to_string(), "--ctrl"])
            .arg(format!("type=tcp,port={ctrl}"))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting swtpm");
        let mut swtpm = Swtpm {
            child,
            tcti: format!("swtpm:host=127.0.0.1,port={server}"),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Ask the kernel whether *this* child listens on both ports: a connect probe could
            // reach another test's swtpm that took one of them first (parallel tests pick
            // neighbouring ports), and the TCTI would then talk to the wrong TPM.
            let pid = swtpm.child.id();
            if listens_on(pid, server) && listens_on(pid, ctrl) {
                return swtpm;
            }
            if let Ok(Some(_)) = swtpm.child.try_wait() {
                break; // port taken: try others
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = swtpm.child.kill();
    }
    panic!("swtpm did not start listening");
}

impl Swtpm {
    /// Stops swtpm and hands over its state directory (the TPM's NV state: persistent keys).
    pub fn stop_keeping_state(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().unwrap()
    }
}

/// A swtpm serving the TPM 2.0 command stream on a `unixio` socket (what the `tpm` driver
/// opens in place of /dev/tpm0); killed on drop.
pub struct UnixSwtpm {
    child: Child,
    /// The socket.
    pub socket: std::path::PathBuf,
}

impl Drop for UnixSwtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts swtpm on the state in `state` with a `unixio` socket at `socket`.
pub fn start_unixio(state: &Path, socket: &Path) -> UnixSwtpm {
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "startup-clear,not-need-init"])
        .arg("--server")
        .arg(format!("type=unixio,path={}", socket.display()))
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("swtpm must be installed (Debian package swtpm)");
    let swtpm = UnixSwtpm {
        child,
        socket: socket.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "swtpm did not create its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    swtpm
}

/// Whether process `pid` holds a TCP socket listening on `port` (from /proc: its socket
/// inodes, matched against the kernel's TCP tables).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::BTreeSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let Ok(text) = std::fs::read_to_string(table) else {
            return false;
        };
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            fields.len() > 9
                && fields[1].ends_with(&port_hex)
                && fields[3] == "0A" // TCP_LISTEN
                && inodes.contains(fields[9])
        })
    })
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
