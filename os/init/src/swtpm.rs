//! A private software TPM (swtpm) standing in for a TPM device node on a host that has none,
//! or whose TPM a developer's test run must not touch (`testudo run --tpm swtpm`, the
//! default). Each instance has its own state directory and a `unixio` socket that the tpm
//! driver connects to instead of the device node; it is stopped when dropped (and, if the
//! supervisor dies without dropping it, by `PR_SET_PDEATHSIG`).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testudo_plan::plan::Plan;

use crate::InitError;

/// The swtpm program (Debian package `swtpm`).
pub const SWTPM_PROGRAM: &str = "swtpm";

/// Longest unix socket path (`sun_path` is 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How long swtpm gets to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a device node is a TPM character device (`/dev/tpm*`, `/dev/tpmrm*`).
pub fn is_tpm_node(node: &str) -> bool {
    node.strip_prefix("/dev/tpm")
        .is_some_and(|rest| !rest.contains('/') && !rest.contains(".."))
}

/// Device nodes in the plan that are TPMs, sorted.
pub fn tpm_nodes(plan: &Plan) -> BTreeSet<String> {
    plan.components
        .values()
        .flat_map(|c| c.devices.nodes.iter())
        .filter(|node| is_tpm_node(node))
        .cloned()
        .collect()
}

/// A running private swtpm.
#[derive(Debug)]
pub struct SoftwareTpm {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
}

fn failed(dir: &Path, problem: String) -> InitError {
    InitError::SoftwareTpm {
        dir: dir.to_owned(),
        problem,
        source: None,
    }
}

impl SoftwareTpm {
    /// Starts swtpm with its state in `dir/state` and its socket at `dir/tpm.sock`, and
    /// waits until the socket exists. `dir` belongs to the software TPM: it starts empty
    /// (a leftover from an earlier run is removed) and is removed when the TPM stops, so
    /// every run gets a fresh TPM.
    pub fn start(dir: &Path) -> Result<SoftwareTpm, InitError> {
        let socket = dir.join("tpm.sock");
        let state = dir.join("state");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(failed(
                dir,
                format!(
                    "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                    socket.display()
                ),
            ));
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| InitError::StateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        std::fs::create_dir_all(&state).map_err(|source| InitError::StateDir {
            path: state.clone(),
            source,
        })?;
        let log = dir.join("swtpm.log");
        let mut command = Command::new(SWTPM_PROGRAM);
        command
            .args(["socket", "--tpm2", "--flags", "startup-clear,not-need-init"])
            .arg("--server")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe: swtpm gets SIGTERM if the thread that started it ends.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| InitError::SoftwareTpm {
            dir: dir.to_owned(),
            problem: if source.kind() == std::io::ErrorKind::NotFound {
                format!("{SWTPM_PROGRAM} is not installed (Debian package swtpm)")
            } else {
                format!("starting {SWTPM_PROGRAM}")
            },
            source: Some(source),
        })?;
        let mut tpm = SoftwareTpm {
            child,
            dir: dir.to_owned(),
            socket,
            state,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tpm.socket.exists() {
                return Ok(tpm);
            }
            if let Ok(Some(status)) = tpm.child.try_wait() {
                let mut message = String::new();
                if let Some(mut stderr) = tpm.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut message);
                }
                if let Ok(text) = std::fs::read_to_string(&log) {
                    message.push_str(&text);
                }
                return Err(failed(
                    dir,
                    format!(
                        "{SWTPM_PROGRAM} exited ({status}) before creating its socket: {}",
                        message.trim()
                    ),
                ));
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    dir,
                    format!(
                        "{SWTPM_PROGRAM} did not create {} within {} s",
                        tpm.socket.display(),
                        START_TIMEOUT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The `unixio` socket standing in for the device node.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The TPM's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// swtpm's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SoftwareTpm {
    fn drop(&mut self) {
        // SAFETY: sends SIGTERM to the swtpm child this value owns (not yet reaped).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tpm_nodes_are_selected() {
        for node in ["/dev/tpm0", "/dev/tpmrm0", "/dev/tpm1"] {
            assert!(is_tpm_node(node), "{node}");
        }
        for node in [
            "/dev/i2c-1",
            "/dev/tpm/x",
            "/tmp/tpm0",
            "/dev/tpm0/../sda",
            "tpm0",
        ] {
            assert!(!is_tpm_node(node), "{node}");
        }
    }

    #[test]
    fn an_overlong_socket_path_is_refused_before_starting_anything() {
        let dir = PathBuf::from("/tmp").join("d".repeat(120));
        let error = SoftwareTpm::start(&dir).expect_err("too long");
        assert!(
            error.to_string().contains("longer than 107 bytes"),
            "{error}"
        );
        assert!(!dir.exists());
    }
}
